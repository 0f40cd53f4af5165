"""Algorithm 1 throughput: layers.online (torch, S streams batched) vs the authors' per-step cvxpylayers.

    python -m bench.bench_online [--device cuda] [--b 16] [--seeds 1024] [--T 100000] [--steps 2000]
                                 [--graph-steps 32] [--cvxpy-steps 200] [--json PATH]

Workload (issue 5): b = 16 (8 per group), eps = 0.05, eta_0 = 0.5, box (-3.5, 3.5) (the package always puts
a box in its primal-dual layer), stationary stream z = N(0, 1) + 0.5 N(0, 1) + (1/2 - A), generated on the
device (torch RNG; same law as reference.data.make_stream, not the same draws).

* ``eager``: ``layers.online.run_online`` on ``--steps`` steps x ``--seeds`` streams, timed after a warm-up
  of 20 steps; the time for T steps is extrapolated linearly (the loop is per-step, no host sync).
* ``graph``: one CUDA graph capturing ``--graph-steps`` steps (penalised step, gap, dual update), replayed
  over ``--steps`` steps (CUDA only). Capture needs every operation of the step to be capturable (no
  host->device copy, no sync); if it is not, the error is recorded, nothing falls back.
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
from layers.projection import penalized_step
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


def bench_eager(args) -> dict:
    steps = args.steps + 20
    z, g = device_stream(steps, args.seeds, args.b, device=args.device)
    lo.run_online(z[:20], g[:20], eps=EPS, eta0=ETA0, bounds=BOX, check=False)     # warm-up
    _sync(args.device)
    t0 = time.perf_counter()
    tr = lo.run_online(z[20:], g[20:], eps=EPS, eta0=ETA0, bounds=BOX, check=False)
    _sync(args.device)
    dt = time.perf_counter() - t0
    per_step = dt / args.steps
    return dict(part="eager", device=str(args.device), S=args.seeds, b=args.b, steps=args.steps,
                seconds=dt, per_step_ms=1e3 * per_step, extrapolated_T=args.T,
                extrapolated_seconds=per_step * args.T,
                stream_steps_per_s=args.seeds / per_step, lambda_final_mean=float(tr.lam[-1].mean()))


def bench_graph(args) -> dict:
    """CUDA graph of K steps: static buffers for (z, groups, eta_t b_t) of a chunk, lambda carried."""
    if torch.device(args.device).type != "cuda":
        return dict(part="graph", skipped="needs CUDA")
    K, S, b = args.graph_steps, args.seeds, args.b
    n_chunks = max(1, args.steps // K)
    z, g = device_stream(K * (n_chunks + 1), S, b, device=args.device, seed=1)
    eta = np.array([ref.step_size(t, ETA0) for t in range(1, K * (n_chunks + 1) + 1)])
    etab = torch.as_tensor(eta * b, device=args.device, dtype=torch.float64)
    zb, gb = z[:K].clone(), g[:K].clone()
    eb = etab[:K].clone()
    lam = torch.zeros(S, device=args.device, dtype=torch.float64)
    gout = torch.zeros(K, S, device=args.device, dtype=torch.float64)

    def steps():
        lam_k = lam
        for k in range(K):
            y = penalized_step(zb[k], gb[k], lam=lam_k * b, bounds=BOX, check=False)
            gap = lo.batch_gaps(y, gb[k])
            gout[k] = gap
            lam_k = torch.clamp_min(lam_k + eb[k] * (gap - EPS), 0.0)
        lam.copy_(lam_k)

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            steps()                                                   # warm-up outside the capture
        torch.cuda.current_stream().wait_stream(side)
        lam.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            steps()
    except Exception as exc:  # recorded, not hidden: the eager numbers stand alone
        return dict(part="graph", captured=False, error=f"{type(exc).__name__}: {exc}"[:400])
    lam.zero_()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for c in range(1, n_chunks + 1):
        zb.copy_(z[c * K:(c + 1) * K])
        gb.copy_(g[c * K:(c + 1) * K])
        eb.copy_(etab[c * K:(c + 1) * K])
        graph.replay()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    per_step = dt / (n_chunks * K)
    return dict(part="graph", captured=True, S=S, b=b, steps=n_chunks * K, graph_steps=K, seconds=dt,
                per_step_ms=1e3 * per_step, extrapolated_T=args.T, extrapolated_seconds=per_step * args.T,
                lambda_final_mean=float(lam.mean()))


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
    ap.add_argument("--parts", nargs="+", default=["eager", "graph", "cvxpylayers", "reference"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    meta = dict(torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    out = []
    for part in args.parts:
        rec = {"eager": bench_eager, "graph": bench_graph, "cvxpylayers": bench_cvxpylayers,
               "reference": bench_reference}[part](args)
        rec.update(meta)
        print(json.dumps(rec), flush=True)
        out.append(rec)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
