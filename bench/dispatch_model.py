"""Kernels per call and bytes moved by ``layers.project`` -- a CPU-measured model of the CUDA targets.

    python -m bench.dispatch_model [--sizes 1e6 1e7] [--batched 4096x256]

Records one call (``verify.dispatch.record``: the aten ops that would launch on a device and the bytes each
reads and writes) of the benchmark workload (dp, one attribute, box (0, 1), eps = 0.05, float32,
``check=False``) and prints, per case, the kernel count and the traffic in units of one float32 copy of z
(read + write: 8 bytes per coordinate, the memory-bandwidth floor of the b = 1e8 target), split into the
row build, the breakpoint search and the rest; "host reads" lists the syncs (the sort-free search, b >= 8192,
has exactly one). Eager CUDA launches cost microseconds each from Python, so
the count bounds the small batched case; the traffic bounds the large one if it is bandwidth-bound.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np
import torch
from torch.utils._python_dispatch import _disable_current_modes

import layers
import layers.projection as projection
from verify.dispatch import _span, recorder

PHASES = {"build_problem": "build", "row_root": "search"}     # functions of layers.projection


@contextlib.contextmanager
def _labelled(rec):
    """Label the kernels of ``layers.projection``'s phase functions on the recorder ``rec``."""
    saved = {name: getattr(projection, name) for name in PHASES}

    def wrap(name, f):
        def labelled(*args, **kwargs):
            rec.phase = PHASES[name]
            try:
                return f(*args, **kwargs)
            finally:
                rec.phase = "rest"
        return labelled

    for name, f in saved.items():
        setattr(projection, name, wrap(name, f))
    try:
        yield
    finally:
        for name, f in saved.items():
            setattr(projection, name, f)


def model(b: int, P: int = 1, backward: bool = False, seed: int = 0) -> dict:
    """Kernels and traffic (in copies of z) of one call, split by phase."""
    rng = np.random.default_rng(seed)
    shape = (P, b) if P > 1 else (b,)
    g = torch.tensor(rng.integers(0, 2, shape))
    z = torch.tensor(rng.normal(0.5, 0.3, shape) + 0.2 * g.numpy(), dtype=torch.float32,
                     requires_grad=backward)
    v = torch.randn(shape, dtype=torch.float32)

    def call():
        y = layers.project(z, g, metric="dp", eps=0.05, bounds=(0.0, 1.0), check=False)
        if backward:
            y.backward(v)

    call()                                                   # warm the caches (row patterns, constants)
    copy = 8 * b * P
    rec = recorder()
    rec.phase = "rest"
    with _labelled(rec), rec:
        call()
    d = rec.out
    split = {"build": 0, "search": 0, "rest": 0}
    for phase, nbytes in zip(d.phases, d.bytes, strict=True):
        split[phase] += nbytes
    return {"b": b, "P": P, "backward": backward, "kernels": len(d.kernels), "copies": d.total_bytes / copy,
            "build": split["build"] / copy, "search": split["search"] / copy, "rest": split["rest"] / copy,
            "sync_or_host_data": d.bad}


def fused_model(b: int, capacity: int | None, seed: int = 0) -> dict:
    """Kernels and traffic of ``layers.project(fused=True, check=False)``, forward, float32, int64 labels:
    each Triton launch as one kernel moving the bytes of its tensor arguments (read or written once: z, the
    labels, the outputs; an upper bound), run with the recorder off (the interpreter's own torch calls are
    not the kernel's traffic), and the aten ops around them (small tensors)."""
    import layers._fused as fused
    from bench.fused_hooks import launches_to, run_kernel

    rng = np.random.default_rng(seed)
    g = torch.tensor(rng.integers(0, 2, b))
    z = torch.tensor(rng.normal(0.5, 0.3, b) + 0.2 * g.numpy(), dtype=torch.float32)
    rec = recorder()
    rec.phase = "rest"

    def recorded(name, grid, args, kwargs):
        rec.out.kernels.append(f"triton.{name}")
        rec.out.bytes.append(sum(_span(x) for x in args))
        rec.out.phases.append("fused")
        with _disable_current_modes():
            return run_kernel(name, grid, args, kwargs)

    with launches_to(recorded, capacity), rec:
        layers.project(z, g, metric="dp", eps=0.05, bounds=(0.0, 1.0), fused=True, check=False)
    copy = 8 * b
    rows = list(zip(rec.out.kernels, rec.out.bytes, rec.out.phases, strict=True))
    aten = [n for _, n, ph in rows if ph == "rest"]
    return {"b": b, "capacity": capacity or fused.CAPACITY,
            "launches": [k for k, _, ph in rows if ph == "fused"],
            "triton_copies": sum(n for _, n, ph in rows if ph == "fused") / copy,
            "aten_kernels": len(aten), "aten_copies": sum(aten) / copy,
            "copies": sum(n for _, n, _ in rows) / copy}


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="*", default=[2000, 1e6, 1e7])
    p.add_argument("--batched", default="4096x256", help="PxB batched case ('' to skip)")
    p.add_argument("--fused", action="store_true",
                   help="model layers.project(fused=True) instead (Triton's interpreter without a GPU: slow, "
                        "b <= ~1e6); --capacity N scales the gather capacity to mimic a larger b's passes")
    p.add_argument("--capacity", type=int, default=None)
    args = p.parse_args(argv)
    if args.fused:
        return _main_fused(args)
    cases = []
    if args.batched:
        P, b = (int(x) for x in args.batched.split("x"))
        cases.append((b, P, True))
    cases += [(int(b), 1, False) for b in args.sizes]
    print("| call | kernels | bytes / bytes of one copy of z | breakpoint search | build | rest |")
    print("|---|---|---|---|---|---|")
    rows = []
    for b, P, bwd in cases:
        r = model(b, P, backward=bwd)
        rows.append(r)
        label = (f"{P} x {b}" if P > 1 else f"b = {b:g}") + (", forward+backward" if bwd else ", forward")
        reads = f" host reads: {r['sync_or_host_data']}" if r["sync_or_host_data"] else ""
        print(f"| {label} | {r['kernels']} | {r['copies']:.0f}x | {r['search']:.0f}x | {r['build']:.0f}x | "
              f"{r['rest']:.0f}x |{reads}", flush=True)
    return rows


def _main_fused(args) -> list:
    print("| call | Triton launches | their traffic (copies of z) | other device kernels | their traffic | "
          "total |")
    print("|---|---|---|---|---|---|")
    rows = []
    for b in args.sizes:
        r = fused_model(int(b), args.capacity)
        rows.append(r)
        names = ", ".join(k.removeprefix("triton.") for k in r["launches"])
        print(f"| b = {b:g} (capacity {r['capacity']}), forward | {len(r['launches'])} ({names}) | "
              f"{r['triton_copies']:.2f}x | {r['aten_kernels']} | {r['aten_copies']:.3f}x | "
              f"{r['copies']:.2f}x |", flush=True)
    return rows


if __name__ == "__main__":
    if "--fused" in sys.argv and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")      # before triton is imported
    main()
