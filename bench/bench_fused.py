"""The fused dp forward (``layers.project(fused=True)``, :mod:`layers._fused`) kernel by kernel, against one
device-to-device copy of z: ``python -m bench.bench_fused [--b 1e8] [--K 8 16 32]`` (on demand, a GPU).

For each K (points per evaluation pass, a compile-time constant of the kernel) it records the forward's
median time (``check=False``) and its ratio to the copy (issue 3's target: <= 10x at b = 1e8, float32),
the number of evaluation passes, and each kernel alone on the same data (``stats``, one ``evaluate``,
``gather``, ``output``), so that a miss says which pass costs what: a pass that reads z and the labels
once is bandwidth-bound at ~(4 + label bytes) / 8 copies; more means it is compute-bound (``evaluate``
does K clip-evaluations and 2 K comparisons per coordinate). Same workload as bench/bench_layers.py (dp,
box (0, 1), eps = 0.05, z ~ N(0.5, 0.3) + 0.2 g, int64 labels; ``--labels uint8`` for 1-byte labels).

Without a GPU (``--device cpu``) it runs Triton's interpreter (TRITON_INTERPRET=1 is set here, before
triton is imported): a smoke check of the script at small b, no meaningful times.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from bench.bench_layers import BOX, EPS, instance, timer


class _Counted:
    """A Triton kernel whose launches are counted."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


def kernel_times(z, g, dev, repeats: int) -> dict:
    """Each kernel alone, on the state of one real solve (its bracket), medians in seconds."""
    import layers._fused as fused

    stats, evaluate, gather, output = fused._kernels()
    P, b = z.shape
    f64, dt = torch.float64, z.dtype
    grid = fused._grid(P, b)
    nblk = grid[0]
    consts = torch.tensor([BOX[0], BOX[1], float("inf")], dtype=dt, device=dev)
    eps = torch.full((P,), EPS, dtype=dt, device=dev)
    nu, active, up, tab, lab = fused.solve_dp(z, g, eps, BOX)
    tab64 = tab.to(f64)
    out_f = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    out_i = torch.empty(P, nblk, 3, dtype=torch.int32, device=dev)
    out_m = torch.empty(P, nblk, 4, dtype=dt, device=dev)
    nu_t = torch.as_tensor(nu, dtype=dt, device=dev)
    pts = (nu_t[:, None] + torch.linspace(-1, 1, fused.K, device=dev, dtype=dt)).contiguous()
    phi = torch.empty(P, nblk, fused.K, dtype=f64, device=dev)
    cnt = torch.empty(P, nblk, fused.K, dtype=torch.int32, device=dev)
    lr = torch.stack([nu_t - 1e-3, nu_t + 1e-3], 1).contiguous()
    part = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    count = torch.zeros(P, dtype=torch.int32, device=dev)
    buf = torch.empty(P, fused.CAPACITY, dtype=torch.int32, device=dev)
    y = torch.empty_like(z)
    lab_ps = 0 if lab.shape[0] == 1 else b
    run = {
        "stats": lambda: stats[grid](z, g, lab, consts, out_f, out_i, out_m, b, lab_ps, BLOCK=fused.BLOCK,
                                     CHUNK=fused.CHUNK),
        "evaluate": lambda: evaluate[grid](z, lab, consts, tab, pts, phi, cnt, b, lab_ps, K=fused.K,
                                           BLOCK=fused.BLOCK, SUB=fused._sub()),
        "gather": lambda: (count.zero_(), gather[grid](z, lab, tab, tab64, lr, part, count, buf, b,
                                                       lab_ps, fused.CAPACITY, BLOCK=fused.BLOCK,
                                                       CHUNK=fused.CHUNK)),
        "output": lambda: output[grid](z, lab, consts, tab, nu_t, y, b, lab_ps, BLOCK=fused.BLOCK,
                                       CHUNK=fused.CHUNK),
    }
    return {f"{name}_s": timer(fn, dev, repeats) for name, fn in run.items()}


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
    kernels = fused._kernels
    for K in args.K:
        fused.K = K
        counted = _Counted(kernels()[1])
        fused._kernels = lambda c=counted: (kernels()[0], c, *kernels()[2:])
        fwd = lambda: layers.project(z[0], g[0], metric="dp", eps=EPS, bounds=BOX, fused=True, check=False)
        try:
            t = timer(fwd, dev, args.repeats)
            passes = counted.launches / (args.repeats + 1)
            fused._kernels = kernels
            row = {"K": K, "b": b, "dtype": args.dtype, "labels": args.labels, "copy_s": copy_s,
                   "fused_fwd_s": t, "fwd_over_copy": t / copy_s, "evaluate_passes": passes}
            row.update(kernel_times(z, g, dev, args.repeats))
            for name in ("stats", "evaluate", "gather", "output"):
                row[f"{name}_over_copy"] = row[f"{name}_s"] / copy_s
        except Exception as e:                              # recorded: the other K still run
            row = {"K": K, "b": b, "error": repr(e)[:500]}
        finally:
            fused._kernels = kernels
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = min((r for r in rows if "fwd_over_copy" in r), key=lambda r: r["fwd_over_copy"], default=None)
    if best:
        print(f"best K = {best['K']}: forward {best['fused_fwd_s'] * 1e3:.3f} ms = "
              f"{best['fwd_over_copy']:.1f}x the copy ({copy_s * 1e3:.3f} ms)")
    failed = [r for r in rows if "error" in r]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu (interpreter)",
                       "torch": torch.__version__, "rows": rows}, f, indent=1)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(rows)} K failed (recorded in the rows above)")
    return rows


if __name__ == "__main__":
    main()
