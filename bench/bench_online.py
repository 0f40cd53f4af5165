"""Algorithm 1 throughput: layers.online (torch, S streams batched) vs the authors' per-step cvxpylayers.

    python -m bench.bench_online [--device cuda] [--b 16] [--seeds 1024] [--T 100000] [--steps 2000]
                                 [--graph-steps 32] [--cvxpy-steps 200] [--repeats 5] [--threads 1]
                                 [--parts eager graph cvxpylayers reference] [--json PATH]

Workload (issue 5): b = 16 (8 per group), eps = 0.05, eta_0 = 0.5, box (-3.5, 3.5) (the package always puts
a box in its primal-dual layer), stationary stream z = N(0, 1) + 0.5 N(0, 1) + (1/2 - A), generated on the
device (torch RNG; same law as reference.data.make_stream, not the same draws).

* ``eager``: ``layers.online.run_online`` on ``--steps`` steps x ``--seeds`` streams (structure built per
  chunk, sync-free one-row steps), median of ``--repeats`` runs after a warm-up of 20 steps, with the load
  average after each run; the time for T steps is extrapolated linearly (chunks of equal cost).
* ``graph``: ``layers.online.dual_steps`` for ``--graph-steps`` steps captured in one CUDA graph on static
  buffers, replayed per chunk after the chunk's rows are prepared eagerly and copied in (CUDA only);
  lambda is compared with the eager run. If the capture fails the error is recorded, nothing falls back.
* ``cvxpylayers``: the authors' per-step implementation (fairness-training 0.1.0
  ``_create_primal_dual_layer``: a new cvxpy problem + CvxpyLayer every step, lambda * b baked in,
  ``max_gap >= +-(mean_0 - mean_1)``, box, default solver), one stream, ``--cvxpy-steps`` steps on the CPU;
  time per step and the extrapolation to T steps x S streams.
* ``reference``: the exact NumPy reference, one stream on the CPU, ``--steps`` steps.

Prints one JSON record per part (and writes them to --json); paste the numbers into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from layers import online as lo
from layers._problem import build_problem
from reference import online as ref

EPS, ETA0, BOX, NOISE, OFFSET = 0.05, 0.5, (-3.5, 3.5), 0.5, 1.0


def device_stream(T: int, S: int, b: int, *, device, dtype=torch.float64, seed: int = 0):
    """z (T, S, b), groups (T, S, b): stationary stream with n0 = b/2 per batch (constant counts)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    keys = torch.rand(T, S, b, generator=gen, device=device)
    groups = (keys.argsort(-1).argsort(-1) >= b // 2).to(torch.int64)          # random placement, b/2 each
    z = torch.randn(T, S, b, generator=gen, device=device, dtype=dtype)
    z = z + NOISE * torch.randn(T, S, b, generator=gen, device=device, dtype=dtype)
    z = z + OFFSET * (0.5 - groups.to(dtype))
    return z, groups


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _load() -> float:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")


def bench_eager(args) -> dict:
    """``layers.online.run_online`` (default chunking), median over ``--repeats`` runs after a warm-up."""
    z, g = device_stream(args.steps + 20, args.seeds, args.b, device=args.device)
    lo.run_online(z[:20], g[:20], eps=EPS, eta0=ETA0, bounds=BOX, check=False)     # warm-up
    times, loads = [], []
    for _ in range(args.repeats):
        _sync(args.device)
        t0 = time.perf_counter()
        tr = lo.run_online(z[20:], g[20:], eps=EPS, eta0=ETA0, bounds=BOX, check=False)
        _sync(args.device)
        times.append(time.perf_counter() - t0)
        loads.append(_load())
    per_step = float(np.median(times)) / args.steps
    return dict(part="eager", device=str(args.device), S=args.seeds, b=args.b, steps=args.steps,
                repeats=args.repeats, per_step_ms=1e3 * per_step,
                per_step_ms_all=[round(1e3 * t / args.steps, 4) for t in times], load_avg=loads,
                extrapolated_T=args.T, extrapolated_seconds=per_step * args.T,
                stream_steps_per_s=args.seeds / per_step, lambda_final_mean=float(tr.lam[-1].mean()))


def _prepared_chunk(z, g, K: int) -> lo.OneRow:
    """The lambda-independent part of K steps (z, g: (K, S, b)) as ``layers.online`` builds it."""
    K, S, b = z.shape
    rows = build_problem(z.reshape(K * S, b), g.reshape(K * S, b), metric="dp", eps=0.0, bounds=BOX,
                         empty="drop", check=False)
    return lo.prepare_one_row(rows, K)


def bench_graph(args) -> dict:
    """K dual steps (``layers.online.dual_steps``) captured in one CUDA graph on static buffers; per
    chunk of K steps: prepare the rows eagerly (``prepare_one_row``), copy them into the static buffers,
    replay. Checked against the eager ``run_online`` on the same stream (lambda, float64)."""
    if torch.device(args.device).type != "cuda":
        return dict(part="graph", skipped="needs CUDA")
    K, S, b = args.graph_steps, args.seeds, args.b
    n_chunks = max(1, args.steps // K)
    T = K * n_chunks
    z, g = device_stream(T, S, b, device=args.device, seed=1)
    eta = np.array([ref.step_size(t, ETA0) for t in range(1, T + 1)])
    etab = torch.as_tensor(eta * b, device=args.device, dtype=torch.float64)
    static = _prepared_chunk(z[:K], g[:K], K)
    static = lo.OneRow(**{f: getattr(static, f).clone() for f in ("z", "a", "c", "valid", "root")})
    eb = etab[:K].clone()
    lam = torch.zeros(K + 1, S, device=args.device, dtype=torch.float64)
    gout = torch.zeros(K, S, device=args.device, dtype=torch.float64)
    dout = torch.zeros(K, S, device=args.device, dtype=torch.float64)

    def steps():
        lo.dual_steps(static, lam, gout, dout, eb, b, EPS, BOX)

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            steps()                                                   # warm-up outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            steps()
    except Exception as exc:  # recorded, not hidden: the eager numbers stand alone
        return dict(part="graph", captured=False, error=f"{type(exc).__name__}: {exc}"[:400])

    def run():
        lam.zero_()
        for c in range(n_chunks):
            rows = _prepared_chunk(z[c * K:(c + 1) * K], g[c * K:(c + 1) * K], K)
            for f in ("z", "a", "c", "valid", "root"):
                getattr(static, f).copy_(getattr(rows, f))
            eb.copy_(etab[c * K:(c + 1) * K])
            lam[0].copy_(lam[K])
            graph.replay()

    run()                                                             # warm-up (allocator, caches)
    times = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times)) / T
    ref_lam = lo.run_online(z, g, eps=EPS, eta0=ETA0, bounds=BOX, check=False, chunk=K).lam[-1]
    return dict(part="graph", captured=True, S=S, b=b, steps=T, graph_steps=K, repeats=args.repeats,
                per_step_ms=1e3 * per_step, per_step_ms_all=[round(1e3 * t / T, 4) for t in times],
                extrapolated_T=args.T, extrapolated_seconds=per_step * args.T,
                max_abs_lambda_vs_eager=float((lam[K] - ref_lam).abs().max()),
                lambda_final_mean=float(lam[K].mean()))


def bench_cvxpylayers(args) -> dict:
    """The authors' per-step layer, rebuilt every step (one stream, CPU)."""
    try:
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer
    except ImportError as exc:
        return dict(part="cvxpylayers", skipped=f"needs cvxpy and cvxpylayers ({exc})")
    b = args.b
    z, g = device_stream(args.cvxpy_steps, 1, b, device="cpu", seed=2)
    lam, times = 0.0, []
    for t in range(args.cvxpy_steps):
        t0 = time.perf_counter()
        s0 = (g[t, 0] == 0).numpy().astype(np.float64)
        s1 = 1.0 - s0
        yhat, raw = cp.Variable(b), cp.Parameter(b)
        max_gap = cp.Variable(1, nonneg=True)
        mean_0, mean_1 = cp.sum(cp.multiply(yhat, s0)) / s0.sum(), cp.sum(cp.multiply(yhat, s1)) / s1.sum()
        cons = [yhat >= BOX[0], yhat <= BOX[1], max_gap >= mean_0 - mean_1, max_gap >= mean_1 - mean_0]
        prob = cp.Problem(cp.Minimize(cp.sum_squares(yhat - raw) + lam * b * max_gap), cons)
        layer = CvxpyLayer(prob, parameters=[raw], variables=[yhat])
        (y,) = layer(z[t, 0].to(torch.float64))
        gap = abs(float(y[g[t, 0] == 0].mean() - y[g[t, 0] == 1].mean()))
        lam = max(0.0, lam + ref.step_size(t + 1, ETA0) * b * (gap - EPS))
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[5:]))
    return dict(part="cvxpylayers", device="cpu", S=1, b=b, steps=args.cvxpy_steps,
                median_per_step_ms=1e3 * per_step, mean_per_step_ms=1e3 * float(np.mean(times[5:])),
                extrapolated_T=args.T, extrapolated_S=args.seeds,
                extrapolated_seconds=per_step * args.T * args.seeds, lambda_final=lam)


def bench_reference(args) -> dict:
    """The exact NumPy reference (reference.online.run_online), one stream, CPU."""
    z, g = device_stream(args.steps, 1, args.b, device="cpu", seed=3)

    class _Batch:
        def __init__(self, zt, gt):
            self.z, self.groups, self.targets = zt, gt, None

    batches = [_Batch(z[t, 0].numpy(), g[t, 0].numpy()) for t in range(args.steps)]
    t0 = time.perf_counter()
    tr = ref.run_online(batches, eps=EPS, eta0=ETA0, bounds=BOX, keep_y=False)
    per_step = (time.perf_counter() - t0) / args.steps
    return dict(part="reference", device="cpu", S=1, b=args.b, steps=args.steps, per_step_ms=1e3 * per_step,
                extrapolated_T=args.T, extrapolated_S=args.seeds,
                extrapolated_seconds=per_step * args.T * args.seeds, lambda_final=float(tr.lam[-1]))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--b", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=1024)
    ap.add_argument("--T", type=int, default=100_000, help="horizon the timings are extrapolated to")
    ap.add_argument("--steps", type=int, default=2000, help="steps actually timed")
    ap.add_argument("--graph-steps", type=int, default=32)
    ap.add_argument("--cvxpy-steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--parts", nargs="+", default=["eager", "graph", "cvxpylayers", "reference"],
                    choices=["eager", "graph", "cvxpylayers", "reference"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    torch.set_num_threads(args.threads)
    meta = dict(torch=torch.__version__, threads=torch.get_num_threads(), python=platform.python_version(),
                machine=platform.machine(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    out = []
    for part in args.parts:
        rec = {"eager": bench_eager, "graph": bench_graph, "cvxpylayers": bench_cvxpylayers,
               "reference": bench_reference}[part](args)
        rec.update(meta)
        print(json.dumps(rec), flush=True)
        out.append(rec)
        if args.json:                                # after every part: a timeout keeps what ran
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
