r"""Exact Euclidean projection onto the fairness polyhedron, and the primal-dual step of Algorithm 1.

Problem (CLAIMS.md, "the fairness layer")::

    g(z) = argmin_y ||y - z||^2   s.t.   c_k - eps <= a_k^T y <= c_k + eps  (k = 1..m),   lb <= y <= ub.

Multiplier convention (CLAIMS.md): stationarity reads ``2 (y - z) + A^T mu + rho = 0``, ``mu_k > 0`` when
the upper side ``c_k + eps`` is active, ``mu_k < 0`` at the lower side, ``rho`` the box multipliers.
Internally we use the half-scaled dual variable ``nu = mu / 2`` so that ``y(nu) = clip(z - A^T nu, lb, ub)``.

Two exact methods, no iteration tolerance:

* **Breakpoint search** (one row, or rows with disjoint supports: dp with one attribute, mr and eo with
  one attribute). ``phi(nu) = a^T clip(z - nu a, lb, ub)`` is continuous, nonincreasing and piecewise
  linear with at most ``2 b`` breakpoints ``(z_i - ub)/a_i, (z_i - lb)/a_i``. Sort them, accumulate the
  slope changes to find the segment on which ``phi`` crosses the active side, then solve the linear
  piece *directly* from that segment's free set (a fresh sum, no accumulated round-off). O(b log b).
* **Semismooth Newton on the small dual** (coupled rows: several attributes, pairwise cells).
  The dual is ``min_nu  Phi(nu) = 1/2||w||^2 - 1/2 dist(w, box)^2 + c^T nu + eps ||nu||_1``,
  ``w = z - A^T nu``, whose optimality condition is ``A y(nu) - c in eps * d||nu||_1``. Each Newton step
  fixes the free set of y and the signs of nu and solves the m x m linear system of the active rows
  (primal-dual active set method); a line search on the convex Phi with a proximal-gradient safeguard
  globalises it. Because everything is piecewise linear, the step is exact once the active pattern is
  right; we stop only when the relative KKT residual is <= 1e-12 and raise otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reference.constraints import Constraints, as_float_vector, build_constraints, check_bounds

KKT_TOL = 1e-12          # relative KKT residual at which the coupled solver stops (issue spec)


def kkt_tolerance(b: int) -> float:
    """Certification threshold: 1e-12 relative, floored at the round-off of the row sums.

    a_k^T y sums up to b terms; its float64 round-off is ~ sqrt(b) * u (u = 1.1e-16) for random signs
    (gamma_b * sum |a_i y_i| ~ b * u in the worst case). A residual chains three such sums (A_F z_F in
    the solve, A y in the check, A^T mu in stationarity), each taken at 3 standard deviations and
    weighted by up to ~3 (multiplier scale): 30 sqrt(b) u. That is 1.5e-13 at b = 2000 (so 1e-12 holds)
    and 3.3e-12 at b = 1e6.
    """
    return max(KKT_TOL, 30.0 * np.sqrt(b) * np.finfo(np.float64).eps / 2)


class ConvergenceError(RuntimeError):
    """The exact solver did not reach its KKT tolerance: raised, never returned silently."""


@dataclasses.dataclass
class ProjectionResult:
    """y: (b,) the projection; mu: (m,) signed row multipliers (CLAIMS convention);
    constraints: the rows; kkt: relative residuals; method: "closed-form" | "breakpoint" | "newton"."""

    y: np.ndarray
    mu: np.ndarray
    constraints: Constraints
    kkt: dict
    method: str
    iterations: int = 0


# ----------------------------------------------------------------------------------------------- helpers

def _clip(w: np.ndarray, bounds) -> np.ndarray:
    return w if bounds is None else np.clip(w, bounds[0], bounds[1])


def kkt_residuals(y, z, constraints: Constraints, mu) -> dict:
    """KKT residuals of ``y`` as the projection of ``z`` onto C with row multipliers ``mu``.

    Returns absolute residuals, a scale, and ``max`` = the largest residual divided by the scale:

    * primal:          max(|A y - c| - eps, lb - y, y - ub, 0)
    * dual:            sign violation of mu: mu_k > 0 needs the upper side, mu_k < 0 the lower side
                       (measured as |mu_k| times the row's distance to that side, see complementarity);
                       box multipliers rho = -2(y - z) - A^T mu must be >= 0 at ub, <= 0 at lb, 0 inside
                       (the part of rho of the wrong sign or off the bounds is the dual residual).
    * complementarity: max_k |mu_k| * dist(a_k^T y - c_k, side of sign(mu_k)).
    * stationarity:    residual of 2(y - z) + A^T mu + rho = 0 on the free coordinates (rho is solved
                       for, so what remains is rho on free coordinates, reported under ``dual``).

    Scale: 1 + max|z| for primal and stationarity; (1 + max|mu|) (1 + max|z|) for complementarity.
    """
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    C = constraints
    if mu.shape[0] != C.m:
        raise ValueError(f"shape mismatch: mu has {mu.shape[0]} entries for {C.m} constraint rows")
    primal = C.violation(y)
    rho = -2.0 * (y - z) - (C.A.T @ mu if C.m else 0.0)
    if C.bounds is None:
        stationarity = float(np.max(np.abs(rho)))
        dual_box = 0.0
    else:
        lb, ub = C.bounds
        width = ub - lb
        at_ub = np.abs(y - ub) <= 1e-14 * (1 + abs(ub)) + 1e-15 * width
        at_lb = np.abs(y - lb) <= 1e-14 * (1 + abs(lb)) + 1e-15 * width
        free = ~(at_ub | at_lb)
        stationarity = float(np.max(np.abs(rho[free]), initial=0.0))
        dual_box = float(max(np.max(-rho[at_ub], initial=0.0), np.max(rho[at_lb], initial=0.0)))
    if C.m:
        r = C.gaps(y)
        dist_upper = np.abs(r - C.eps)
        dist_lower = np.abs(r + C.eps)
        comp = np.where(mu > 0, mu * dist_upper, np.where(mu < 0, -mu * dist_lower, 0.0))
        complementarity = float(np.max(comp))
    else:
        complementarity = 0.0
    scale = 1.0 + float(np.max(np.abs(z)))
    mu_scale = 1.0 + float(np.max(np.abs(mu), initial=0.0))
    out = {
        "primal": primal,
        "dual": dual_box,
        "complementarity": complementarity,
        "stationarity": stationarity,
        "scale": scale,
    }
    out["max"] = max(primal / scale, dual_box / scale, stationarity / scale,
                     complementarity / (scale * mu_scale))
    return out


# ------------------------------------------------------------------------------------ breakpoint search

def row_value_root(z: np.ndarray, a: np.ndarray, target: float, bounds) -> float:
    """The ``nu`` with ``a^T clip(z - nu a, lb, ub) = target`` (``phi`` nonincreasing), exactly.

    ``target`` must lie in the range of ``phi`` (guaranteed by the feasibility check of the rows).
    Only coordinates with ``a_i != 0`` matter. Without a box: ``nu = (a^T z - target) / ||a||^2``.
    """
    s = a != 0
    zs, av = z[s], a[s]
    if bounds is None:
        return float((av @ zs - target) / (av @ av))
    lb, ub = bounds
    t_ub, t_lb = (zs - ub) / av, (zs - lb) / av
    nu_in, nu_out = np.minimum(t_ub, t_lb), np.maximum(t_ub, t_lb)  # coordinate i free on (nu_in, nu_out)
    hi_val = np.where(av > 0, ub, lb)   # y_i for nu -> -inf
    lo_val = np.where(av > 0, lb, ub)   # y_i for nu -> +inf
    events = np.concatenate([nu_in, nu_out])
    d_alpha = np.concatenate([av * zs - av * hi_val, av * lo_val - av * zs])
    d_beta = np.concatenate([-av * av, av * av])
    order = np.argsort(events, kind="stable")
    ev = events[order]
    alpha = av @ hi_val + np.cumsum(d_alpha[order])
    beta = np.cumsum(d_beta[order])
    phi = alpha + beta * ev                       # phi at each breakpoint (continuous)
    k = int(np.searchsorted(-phi, -target, side="left"))  # first breakpoint with phi <= target
    if k == 0:
        return float(ev[0])                       # target = max phi: any nu <= ev[0]
    if k == len(ev):
        return float(ev[-1])                      # target = min phi: any nu >= ev[-1]
    left, right = ev[k - 1], ev[k]
    mid = 0.5 * (left + right)
    free = (nu_in < mid) & (nu_out > mid)         # the segment's free set
    if not free.any():
        return float(left)
    fixed_val = np.where(nu_in >= mid, hi_val, lo_val)
    num = av[free] @ zs[free] + av[~free] @ fixed_val[~free] - target
    nu = num / (av[free] @ av[free])
    return float(np.clip(nu, left, right))


def _separable_nu(z: np.ndarray, C: Constraints) -> np.ndarray:
    """Row-wise exact multipliers (half-scaled) when the rows have disjoint supports."""
    w0 = _clip(z, C.bounds)
    nu = np.zeros(C.m)
    for k in range(C.m):
        a = C.A[k]
        val = a @ w0
        if val > C.hi[k]:
            nu[k] = row_value_root(z, a, C.hi[k], C.bounds)
        elif val < C.lo[k]:
            nu[k] = row_value_root(z, a, C.lo[k], C.bounds)
    return nu


# --------------------------------------------------------------------------------- coupled: dual Newton

def _pattern_from(y: np.ndarray, C: Constraints, delta: float):
    """Active pattern read off an approximate y: rows within delta of a side, coordinates of a bound."""
    r = C.gaps(y)
    if C.eps == 0:
        upper, lower = np.abs(r) <= delta, np.zeros(C.m, dtype=bool)
    else:
        upper, lower = r >= C.eps - delta, r <= -C.eps + delta
    if C.bounds is None:
        return upper, lower, np.zeros(y.size, dtype=bool), np.zeros(y.size, dtype=bool)
    lb, ub = C.bounds
    return upper, lower, y >= ub - delta, y <= lb + delta


def _solve_pattern(z: np.ndarray, C: Constraints, pattern):
    """Exact solution for a given active pattern (upper rows, lower rows, coordinates at ub / lb).

    Given the pattern the projection is onto an affine set: ``y_F = z_F - A_TF^T nu`` with
    ``(A_TF A_TF^T) nu = A_TF z_F - rhs`` solved by least squares (consistent, possibly rank-deficient:
    y is unique even when nu is not); sign-correct multipliers then come from bounded least squares.
    Returns (nu, y) with nu half-scaled.
    """
    upper, lower, at_ub, at_lb = pattern
    A, c, eps = C.A, C.center, C.eps
    T = upper | lower
    y = z.copy()
    free = ~(at_ub | at_lb)
    if C.bounds is not None:
        y = np.where(at_ub, C.bounds[1], np.where(at_lb, C.bounds[0], y))
    nu = np.zeros(C.m)
    if T.any():
        AT = A[T]
        ATF = AT[:, free]
        side = np.where(upper[T], eps, -eps)
        rhs = c[T] + side - AT[:, ~free] @ y[~free]
        nu_T = np.linalg.lstsq(ATF @ ATF.T, ATF @ z[free] - rhs, rcond=None)[0]
        y[free] = z[free] - ATF.T @ nu_T
        nu[T] = _signed_multipliers(AT, z - y, free, y, C, upper[T], lower[T])
    return nu, y


def _refine_pattern(z: np.ndarray, C: Constraints, pattern, nu: np.ndarray, y: np.ndarray):
    """One primal-dual active-set correction of a pattern whose solution is not KKT-certified:
    free clamped coordinates whose box multiplier has the wrong sign, clamp free coordinates outside the
    box, activate violated rows, release active rows whose multiplier is zero."""
    upper, lower, at_ub, at_lb = (p.copy() for p in pattern)
    r = C.gaps(y)
    upper |= r > C.eps
    lower |= r < -C.eps
    upper &= ~((nu == 0) & (r < C.eps))
    lower &= ~((nu == 0) & (r > -C.eps))
    if C.bounds is not None:
        lb, ub = C.bounds
        rho = z - y - C.A.T @ nu                        # half-scaled box multipliers
        # a violated row cannot be met with these coordinates clamped: free those that can move its way
        too_high = (r > C.eps)[:, None] & (((C.A > 0) & at_ub) | ((C.A < 0) & at_lb))
        too_low = (r < -C.eps)[:, None] & (((C.A > 0) & at_lb) | ((C.A < 0) & at_ub))
        stuck = ~((C.A != 0) & ~(at_ub | at_lb)).any(axis=1)   # rows with no free coordinate left
        release = ((too_high | too_low) & stuck[:, None]).any(axis=0)
        at_ub = (at_ub & ~(rho < 0) & ~release) | (y > ub)
        at_lb = (at_lb & ~(rho > 0) & ~release) | (y < lb)
    return upper, lower, at_ub, at_lb


def _signed_multipliers(AT, resid, free, y, C: Constraints, upper, lower) -> np.ndarray:
    """Multipliers nu_T (half-scaled) with the KKT signs, by bounded least squares (BVLS).

    Stationarity (half-scaled) is ``A_T^T nu + rho = z - y`` with rho = 0 on free coordinates,
    rho >= 0 at ub and rho <= 0 at lb, nu >= 0 on upper-active rows and <= 0 on lower-active rows.
    Coordinates with the same column of A_T (same cell) give the same row of this system, so it is
    aggregated per cell: free coordinates give one equation, and of the clamped ones only the tightest
    (smallest z - ub, largest z - lb) matters, each with a sign-bounded slack.
    """
    from scipy.optimize import lsq_linear

    cols, cell = np.unique(AT.T, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    rows, target, slack_sign = [], [], []
    for q in range(cols.shape[0]):
        in_q = cell == q
        fq = in_q & free
        if fq.any():
            rows.append(cols[q])
            target.append(float(np.mean(resid[fq])))
            slack_sign.append(0)
        if C.bounds is not None:
            lb, ub = C.bounds
            uq, lq = in_q & ~free & (y == ub), in_q & ~free & (y == lb)
            if uq.any():
                rows.append(cols[q])
                target.append(float(np.min(resid[uq])))
                slack_sign.append(1)
            if lq.any():
                rows.append(cols[q])
                target.append(float(np.max(resid[lq])))
                slack_sign.append(-1)
    M = np.array(rows)
    slack_idx = [i for i, sgn in enumerate(slack_sign) if sgn != 0]
    S = np.zeros((len(rows), len(slack_idx)))
    for j, i in enumerate(slack_idx):
        S[i, j] = 1.0
    nT = AT.shape[0]
    if C.eps == 0:
        lo_nu, hi_nu = np.full(nT, -np.inf), np.full(nT, np.inf)
    else:
        lo_nu = np.where(upper, 0.0, -np.inf)
        hi_nu = np.where(lower & ~upper, 0.0, np.inf)
    lo_s = np.array([0.0 if slack_sign[i] > 0 else -np.inf for i in slack_idx])
    hi_s = np.array([np.inf if slack_sign[i] > 0 else 0.0 for i in slack_idx])
    fit = lsq_linear(np.hstack([M, S]), np.array(target),
                     bounds=(np.concatenate([lo_nu, lo_s]), np.concatenate([hi_nu, hi_s])),
                     method="bvls", tol=1e-15)
    return fit.x[:nT]


def _newton_nu(z: np.ndarray, C: Constraints) -> tuple[np.ndarray, int]:
    """Coupled rows: approximate dual solve, then exact polish certified by the KKT residual.

    Dual (half-scaled): ``min_nu Phi(nu) = 1/2||w||^2 - 1/2 dist(w, box)^2 + c^T nu + eps ||nu||_1``,
    ``w = z - A^T nu``, split as ``nu = p - q`` with ``p, q >= 0`` so that it is C^1 and bound-constrained
    (L-BFGS-B). The rows of coupled metrics are often linearly dependent (mr over several attributes,
    pairwise cells), so nu need not be unique; the primal y is. From the approximate y we read the
    active pattern at a sequence of thresholds, solve it exactly (:func:`_solve_pattern`) and correct it
    (:func:`_refine_pattern`) until certified; the
    first candidate whose relative KKT residual is <= 1e-12 is returned. Anything else raises.
    Returns the half-scaled multipliers nu and the number of L-BFGS-B iterations.
    """
    from scipy.optimize import minimize

    A, c, eps, m = C.A, C.center, C.eps, C.m
    scale = 1.0 + float(np.max(np.abs(z)))

    def fun(x):
        nu = x[:m] - x[m:]
        w = z - A.T @ nu
        y = _clip(w, C.bounds)
        phi = 0.5 * (w @ w) - 0.5 * np.sum((w - y) ** 2) + c @ nu + eps * x.sum()
        g_nu = c - A @ y
        return phi, np.concatenate([g_nu + eps, -g_nu + eps])

    L = float(np.linalg.norm(A @ A.T, 2)) * 2.0         # Lipschitz constant of grad in (p, q)

    def fista(x, n_iter):
        """Accelerated projected gradient with adaptive restart: slow but never stalls."""
        xk, yk, tk, fk = x.copy(), x.copy(), 1.0, fun(x)[0]
        for _ in range(n_iter):
            f_y, g_y = fun(yk)
            x_new = np.maximum(yk - g_y / L, 0.0)
            f_new = fun(x_new)[0]
            if f_new > fk:                               # restart the momentum
                yk, tk = xk.copy(), 1.0
                continue
            t_new = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
            yk = x_new + (tk - 1) / t_new * (x_new - xk)
            xk, tk, fk = x_new, t_new, f_new
        return xk

    def certify(x):
        nonlocal best
        y_approx = _clip(z - A.T @ (x[:m] - x[m:]), C.bounds)
        for rel in (1e-4, 1e-6, 1e-8, 1e-10, 1e-12):
            pattern = _pattern_from(y_approx, C, rel * scale)
            for _correction in range(20):
                nu, y = _solve_pattern(z, C, pattern)
                res = kkt_residuals(y, z, C, 2.0 * nu)["max"]
                if res <= tol:
                    return nu
                best = res if best is None else min(best, res)
                refined = _refine_pattern(z, C, pattern, nu, y)
                if all(np.array_equal(p, q) for p, q in zip(refined, pattern, strict=True)):
                    break
                pattern = refined
        return None

    x = np.zeros(2 * m)
    iters = 0
    best = None
    tol = kkt_tolerance(z.size)
    for maxiter in (50, 200, 1000, 5000, 20000):   # short rounds: we only need the active pattern
        opt = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=[(0, None)] * (2 * m),
                       options={"maxiter": maxiter, "maxcor": 30, "ftol": 0.0, "gtol": 1e-15})
        x, iters = opt.x, iters + opt.nit
        if not opt.success and opt.nit < maxiter:        # line-search breakdown: safeguarded steps
            x = fista(x, min(20 * maxiter, 2000))
            iters += min(20 * maxiter, 2000)
        nu = certify(x)
        if nu is not None:
            return nu, iters
    raise ConvergenceError(f"coupled solver: no active pattern certified to relative KKT residual "
                           f"{tol:g} (best {best:.3g}, m={m}, b={z.size})")


# --------------------------------------------------------------------------------------------- public API

def solve(z, groups, *, metric: str, eps, bounds=None, targets=None,
          empty: str = "raise") -> ProjectionResult:
    """Exact projection of z (b,) onto the fairness set of ``metric``; see the module docstring.

    groups: (b,) or (b, k) 0/1 labels; targets: (b,) needed for "mr" and "eo"; bounds: (lb, ub) or None.
    Returns a :class:`ProjectionResult` with the projection, the row multipliers and KKT residuals.
    Raises ValueError on bad input and ConvergenceError if the KKT residual is not <= 1e-12 relative.
    """
    z = as_float_vector(z)
    C = build_constraints(groups, metric, eps=eps, b=z.size, targets=targets, bounds=bounds, empty=empty)
    if C.m == 0:
        nu, method, iters = np.zeros(0), "closed-form", 0
    elif C.separable():
        nu, method, iters = _separable_nu(z, C), ("closed-form" if C.bounds is None else "breakpoint"), 0
    else:
        nu, iters = _newton_nu(z, C)
        method = "newton"
    y = _clip(z - C.A.T @ nu, C.bounds) if C.m else _clip(z.copy(), C.bounds)
    kkt = kkt_residuals(y, z, C, 2.0 * nu)
    if kkt["max"] > kkt_tolerance(z.size) * 10:  # breakpoint/closed form: round-off only, else a bug
        raise ConvergenceError(f"{method} solution has relative KKT residual {kkt['max']:.3g}")
    return ProjectionResult(y=y, mu=2.0 * nu, constraints=C, kkt=kkt, method=method, iterations=iters)


def project(z, groups, *, metric: str, eps, bounds=None, targets=None, empty: str = "raise") -> np.ndarray:
    """``g(z) = argmin_{y in C} ||y - z||^2``, exactly (to round-off). Shapes: z (b,) -> y (b,).

    See :func:`solve` for the arguments; this returns only the projection.
    """
    return solve(z, groups, metric=metric, eps=eps, bounds=bounds, targets=targets, empty=empty).y


# ------------------------------------------------------------------------------ penalised primal-dual step

@dataclasses.dataclass
class PenalizedResult:
    """y: (b,) the step's output; gap: G(y) = max_k |a_k^T y - c_k|; mu: (m,) signed row multipliers
    with sum |mu| = lam when gap > 0 (CLAIMS convention); constraints: the rows (eps = 0)."""

    y: np.ndarray
    gap: float
    mu: np.ndarray
    constraints: Constraints


def illinois_root(f, lo: float, f_lo: float, hi: float, f_hi: float, *, f_tol: float, x_tol_abs: float = 0.0,
                  x_tol_rel: float = 0.0, max_iter: int = 200, what: str = "root"):
    """Root of a nonincreasing piecewise-linear ``f`` bracketed by ``f(lo) > 0 >= f(hi)``.

    Illinois-modified regula falsi: exact (to round-off) once two iterates share a linear piece; the
    modification halves the stale end's value to avoid one-sided stagnation. ``f(x)`` returns
    ``(value, payload)``. Stops when ``|f| <= f_tol`` or the bracket is below
    ``x_tol_abs + x_tol_rel * hi``; returns ``(x, value, payload, hi)`` (``hi``: the feasible end).
    Raises ConvergenceError after ``max_iter`` evaluations.
    """
    side = 0
    for _ in range(max_iter):
        x = min(max(hi - f_hi * (hi - lo) / (f_hi - f_lo), lo), hi)
        h, payload = f(x)
        if abs(h) <= f_tol or hi - lo <= x_tol_abs + x_tol_rel * hi:
            return x, h, payload, hi
        if h > 0:
            lo, f_lo = x, h
            if side == 1:
                f_hi *= 0.5
            side = 1
        else:
            hi, f_hi = x, h
            if side == -1:
                f_lo *= 0.5
            side = -1
    raise ConvergenceError(f"{what}: regula falsi did not converge in {max_iter} evaluations")


def solve_penalized(z, groups, *, lam, bounds, metric: str = "dp", targets=None,
                    empty: str = "drop") -> PenalizedResult:
    r"""Exact step 1 of Algorithm 1: ``argmin_{lb <= y <= ub} ||y - z||^2 + lam * G(y)``,
    ``G(y) = max_k |a_k^T y - c_k|`` (DP: the largest attribute gap). Pass ``lam = lambda_t * b_t``.

    G is polyhedral, so this is the prox of a polyhedral function. It equals the projection onto
    ``{G(y) <= t*}`` where ``t*`` solves ``V'(t) = -lam``, ``V(t)`` the squared distance of the projection
    with tolerance t (convex, piecewise quadratic; ``-V'(t) = sum_k |mu_k(t)|``). One row: the multiplier
    is ``nu = clip(root of a^T y(nu) = c, -lam/2, lam/2)``, found by the breakpoint search.
    Several rows: ``t*`` by bracketed secant on the piecewise-linear ``sum |mu(t)|`` (exact once two
    iterates share a linear piece), each evaluation an exact projection. Empty groups drop their rows.
    """
    z = as_float_vector(z)
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    bounds = check_bounds(bounds)
    C = build_constraints(groups, metric, eps=0.0, b=z.size, targets=targets, bounds=bounds, empty=empty)
    if C.m == 0 or lam == 0.0:
        y = _clip(z.copy(), bounds)
        return PenalizedResult(y=y, gap=float(np.max(np.abs(C.gaps(y)), initial=0.0)), mu=np.zeros(C.m),
                               constraints=C)
    if C.m == 1:
        a = C.A[0]
        half = lam / 2.0
        y_plus = _clip(z - half * a, bounds)
        y_minus = _clip(z + half * a, bounds)
        if a @ y_plus - C.center[0] > 0:         # even the full penalty leaves a positive gap
            nu = half
        elif a @ y_minus - C.center[0] < 0:
            nu = -half
        else:
            nu = float(np.clip(row_value_root(z, a, C.center[0], bounds), -half, half))
        y = _clip(z - nu * a, bounds)
        return PenalizedResult(y=y, gap=float(abs(a @ y - C.center[0])), mu=np.array([2.0 * nu]),
                               constraints=C)

    def excess(t: float) -> tuple[float, ProjectionResult]:
        res = solve(z, groups, metric=metric, eps=t, bounds=bounds, targets=targets, empty=empty)
        return float(np.abs(res.mu).sum()) - lam, res

    h0, r0 = excess(0.0)
    if h0 <= 0:
        return PenalizedResult(y=r0.y, gap=float(np.max(np.abs(C.gaps(r0.y)))), mu=r0.mu, constraints=C)
    t_hi = float(np.max(np.abs(C.gaps(_clip(z, bounds)))))
    # sum |mu(t_hi)| = 0, so excess(t_hi) = -lam
    _, _, res, _ = illinois_root(excess, 0.0, h0, t_hi, -lam, f_tol=KKT_TOL * max(lam, 1.0),
                                 x_tol_abs=1e-15 * max(t_hi, 1.0), what="penalized step (max-gap level)")
    return PenalizedResult(y=res.y, gap=float(np.max(np.abs(C.gaps(res.y)))),
                           mu=res.mu * (lam / max(np.abs(res.mu).sum(), 1e-300)), constraints=C)


def penalized_step(z, groups, *, lam, bounds, metric: str = "dp", targets=None,
                   empty: str = "drop") -> np.ndarray:
    """Output y (b,) of :func:`solve_penalized` (step 1 of Algorithm 1, exact)."""
    return solve_penalized(z, groups, lam=lam, bounds=bounds, metric=metric, targets=targets, empty=empty).y
