"""Exact reference solver vs cvxpy (Clarabel) — wall time per projection, on demand.

    python -m bench.bench_reference [--sizes 2000 1000000] [--repeat 5] [--cvxpy-max 1000000]

Prints a markdown table (median seconds, ratio, max |dy|, KKT residual) to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import reference

CASES = [  # (metric, attributes, bounds)
    ("dp", 1, None),
    ("dp", 1, (-1.0, 2.0)),
    ("dp", 2, (-1.0, 2.0)),
    ("dp_pairwise", 2, (-1.0, 2.0)),
    ("mr", 1, (-1.0, 2.0)),
    ("eo", 1, (-1.0, 2.0)),
    ("eo", 2, None),
]


def _instance(b: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, (b, k))
    z = rng.normal(0, 1, b) + 1.5 * g[:, 0] - 0.5 * g[:, -1]
    t = np.clip(rng.normal(0.5, 1, b) + 0.5 * g[:, 0], -1.0, 2.0)
    return z, g, t


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cvxpy-max", type=int, default=1_000_000, help="largest b given to cvxpy")
    args = ap.parse_args(argv)
    try:
        from reference import cvx
    except ImportError:
        cvx = None
    print("| b | metric | k | box | exact median [s] | method | KKT rel "
          "| Clarabel median [s] | ratio | max abs dy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in args.sizes:
        for metric, k, bounds in CASES:
            z, g, t = _instance(b, k)
            kw = dict(metric=metric, eps=0.05, bounds=bounds, targets=t)
            t_exact, res = _median_time(lambda z=z, g=g, kw=kw: reference.solve(z, g, **kw), args.repeat)
            row = (f"| {b} | {metric} | {k} | {bounds} | {t_exact:.4g} | {res.method} "
                   f"| {res.kkt['max']:.1e} |")
            if cvx is not None and b <= args.cvxpy_max:
                rep = 1 if b > 100_000 else args.repeat
                t_cvx, ref = _median_time(
                    lambda z=z, g=g, kw=kw: cvx.solve_projection(z, g, solver="CLARABEL", **kw), rep)
                row += f" {t_cvx:.4g} | {t_cvx / t_exact:.0f}x | {np.max(np.abs(ref.y - res.y)):.1e} |"
            else:
                row += " - | - | - |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
