"""Benchmarks of the fairness layers (on demand, never in tests): ``python -m bench.bench_layers``.

Times forward+backward, side by side in one process, of
* ours: ``layers.project`` (exact; CPU, and CUDA when --device cuda), float32 and float64;
* the authors' layer: ``layers.CvxpyFairnessLayer`` built once, and ``layers.cvxpy_layer`` rebuilt per
  call as their forward does (CPU only; sizes up to --cvx-max, default 16384);
for dp with one attribute (the authors' main setting), box (0, 1), eps = 0.05, z ~ N(0.5, 0.3) with a
group offset of 0.2 (so the row is active), one backward of a fixed random cotangent. Plus the batched
case 4096 problems x b = 256 and, on CUDA, the forward of b = 1e8 in float32 against one device-to-device
copy of z (the memory-bandwidth floor; only at b = 1e8 is the copy a DRAM copy: below ~1e7 float32, z fits
an H200's 60 MB L2, so ``*_over_copy`` at those sizes is not comparable with the target). Medians of
--repeats runs after >= 0.2 s of warm-up calls (``torch.cuda.Event`` timing on CUDA). ``--accuracy`` also
records the authors' layer at its default solver settings: max |y - y_exact|, max constraint violation and
the error of its vector-Jacobian product, for b in {256, 1024, 4096, 16384}, in three regimes
(``REGIMES``: few / many / most coordinates clipped by the box).

On CUDA from b = 1e5 on, also the fused Triton forward (``layers.project(fused=True)``, :mod:`layers._fused`)
with and without input validation (``check``), and the eager forward without it, each against the copy
(``fused_fwd_over_copy``, ``fused_checked_fwd_over_copy``, ``nocheck_fwd_over_copy``); a failure of the
fused path is recorded (``fused_cuda_<dtype>_error``), not raised.

Beside ours, ``floor_*`` times ``clamp(z, 0, 1)`` forward+backward: one eager op and one autograd pass, a
lower bound for any torch layer on that device; ``floor_speedup_vs_cvx_once`` is the ratio even that op
would show against the authors' layer (the 1000x target needs ours within ``budget_1000x_s``).

Targets: CPU b = 2000 >= 1000x faster than cvxpylayers built once; CUDA b = 1e8 float32 forward <= 10x
a copy of z; CUDA 4096 x 256 forward+backward <= 1 ms.

Without cvxpy / cvxpylayers installed (e.g. a GPU machine) the authors' columns and --accuracy are skipped
(recorded as ``"cvx": "skipped: ..."`` in the output). ``bench/gpu_session.sh`` runs this on a GPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
import warnings

import numpy as np
import torch

import layers
import reference
from reference.constraints import build_constraints

EPS, BOX = 0.05, (0.0, 1.0)
SIZES = [256, 2000, 16384, 100_000, 1_000_000, 10_000_000, 100_000_000]
FUSED_MIN_B = 100_000          # --fused (default on CUDA): time layers.project(fused=True) from this b on


def cvx_missing() -> str | None:
    """Why the authors' layer cannot run here (None when cvxpy and cvxpylayers import)."""
    try:
        import cvxpy  # noqa: F401
        import cvxpylayers.torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install: recorded in the output, not hidden
        return f"skipped: cvxpy/cvxpylayers not importable ({type(exc).__name__}: {exc})"
    return None


def instance(b: int, seed: int = 0, batch: tuple = ()):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, batch + (b,))
    z = rng.normal(0.5, 0.3, batch + (b,)) + 0.2 * g
    v = rng.normal(0, 1, batch + (b,))
    return z, g, v


def timer(fn, device: torch.device, repeats: int, warmup_s: float = 0.2) -> float:
    """Median wall time of fn() in seconds, after warm-up calls for at least ``warmup_s`` seconds (and at
    least one: compiles, autotuning, allocator; on a GPU the warm-up also lifts the SM clock from idle --
    an idle H200 sits at ~345 MHz, ~1980 under load -- after the seconds of host-only setup at large b)."""
    t_end = time.perf_counter() + warmup_s
    while True:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() >= t_end:
            break
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ours_fn(z, g, v, *, backward: bool, **kw):
    """Ours, forward (+ backward of v); kw: ``check=False`` (no input validation), ``fused=True``."""
    def fn():
        zz = z.detach().requires_grad_(backward)
        y = layers.project(zz, g, metric="dp", eps=EPS, bounds=BOX, **kw)
        if backward:
            y.backward(v)
    return fn


def floor_fn(z, v):
    """The cheapest differentiable map onto the box, ``clamp(z, 0, 1)``, forward + backward: one eager op and
    one autograd pass, the launch/autograd overhead that any torch layer pays whatever its arithmetic."""
    def fn():
        zz = z.detach().requires_grad_(True)
        zz.clamp(*BOX).backward(v)
    return fn


def graphed_fn(z, g, v):
    """CUDA only: forward+backward of ours replayed from a CUDA graph (``torch.cuda.make_graphed_callables``,
    groups captured as a constant, ``check=False``: the path has no host sync), i.e. the kernels' time
    without Python's per-launch overhead. Raises what the capture raises (recorded by the caller)."""
    def f(zz):
        return layers.project(zz, g, metric="dp", eps=EPS, bounds=BOX, check=False)
    graphed = torch.cuda.make_graphed_callables(f, (z.detach().clone().requires_grad_(True),))

    def fn():
        zz = z.detach().requires_grad_(True)
        graphed(zz).backward(v)
    return fn


def violation(z, g, **kw) -> float:
    """The reference's ``Constraints.violation`` (max(|A y - c| - eps, box excess, 0), float64) of ours at z:
    a timing of a wrong answer is not a result (float32 groups over 2^24 were once counted as 2^24:
    violation 0.03 at b = 2e7)."""
    with torch.no_grad():
        y = layers.project(z, g, metric="dp", eps=EPS, bounds=BOX, **kw)
    labels = g.cpu().numpy()
    rows = build_constraints(labels, "dp", eps=EPS, b=labels.size, bounds=BOX)
    return rows.violation(y.double().cpu().numpy())


def repeats_for(b: int, base: int) -> int:
    return max(3, min(base, int(base * 2e5 / max(b, 1))))


def bench_sizes(args, out: dict) -> None:
    dev = torch.device(args.device)
    rows = out.setdefault("sizes", [])
    for b in args.sizes:
        if b > 10_000_000 and dev.type != "cuda":
            continue
        z0, g0, v0 = instance(b)
        row = {"b": b}
        for dtype in (torch.float32, torch.float64):
            name = {torch.float32: "f32", torch.float64: "f64"}[dtype]
            if b >= 100_000_000 and dtype == torch.float64:
                continue
            z = torch.tensor(z0, dtype=dtype, device=dev)
            g = torch.tensor(g0, device=dev)
            v = torch.tensor(v0, dtype=dtype, device=dev)
            r = repeats_for(b, args.repeats)
            row[f"ours_{args.device}_{name}_fwdbwd_s"] = timer(ours_fn(z, g, v, backward=True), dev, r)
            row[f"ours_{args.device}_{name}_fwd_s"] = timer(ours_fn(z, g, v, backward=False), dev, r)
            row[f"floor_{args.device}_{name}_fwdbwd_s"] = timer(floor_fn(z, v), dev, r)
            row[f"ours_{args.device}_{name}_violation"] = violation(z, g)
            if args.fused and b >= args.fused_min_b:       # the Triton forward (layers._fused)
                fwd = functools.partial(ours_fn, z, g, v, backward=False)
                dv = args.device
                try:
                    row[f"fused_{dv}_{name}_fwd_s"] = timer(fwd(fused=True, check=False), dev, r)
                    row[f"fused_{dv}_{name}_fwd_checked_s"] = timer(fwd(fused=True), dev, r)
                    row[f"fused_{dv}_{name}_violation"] = violation(z, g, fused=True)
                    row[f"ours_{dv}_{name}_fwd_nocheck_s"] = timer(fwd(check=False), dev, r)
                except Exception as e:                      # recorded, not hidden: the rest still runs
                    row[f"fused_{dv}_{name}_error"] = repr(e)[:500]
            if dev.type == "cuda" and dtype == torch.float32:
                row["copy_f32_s"] = timer(lambda z=z: z.clone(), dev, r)
                row["fwd_over_copy"] = row[f"ours_{args.device}_{name}_fwd_s"] / row["copy_f32_s"]
                for key, col in (("fused_fwd_over_copy", "fused_cuda_f32_fwd_s"),
                                 ("fused_checked_fwd_over_copy", "fused_cuda_f32_fwd_checked_s"),
                                 ("nocheck_fwd_over_copy", "ours_cuda_f32_fwd_nocheck_s")):
                    if col in row:
                        row[key] = row[col] / row["copy_f32_s"]
            del z, g, v
        if dev.type == "cuda" and b <= 1_000_000:                    # CPU column beside the CUDA one
            z, g, v = (torch.tensor(x) for x in (z0, g0, v0))
            row["ours_cpu_f64_fwdbwd_s"] = timer(ours_fn(z, g, v, backward=True), torch.device("cpu"),
                                                 repeats_for(b, args.repeats))
        if b <= args.cvx_max and args.cvx_skip:
            row["cvx"] = args.cvx_skip
        elif b <= args.cvx_max:
            row.update(bench_cvx(z0, g0, v0, args.cvx_repeats))
            cpu_key = f"ours_{args.device}_f32_fwdbwd_s"
            row["speedup_vs_cvx_once"] = row["cvx_once_fwdbwd_s"] / row[cpu_key]
            row["speedup_vs_cvx_rebuilt"] = row["cvx_rebuilt_fwdbwd_s"] / row[cpu_key]
            # the 1000x target's time budget, and the best ratio any torch op could show (clamp alone)
            row["budget_1000x_s"] = row["cvx_once_fwdbwd_s"] / 1000
            floor = row[f"floor_{args.device}_f32_fwdbwd_s"]
            row["floor_speedup_vs_cvx_once"] = row["cvx_once_fwdbwd_s"] / floor
        rows.append(row)
        print(json.dumps(row), flush=True)
        checkpoint(args, out)


def bench_cvx(z0, g0, v0, repeats: int) -> dict:
    """The authors' layer in float32 (their dtype), forward+backward, built once and rebuilt per call."""
    z = torch.tensor(z0, dtype=torch.float32)
    g = torch.tensor(g0)
    v = torch.tensor(v0, dtype=torch.float32)
    cpu = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        once = layers.CvxpyFairnessLayer(g, metric="dp", bounds=BOX)
        build = time.perf_counter() - t0

        def run_once():
            zz = z.detach().requires_grad_(True)
            once(zz, EPS).backward(v)

        def run_rebuilt():
            zz = z.detach().requires_grad_(True)
            layers.cvxpy_layer(zz, g, metric="dp", eps=EPS, bounds=BOX).backward(v)

        return {"cvx_build_s": build, "cvx_once_fwdbwd_s": timer(run_once, cpu, repeats),
                "cvx_rebuilt_fwdbwd_s": timer(run_rebuilt, cpu, repeats)}


def bench_batched(args, out: dict) -> None:
    """4096 problems x b = 256 (per-problem groups), forward+backward in one call (on CUDA also replayed
    from a CUDA graph: :func:`graphed_fn`)."""
    dev = torch.device(args.device)
    P, b = 4096, 256
    z0, g0, v0 = instance(b, seed=1, batch=(P,))
    row = {"P": P, "b": b}
    for dtype, name in ((torch.float32, "f32"), (torch.float64, "f64")):
        z = torch.tensor(z0, dtype=dtype, device=dev)
        g = torch.tensor(g0, device=dev)
        v = torch.tensor(v0, dtype=dtype, device=dev)
        row[f"ours_{args.device}_{name}_fwdbwd_s"] = timer(ours_fn(z, g, v, backward=True), dev, args.repeats)
        row[f"ours_{args.device}_{name}_fwd_s"] = timer(ours_fn(z, g, v, backward=False), dev, args.repeats)
        if dev.type == "cuda":
            try:
                row[f"ours_cuda_graph_{name}_fwdbwd_s"] = timer(graphed_fn(z, g, v), dev, args.repeats)
            except Exception as exc:   # a capture failure is a result to record, not a reason to stop
                row[f"ours_cuda_graph_{name}_error"] = f"{type(exc).__name__}: {exc}"[:500]
    if args.cvx_max >= b and args.cvx_skip:
        row["cvx"] = args.cvx_skip
    elif args.cvx_max >= b:                          # authors: one problem at a time, extrapolated to P
        n = 8
        per = [bench_cvx(z0[p], g0[p], v0[p], 3) for p in range(n)]
        row["cvx_once_fwdbwd_per_problem_s"] = statistics.median(r["cvx_once_fwdbwd_s"] for r in per)
        row["cvx_once_fwdbwd_extrapolated_s"] = row["cvx_once_fwdbwd_per_problem_s"] * P
        rebuilt = statistics.median(r["cvx_rebuilt_fwdbwd_s"] for r in per)
        row["cvx_rebuilt_fwdbwd_extrapolated_s"] = rebuilt * P
        row["cvx_extrapolated_from"] = n
    out["batched"] = row
    print(json.dumps(row), flush=True)
    checkpoint(args, out)


# z ~ N(mean, sd) + offset * g: "narrow" few clipped, "wide" many clipped, "logit" raw scores (most clipped)
REGIMES = {"narrow": (0.5, 0.3, 0.2), "wide": (0.5, 1.0, 0.5), "logit": (0.0, 3.0, 1.0)}


def bench_accuracy(out: dict, sizes=(256, 1024, 4096, 16384)) -> None:
    """The authors' layer at its default settings (float32, as they call it) vs the exact projection:
    value error max|y - y_exact|, constraint violation, and the error of its vector-Jacobian product
    J^T v (v ~ N(0, I), fixed seed) against our exact analytic backward (the projector of claim L3)."""
    rows = out.setdefault("accuracy", [])
    for (regime, (mean, sd, offset)), b in ((r, b) for r in REGIMES.items() for b in sizes):
        rng = np.random.default_rng(2)
        g0 = rng.integers(0, 2, b)
        z0 = rng.normal(mean, sd, b) + offset * g0
        v = torch.tensor(rng.normal(size=b))
        y_exact = reference.project(z0, g0, metric="dp", eps=EPS, bounds=BOX)
        C = build_constraints(g0, "dp", eps=EPS, b=b, bounds=BOX)
        z = torch.tensor(z0, requires_grad=True)
        (layers.project(z, torch.tensor(g0), metric="dp", eps=EPS, bounds=BOX) * v).sum().backward()
        vjp_exact = z.grad
        zc = torch.tensor(z0, dtype=torch.float32, requires_grad=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            yc = layers.cvxpy_layer(zc, torch.tensor(g0), metric="dp", eps=EPS, bounds=BOX)
            (yc * v.float()).sum().backward()
        y = yc.detach().double().numpy()
        dg = zc.grad.double() - vjp_exact
        inaccurate = any("Inaccurate" in str(x.message) for x in w)
        row = {"regime": regime, "b": b, "max_abs_dy": float(np.abs(y - y_exact).max()),
               "max_violation": C.violation(y),
               "clipped_fraction": float(np.mean((y_exact <= BOX[0]) | (y_exact >= BOX[1]))),
               "gap_minus_eps": float(np.abs(C.gaps(y)).max() - EPS),
               "vjp_max_abs_err": float(dg.abs().max()),
               "vjp_rel_err": float(dg.norm() / vjp_exact.norm()), "scs_inaccurate_warning": inaccurate}
        rows.append(row)
        print(json.dumps(row), flush=True)


def checkpoint(args, out: dict) -> None:
    """Rewrite --json with the results so far (after every row: a part cut short by its timeout or a
    crashed CUDA context keeps what it measured)."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sizes", type=float, nargs="*", default=None)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--cvx-repeats", type=int, default=5)
    p.add_argument("--cvx-max", type=int, default=16384, help="largest b for the cvxpylayers baselines")
    p.add_argument("--no-batched", action="store_true")
    p.add_argument("--accuracy", action="store_true", help="authors' layer accuracy at default settings")
    p.add_argument("--only-accuracy", action="store_true", help="skip the timings")
    p.add_argument("--json", default=None, help="write all results to this file")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                   help="also time layers.project(fused=True) (default: on CUDA only; on the CPU it runs in "
                        "Triton's interpreter, a check of the script, not a timing)")
    p.add_argument("--fused-min-b", type=int, default=FUSED_MIN_B)
    args = p.parse_args(argv)
    if args.fused is None:
        args.fused = args.device == "cuda"
    if args.fused and args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")      # before layers._fused imports triton
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    args.sizes = [int(s) for s in (args.sizes if args.sizes is not None else SIZES)]
    if args.device == "cuda":
        args.cvx_max = min(args.cvx_max, 16384)
    out = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "loadavg_start": os.getloadavg(), "eps": EPS, "bounds": BOX, "metric": "dp (one attribute)"}
    args.cvx_skip = cvx_missing()
    if args.cvx_skip:
        out["cvx"] = args.cvx_skip
    print(json.dumps(out), flush=True)
    if (args.accuracy or args.only_accuracy) and not args.cvx_skip:
        bench_accuracy(out)
    if not args.only_accuracy:
        bench_sizes(args, out)
        if not args.no_batched:
            bench_batched(args, out)
    out["loadavg_end"] = os.getloadavg()
    checkpoint(args, out)
    return out


if __name__ == "__main__":
    main()
