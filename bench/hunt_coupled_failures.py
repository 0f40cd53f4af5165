"""Diagnostic (known open defect): count coupled-reference ConvergenceErrors on adversarial inputs.

    python -m bench.hunt_coupled_failures [--trials 1000]

Two-attribute DP penalized steps on tie-heavy z (rounded to 1-3 decimals), box (-1, 1). Measured
2026-11-23: 5 of 1000 raise (the solver never returns an uncertified answer; it raises). Target: 0.
"""

import argparse

import numpy as np

import reference
from reference.projection import ConvergenceError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    fails = []
    for trial in range(args.trials):
        b = int(rng.integers(2, 40))
        g = rng.integers(0, 2, (b, 2))
        z = np.round(rng.normal(0, 1, b) + rng.normal(0, 2) * g[:, 0] + rng.normal(0, 2) * g[:, 1],
                     int(rng.integers(1, 4)))
        lam = float(rng.choice([0.5, 3.0, 10.0]))
        try:
            reference.solve_penalized(z, g, lam=lam, bounds=(-1.0, 1.0), metric="dp")
        except ConvergenceError as exc:
            fails.append(trial)
            print(f"trial {trial}: b={b} lam={lam}: {exc}")
    print(f"{len(fails)} of {args.trials} raised ConvergenceError")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
