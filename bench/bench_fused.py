"""The fused dp forward (``layers.project(fused=True)``, :mod:`layers._fused`) kernel by kernel, against one
device-to-device copy of z: ``python -m bench.bench_fused [--b 1e8] [--K 8 16 32]`` (on demand, a GPU).

For each K (points per evaluation pass, a compile-time constant of the kernel) it records the forward's
median time (``check=False``) and its ratio to the copy (issue 3's target: <= 10x at b = 1e8, float32),
and the same forward taken apart (:mod:`bench.fused_hooks`): each kernel's time in one call (``stats``,
all ``evaluate`` passes, ``gather``, ``output``) over the copy, and the number of passes. A pass that
reads z and the labels once is bandwidth-bound at ~(4 + label bytes) / 8 copies; more means it is
compute-bound (``evaluate`` does K clip-evaluations and 2 K comparisons per coordinate:
``python -m bench.compile_fused`` counts its instructions). Same workload as bench/bench_layers.py (dp,
box (0, 1), eps = 0.05, z ~ N(0.5, 0.3) + 0.2 g, int64 labels; ``--labels uint8`` for 1-byte labels).

Without a GPU (``--device cpu``) it runs Triton's interpreter (TRITON_INTERPRET=1 is set here, before
triton is imported): a smoke check of the script at small b, no meaningful times.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time

import torch

from bench.bench_layers import BOX, EPS, instance, timer
from bench.fused_hooks import NAMES


def kernel_times(fwd, dev: torch.device, repeats: int) -> dict:
    """The forward taken apart: per kernel, the median over ``repeats`` calls (after a warm-up) of its time
    in one call (all its launches; each launch timed alone, with ``torch.cuda.Event`` on CUDA), and the
    number of evaluation passes."""
    from bench.fused_hooks import launches_to, run_kernel

    calls = []

    def timed(name, grid, args, kwargs):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            # keep the stream busy (~0.5 ms) while the host records and launches: the interval then holds
            # the kernel alone, not Triton's host-side launch cost (10-40 us against 0.1-0.3 ms kernels)
            torch.cuda._sleep(1_000_000)
            start.record()
            out = run_kernel(name, grid, args, kwargs)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            out = run_kernel(name, grid, args, kwargs)
            seconds = time.perf_counter() - t0
        calls[-1][name] += seconds
        calls[-1][f"{name}_launches"] += 1
        return out

    with launches_to(timed):
        for _ in range(repeats + 1):
            calls.append(collections.Counter())
            fwd()
    calls = calls[1:]
    row = {f"{name}_s": statistics.median(c[name] for c in calls) for name in NAMES}
    row["evaluate_passes"] = statistics.median(c["evaluate_launches"] for c in calls)
    return row


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--b", type=float, default=1e8)
    p.add_argument("--K", type=int, nargs="*", default=[8, 16, 32])
    p.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    p.add_argument("--labels", default="int64", choices=["int64", "uint8"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    elif not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    import layers
    import layers._fused as fused

    dev = torch.device(args.device)
    b = int(args.b)
    dt = {"f32": torch.float32, "f64": torch.float64}[args.dtype]
    z0, g0, _ = instance(b)
    z = torch.tensor(z0, dtype=dt, device=dev)[None]
    g = torch.tensor(g0, device=dev).to(getattr(torch, args.labels))[None]
    del z0, g0
    copy_s = timer(lambda: z.clone(), dev, args.repeats)
    rows = []
    for K in args.K:
        fused.K = K
        fwd = lambda: layers.project(z[0], g[0], metric="dp", eps=EPS, bounds=BOX, fused=True, check=False)
        try:
            t = timer(fwd, dev, args.repeats)
            row = {"K": K, "b": b, "dtype": args.dtype, "labels": args.labels, "copy_s": copy_s,
                   "fused_fwd_s": t, "fwd_over_copy": t / copy_s}
            row.update(kernel_times(fwd, dev, args.repeats))
            for name in NAMES:
                row[f"{name}_over_copy"] = row[f"{name}_s"] / copy_s
        except Exception as e:                              # recorded: the other K still run
            row = {"K": K, "b": b, "error": repr(e)[:500]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:                                       # after every K: a timeout keeps what ran
            name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu (interpreter)"
            with open(args.json, "w") as f:
                json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    best = min((r for r in rows if "fwd_over_copy" in r), key=lambda r: r["fwd_over_copy"], default=None)
    if best:
        print(f"best K = {best['K']}: forward {best['fused_fwd_s'] * 1e3:.3f} ms = "
              f"{best['fwd_over_copy']:.1f}x the copy ({copy_s * 1e3:.3f} ms)")
    failed = [r for r in rows if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(rows)} K failed (recorded in the rows above)")
    return rows


if __name__ == "__main__":
    main()
