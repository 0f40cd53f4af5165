"""Diagnostic: count coupled-reference ConvergenceErrors on adversarial, tie-heavy inputs, per family.

    python -m bench.hunt_coupled_failures [--trials 1000] [--seed 5] [--family NAME ...]

Families (b in [2, 40], z rounded to 1-3 decimals plus group shifts: ties, coordinates exactly on bounds):

* ``penalized``: two-attribute DP penalized steps, box (-1, 1), lam in {0.5, 3, 10} (the original
  reproducer: its inner projections have tiny eps, 1e-11..1e-7, along the secant on the max-gap level).
* ``dp2``, ``dp3``, ``pairwise2``, ``pairwise3``, ``mr2``, ``eo2``: projections with 2-3 attributes; eps drawn
  from {0, log-uniform 1e-11..1e-6, 0.01, 0.1, 1}; box drawn from {None, (-1, 1), (0, 1)}; MR targets clipped
  into the box (feasible) and rounded (ties).

Every returned answer is KKT-certified by ``reference.solve`` itself (<= kkt_tolerance(b)); a failure is a
raise. Printed per family: trials, raises, how many took the coupled path, the largest certified residual.
``--layers`` also runs the torch layers (float64, CPU) on every instance and reports their raises and their
largest distance from the reference over the agreement tolerance of tests/test_layers.py.
Measured 2026-11-23 with the L-BFGS-B solver: 5 of 1000 penalized steps raised. 2026-11-29 (augmented
Lagrangian, see reference/projection.py): 0 raises in 1000 trials of every family (see bench/RESULTS.md).
"""

import argparse

import numpy as np

import reference
from reference.projection import ConvergenceError

FAMILIES = {  # name: (metric, attributes)
    "penalized": ("dp", 2),
    "dp2": ("dp", 2),
    "dp3": ("dp", 3),
    "pairwise2": ("dp_pairwise", 2),
    "pairwise3": ("dp_pairwise", 3),
    "mr2": ("mr", 2),
    "eo2": ("eo", 2),
}


def _instance(rng, k: int):
    b = int(rng.integers(2, 40))
    g = rng.integers(0, 2, (b, k))
    z = rng.normal(0, 1, b) + sum(rng.normal(0, 2) * g[:, j] for j in range(k))
    return b, g, np.round(z, int(rng.integers(1, 4)))


def _trial(rng, family: str):
    """One random instance of the family: (its arguments, the reference's result)."""
    metric, k = FAMILIES[family]
    b, g, z = _instance(rng, k)
    if family == "penalized":
        args = dict(z=z, groups=g, lam=float(rng.choice([0.5, 3.0, 10.0])), bounds=(-1.0, 1.0), metric="dp")
        return args, reference.solve_penalized(**args)
    eps = [0.0, float(10 ** rng.uniform(-11, -6)), 0.01, 0.1, 1.0][int(rng.integers(5))]
    bounds = [None, (-1.0, 1.0), (0.0, 1.0)][int(rng.integers(3))]
    targets = np.round(rng.normal(0.5, 1, b) + 0.5 * g[:, 0], int(rng.integers(1, 3)))
    if bounds is not None:
        targets = np.clip(targets, *bounds)
    args = dict(z=z, groups=g, metric=metric, eps=eps, bounds=bounds, targets=targets, empty="drop")
    return args, reference.solve(**args)


def _layer_error(args: dict, y_ref: np.ndarray) -> float:
    """max |y_layer - y_ref| over the agreement tolerance of tests/test_layers.py (> 1: disagreement):
    1e-12 (1 + max|z|) for projections, plus 2e-12 max(lam, 1) for penalised steps (the level secant)."""
    import torch

    import layers

    t = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
    tol = 1e-12 * (1 + np.abs(args["z"]).max())
    if "lam" in args:
        y = layers.penalized_step(t.pop("z"), t.pop("groups"), **t)
        tol += 2e-12 * max(args["lam"], 1.0)
    else:
        y = layers.project(t.pop("z"), t.pop("groups"), **t)
    return float(np.abs(y.numpy() - y_ref).max() / tol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="trials per family")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--family", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    ap.add_argument("--layers", action="store_true",
                    help="also run layers.project / layers.penalized_step (torch, float64, CPU) on every "
                         "instance: their raises and max |dy| / tolerance (> 1: disagreement)")
    args = ap.parse_args(argv)
    extra = " layers raised | layers max dy/tol |" if args.layers else ""
    print("| family | trials | raised | coupled path | max certified KKT rel |" + extra)
    print("|---|---|---|---|---|" + ("---|---|" if args.layers else ""))
    total = 0
    for family in args.family:
        # penalized: the original reproducer's stream (seed 5: 5 raises of 1000 before the fix)
        stream = args.seed if family == "penalized" else [args.seed, list(FAMILIES).index(family)]
        rng = np.random.default_rng(stream)
        raised, coupled, worst, layer_raised, layer_worst = [], 0, 0.0, [], 0.0
        for trial in range(args.trials):
            try:
                inst, res = _trial(rng, family)
            except ConvergenceError as exc:
                raised.append(trial)
                print(f"  {family} trial {trial}: {exc}")
                continue
            if family != "penalized":
                coupled += res.method == "alm-pattern"
                worst = max(worst, res.kkt["max"])
            if args.layers:
                try:
                    err = _layer_error(inst, res.y)
                except ConvergenceError as exc:
                    layer_raised.append(trial)
                    print(f"  {family} trial {trial} (layers): {exc}")
                    continue
                if err > 1:
                    print(f"  {family} trial {trial} (layers): |dy| = {err:.3g} x the tolerance")
                layer_worst = max(layer_worst, err)
        total += len(raised) + len(layer_raised)
        shown = ("-", "-") if family == "penalized" else (coupled, f"{worst:.1e}")
        extra = f" {len(layer_raised)} | {layer_worst:.1e} |" if args.layers else ""
        print(f"| {family} | {args.trials} | {len(raised)} | {shown[0]} | {shown[1]} |" + extra, flush=True)
    print(f"{total} ConvergenceError in total" + (" (reference and layers)" if args.layers else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
