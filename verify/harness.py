r"""Reusable numerics of the checks: log-log fits with bootstrap CIs, finite differences with the
V-curve, Jacobian builders, Lipschitz probes. NumPy/SciPy only (no torch): every claim module may import it.

Conventions: functions ``f`` map a float64 vector x (n,) to a float64 vector (m,); with ``batched=True``
they map a stack (k, n) to (k, m) in one call (a batched layer evaluates all FD points at once); all
randomness comes from an explicit ``seed`` so every figure is reproducible.

* :func:`fit_loglog`  -- slope of log(values) against log(T) with a bootstrap confidence interval.
* :func:`fd_sweep`    -- central differences (f(x+hu) - f(x-hu)) / 2h against an analytic J u over a grid
  of h: the error is O(h^2) truncation (zero for a piecewise-affine f until h reaches the nearest kink)
  plus O(u_mach |f| / h) round-off, a V-shaped curve whose minimum picks h.
* :func:`fd_jacobian`, :func:`one_sided` -- full central-difference Jacobian, one-sided quotients.
* :func:`projector_jacobian`, :func:`active_set` -- the orthogonal projector of claim L3 built from an
  active set, and the active set read off a projection y.
* :func:`pair_ratios`, :func:`adversarial_ratio` -- Monte-Carlo and optimised Lipschitz ratios.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

U64 = float(np.finfo(np.float64).eps) / 2     # unit round-off of float64, 1.1e-16
U32 = float(np.finfo(np.float32).eps) / 2     # unit round-off of float32, 6.0e-8


def unit_roundoff(dtype) -> float:
    """u = eps_mach / 2 of ``dtype`` (numpy or torch dtype, or their names)."""
    name = str(dtype).replace("torch.", "")
    if name in ("float64", "double"):
        return U64
    if name in ("float32", "float"):
        return U32
    raise ValueError(f"unsupported dtype {dtype!r}: expected float32 or float64")


# ------------------------------------------------------------------------------------------ log-log fit

@dataclasses.dataclass(frozen=True)
class LogLogFit:
    """``log values ~ intercept + slope * log T``; ``ci`` = (lo, hi) bootstrap percentile interval at
    ``level`` for the slope; ``n_points`` fitted points; ``n_seeds`` curves averaged; ``method`` of the
    bootstrap ("seeds": resample whole curves; "blocks": moving-block bootstrap of the residuals)."""

    slope: float
    intercept: float
    ci: tuple[float, float]
    level: float
    n_points: int
    n_seeds: int
    method: str

    def contains(self, value: float) -> bool:
        return self.ci[0] <= value <= self.ci[1]


def _theil_sen(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Theil-Sen fits of the rows of Y (k, n) against x (n,), vectorised over rows: slope = median of the
    pairwise slopes (y_j - y_i) / (x_j - x_i), i < j; intercept = median(y) - slope median(x), as
    scipy.stats.theilslopes (which this reproduces to round-off for one row)."""
    i, j = np.triu_indices(x.size, k=1)
    slopes = np.median((Y[:, j] - Y[:, i]) / (x[j] - x[i]), axis=1)
    return slopes, np.median(Y, axis=1) - slopes * np.median(x)


def _geometric_subset(T: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` entries of sorted T, about evenly spaced in log T (so that a
    dense grid t = 1..T does not let the large-T tail dominate the fit)."""
    if T.size <= max_points:
        return np.arange(T.size)
    grid = np.geomspace(T[0], T[-1], max_points)
    return np.unique(np.searchsorted(T, grid, side="left").clip(0, T.size - 1))


def fit_loglog(T, values, *, burn_in: float = 0, seeds_axis: int | None = None, n_boot: int = 2000,
               level: float = 0.95, max_points: int = 60, seed: int = 0) -> LogLogFit:
    r"""Fit ``values ~ C T^slope`` on (log T, log values) by Theil-Sen (median of pairwise slopes,
    ``scipy.stats.theilslopes``; robust to the few outlying points of a noisy curve), with a bootstrap CI.

    T: (n,) positive, increasing. values: (n,) one curve, or a 2-D array holding one curve per seed,
    the seeds along ``seeds_axis`` (0 or 1). Only points with ``T >= burn_in`` are fitted (a threshold on
    T, not an index). A dense T grid is thinned to ``max_points`` log-spaced points.

    Several seeds: the fit is on the log of the mean curve; the CI resamples whole curves (seeds) with
    replacement. One curve: moving-block bootstrap of the fit residuals (blocks of ~n/8 consecutive
    points, which keeps their serial correlation). Values must be > 0 on the fitted range.
    """
    T = np.asarray(T, dtype=np.float64)
    V = np.asarray(values, dtype=np.float64)
    if T.ndim != 1 or T.size < 3:
        raise ValueError(f"T must be one-dimensional with >= 3 points, got shape {T.shape}")
    if not np.all(np.isfinite(T)) or np.any(T <= 0) or np.any(np.diff(T) <= 0):
        raise ValueError("T must be finite, positive and strictly increasing")
    if seeds_axis is None:
        if V.shape != T.shape:
            raise ValueError(f"shape mismatch: values {V.shape} vs T {T.shape} "
                             "(pass seeds_axis for 2-D values)")
        V = V[None, :]
    else:
        if V.ndim != 2 or seeds_axis not in (0, 1):
            raise ValueError(f"seeds_axis must be 0 or 1 with 2-D values, got axis {seeds_axis}, "
                             f"shape {V.shape}")
        V = V if seeds_axis == 0 else V.T
        if V.shape[1] != T.size:
            raise ValueError(f"shape mismatch: values have {V.shape[1]} points per seed, T has {T.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    keep = T >= burn_in
    T, V = T[keep], V[:, keep]
    idx = _geometric_subset(T, max_points)
    T, V = T[idx], V[:, idx]
    if T.size < 3:
        raise ValueError(f"fewer than 3 points with T >= burn_in={burn_in}")
    if not np.all(np.isfinite(V)) or np.any(V <= 0):
        raise ValueError("values must be finite and > 0 on the fitted range (log-log fit)")
    x = np.log(T)
    y = np.log(V.mean(axis=0))
    slope, intercept = (float(v[0]) for v in _theil_sen(x, y[None]))
    rng = np.random.default_rng(seed)
    n_seeds = V.shape[0]
    if n_seeds > 1:
        method = "seeds"
        picks = rng.integers(0, n_seeds, (n_boot, n_seeds))
        boot = _theil_sen(x, np.log(V[picks].mean(axis=1)))[0]
    else:
        method = "blocks"
        resid = y - (intercept + slope * x)
        n = x.size
        block = max(1, n // 8)
        starts = rng.integers(0, n - block + 1, (n_boot, -(-n // block)))
        r = resid[(starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n]]
        boot = _theil_sen(x, intercept + slope * x + r)[0]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return LogLogFit(slope=slope, intercept=intercept, ci=(float(lo), float(hi)), level=level,
                     n_points=int(T.size), n_seeds=n_seeds, method=method)


# -------------------------------------------------------------------------------- finite differences

def central_difference(f: Callable, x: np.ndarray, u: np.ndarray, h: float) -> np.ndarray:
    """(f(x + h u) - f(x - h u)) / (2 h): J u + O(h^2) truncation + O(u_mach |f| / h) round-off."""
    return (np.asarray(f(x + h * u)) - np.asarray(f(x - h * u))) / (2.0 * h)


def one_sided(f: Callable, x: np.ndarray, u: np.ndarray, h: float,
              fx: np.ndarray | None = None) -> np.ndarray:
    """(f(x + h u) - f(x)) / h, the quotient whose limit h -> 0+ is the directional derivative f'(x; u)."""
    fx = np.asarray(f(x)) if fx is None else fx
    return (np.asarray(f(x + h * u)) - fx) / h


@dataclasses.dataclass(frozen=True)
class FDSweep:
    """hs: (k,) steps; errors: (k,) max-norm error of the central difference against the analytic J u;
    h_best / error_best: the bottom of the V-curve."""

    hs: np.ndarray
    errors: np.ndarray
    h_best: float
    error_best: float

    def series(self) -> dict:
        return {"x": self.hs.tolist(), "y": self.errors.tolist(), "xlabel": "h",
                "ylabel": "max |FD - J u|", "scale": "loglog"}


def fd_sweep(f: Callable, x: np.ndarray, u: np.ndarray, Ju: np.ndarray, hs=None,
             batched: bool = False) -> FDSweep:
    """Central-difference error ``max |FD_h - Ju|`` for every h in ``hs`` (default 1e-13 .. 1e-1).

    Round-off grows like u_mach |f| / h as h -> 0; truncation grows like h^2 |f'''| (for a
    piecewise-affine f: 0 until x +- h u crosses a kink, then O(1)). h is picked at the minimum.
    """
    hs = np.geomspace(1e-13, 1e-1, 25) if hs is None else np.asarray(hs, dtype=np.float64)
    Ju = np.asarray(Ju, dtype=np.float64)
    if batched:
        F = np.asarray(f(np.concatenate([x + hs[:, None] * u, x - hs[:, None] * u])))
        fd = (F[:hs.size] - F[hs.size:]) / (2.0 * hs[:, None])
    else:
        fd = np.stack([central_difference(f, x, u, h) for h in hs])
    errors = np.max(np.abs(fd - Ju), axis=1)
    k = int(np.argmin(errors))
    return FDSweep(hs=hs, errors=errors, h_best=float(hs[k]), error_best=float(errors[k]))


def fd_jacobian(f: Callable, x: np.ndarray, h: float, batched: bool = False) -> np.ndarray:
    """Central-difference Jacobian (m, n): column i = (f(x + h e_i) - f(x - h e_i)) / 2h."""
    x = np.asarray(x, dtype=np.float64)
    if batched:
        E = h * np.eye(x.size)
        F = np.asarray(f(np.concatenate([x + E, x - E])))
        return ((F[:x.size] - F[x.size:]) / (2.0 * h)).T
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = 1.0
        cols.append(central_difference(f, x, e, h))
    return np.stack(cols, axis=1)


# ------------------------------------------------------------------------------------- Jacobian builder

def active_set(C, y: np.ndarray, *, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Active set of a projection y onto C = {|A y - c| <= eps, lb <= y <= ub}, read off y.

    Returns (rows, free): rows (m,) bool, |a_k^T y - c_k| >= eps - tol; free (b,) bool, coordinates at
    distance > tol from both bounds. At a non-kink point every such constraint has a nonzero multiplier,
    so this is the active set of L3; ``tol`` must exceed the round-off of y and of A y.
    """
    rows = np.abs(C.gaps(y)) >= C.eps - tol if C.m else np.zeros(0, dtype=bool)
    if C.bounds is None:
        free = np.ones(y.shape, dtype=bool)
    else:
        lb, ub = C.bounds
        free = (y > lb + tol) & (y < ub - tol)
    return rows, free


def projector_jacobian(A_active: np.ndarray, free: np.ndarray) -> np.ndarray:
    r"""J = orthogonal projector onto {v : v_i = 0 (i not free), A_active v = 0}, shape (b, b).

    On the free block: J_FF = I - A_F^T (A_F A_F^T)^+ A_F (pseudo-inverse: active rows may be linearly
    dependent, e.g. pairwise cells); zero rows and columns on clamped coordinates (claim L3).
    """
    free = np.asarray(free, dtype=bool)
    b = free.size
    J = np.zeros((b, b))
    F = np.flatnonzero(free)
    AF = np.asarray(A_active, dtype=np.float64).reshape(-1, b)[:, F]
    JF = np.eye(F.size)
    if AF.shape[0]:
        JF = JF - AF.T @ np.linalg.pinv(AF @ AF.T, hermitian=True) @ AF
    J[np.ix_(F, F)] = JF
    return J


# ------------------------------------------------------------------------------------ Lipschitz probes

def pair_ratios(g: Callable, Z1: np.ndarray, Z2: np.ndarray,
                batched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For pairs (z, z') (rows of Z1, Z2): ratio ||g(z) - g(z')|| / ||z - z'|| (nonexpansive: <= 1) and the
    firm residual (||dg||^2 - <dg, dz>) / ||dz||^2 (firmly nonexpansive: <= 0)."""
    Z1, Z2 = np.asarray(Z1, dtype=np.float64), np.asarray(Z2, dtype=np.float64)
    if Z1.shape != Z2.shape or Z1.ndim != 2:
        raise ValueError(f"shape mismatch: Z1 {Z1.shape} and Z2 {Z2.shape} must both be (pairs, n)")
    dZ = Z1 - Z2
    nz = np.sum(dZ * dZ, axis=1)
    if np.any(nz == 0):
        raise ValueError("pair_ratios: identical points z = z'")
    if batched:
        G = np.asarray(g(np.concatenate([Z1, Z2])))          # one call for all 2k points
        dG = G[:len(Z1)] - G[len(Z1):]
    else:
        dG = np.stack([np.asarray(g(a)) - np.asarray(g(b)) for a, b in zip(Z1, Z2, strict=True)])
    gg = np.sum(dG * dG, axis=1)
    return np.sqrt(gg / nz), (gg - np.sum(dG * dZ, axis=1)) / nz


def adversarial_ratio(objective: Callable[[np.ndarray, np.ndarray], float], z1: np.ndarray, z2: np.ndarray,
                      *, maxfev: int = 400) -> tuple[float, np.ndarray, np.ndarray]:
    """Maximise ``objective(z, z')`` (a Lipschitz ratio or firm residual) by Nelder-Mead from (z1, z2).

    Derivative-free on purpose: the objective is piecewise smooth with kinks exactly where the search
    should look. Returns (best value, z, z'); the start counts as a candidate.
    """
    from scipy.optimize import minimize

    n = z1.size
    x0 = np.concatenate([z1, z2])
    best = [objective(z1, z2), x0]

    def neg(x):
        if np.allclose(x[:n], x[n:], rtol=0, atol=1e-12):
            return 0.0
        v = objective(x[:n], x[n:])
        if v > best[0]:
            best[0], best[1] = v, x.copy()
        return -v

    minimize(neg, x0, method="Nelder-Mead", options={"maxfev": maxfev, "xatol": 1e-10, "fatol": 1e-14})
    return float(best[0]), best[1][:n], best[1][n:]
