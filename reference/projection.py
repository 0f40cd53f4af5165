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
* **Active pattern, then an exact solve** (coupled rows: several attributes, pairwise cells). Rows are
  constant on the cells of the groups (``A = W[:, cell]``), so everything below costs O(m b) per pass
  plus m x m algebra. (1) An *approximate* phase identifies the active pattern: an augmented Lagrangian
  of the projection with every constraint dualised, each subproblem solved by semismooth Newton (the
  m x m Woodbury system stays regular for linearly dependent rows). (2) The pattern -- every constraint
  within a threshold of its side, weakly active ones included; for a row with both sides that close
  (tiny eps) the sign of its multiplier picks the side -- is solved *exactly*: the projection onto the
  affine set of ALL constraints active at y* is y* itself, so a least-squares solve on the pattern
  returns y* to round-off; sign-correct multipliers follow (the solve's own, or bounded least squares).
  (3) The answer is returned only if its relative KKT residual is <= ``kkt_tolerance(b)``; thresholds
  1e-4..1e-14 are tried after every multiplier update, and the solver raises ConvergenceError after 30
  updates without a certificate. No iteration tolerance reaches the answer: phase (1) only picks the
  pattern.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reference.constraints import Constraints, as_float_vector, build_constraints, check_bounds

KKT_TOL = 1e-12          # relative KKT residual that certifies a coupled solution (issue spec)


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
    constraints: the rows; kkt: relative residuals; method: "closed-form" | "breakpoint" | "alm-pattern";
    iterations: Newton steps of the augmented Lagrangian (coupled rows only)."""

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
                       (measured by complementarity); box multipliers rho = -2(y - z) - A^T mu must be
                       >= 0 at ub, <= 0 at lb, 0 inside (the part of rho of the wrong sign or off the
                       bounds is the dual residual).
    * complementarity: max_k min(|mu_k| s, dist(a_k^T y - c_k, side of sign(mu_k))),
                       s = (1 + max|z|) / (1 + max|mu|): the natural residual, the smaller of the multiplier
                       (in units of y) and the row's distance to the side its sign claims. It is linear in
                       the error of y (error bound of a polyhedral projection); the product |mu_k| dist
                       (the duality gap) is not: y is off by up to its square root. Measured here: a
                       wrong-sided multiplier 3.6e-7 on a row 2 eps = 2e-7 from its side, y off by 6.6e-8,
                       passed the product at 7e-16 relative.
    * stationarity:    residual of 2(y - z) + A^T mu + rho = 0 on the free coordinates (rho is solved
                       for, so what remains is rho on free coordinates, reported under ``dual``).

    Scale: 1 + max|z| for every residual (all in units of y). A y, z or mu with a NaN or infinite entry
    gives ``max = inf`` (never certified).
    """
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    C = constraints
    if mu.shape[0] != C.m:
        raise ValueError(f"shape mismatch: mu has {mu.shape[0]} entries for {C.m} constraint rows")
    if not all(np.all(np.isfinite(v)) for v in (y, z, mu)):          # max() below would drop a NaN
        inf = float("inf")
        return {"primal": inf, "dual": inf, "complementarity": inf, "stationarity": inf, "scale": inf,
                "max": inf}
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
    scale = 1.0 + float(np.max(np.abs(z)))
    mu_scale = 1.0 + float(np.max(np.abs(mu), initial=0.0))
    if C.m:
        r = C.gaps(y)
        dist = np.where(mu > 0, np.abs(r - C.eps), np.where(mu < 0, np.abs(r + C.eps), 0.0))
        complementarity = float(np.max(np.minimum(np.abs(mu) * (scale / mu_scale), dist)))
    else:
        complementarity = 0.0
    out = {
        "primal": primal,
        "dual": dual_box,
        "complementarity": complementarity,
        "stationarity": stationarity,
        "scale": scale,
    }
    out["max"] = max(primal, dual_box, stationarity, complementarity) / scale
    return out


# ------------------------------------------------------------------------------------ breakpoint search

def row_value_root(z: np.ndarray, a: np.ndarray, target: float, bounds, *, linear=(0.0, 0.0),
                   ends=(-np.inf, np.inf)) -> float:
    """The ``nu`` with ``a^T clip(z - nu a, lb, ub) + C - S nu = target`` (``phi`` nonincreasing), exactly.

    ``target`` must lie in the range of ``phi`` (guaranteed by the feasibility check of the rows).
    Only coordinates with ``a_i != 0`` matter. Without a box: ``nu = (a^T z + C - target) / (||a||^2 + S)``.
    ``linear = (C, S)`` and ``ends = (L, R)`` (default 0 and the whole line): the root is sought in [L, R]
    only, the row's other coordinates -- each in one state on all of (L, R) -- summed into ``C - S nu``
    (``layers._fused`` gathers the few coordinates with a breakpoint inside its bracket and solves them here).
    """
    s = a != 0
    zs, av = z[s], a[s]
    C, S = linear
    L, R = ends
    if bounds is None:
        return float((av @ zs + C - target) / (av @ av + S))
    lb, ub = bounds
    t_ub, t_lb = (zs - ub) / av, (zs - lb) / av
    nu_in, nu_out = np.minimum(t_ub, t_lb), np.maximum(t_ub, t_lb)  # coordinate i free on (nu_in, nu_out)
    hi_val = np.where(av > 0, ub, lb)   # y_i for nu -> -inf
    lo_val = np.where(av > 0, lb, ub)   # y_i for nu -> +inf
    events = np.clip(np.concatenate([nu_in, nu_out]), L, R)     # outside [L, R]: the same states on (L, R)
    d_alpha = np.concatenate([av * zs - av * hi_val, av * lo_val - av * zs])
    d_beta = np.concatenate([-av * av, av * av])
    order = np.argsort(events, kind="stable")
    ev = events[order]
    alpha = av @ hi_val + C + np.cumsum(d_alpha[order])
    beta = np.cumsum(d_beta[order]) - S
    phi = alpha + beta * ev                       # phi at each breakpoint (continuous)
    k = int(np.searchsorted(-phi, -target, side="left"))  # first breakpoint with phi <= target
    padded = np.concatenate([[L], ev, [R]])
    left, right = padded[k], padded[k + 1]        # the root's piece; k = 0 or len(ev): up to an end
    if np.isfinite(left) and np.isfinite(right):
        mid = 0.5 * (left + right)
    else:
        mid = right - 1.0 if np.isfinite(right) else left + 1.0
    free = (nu_in < mid) & (nu_out > mid)         # the segment's free set
    fixed_val = np.where(nu_in >= mid, hi_val, lo_val)
    den = av[free] @ av[free] + S
    if den == 0:                                  # phi constant on the piece (= target): its finite end
        return float(left if np.isfinite(left) else right)
    num = av[free] @ zs[free] + av[~free] @ fixed_val[~free] + C - target
    return float(np.clip(num / den, left, right))


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


# ------------------------------------------------------------------- coupled rows: augmented Lagrangian

ALM_OUTER = 30            # multiplier updates (each followed by a polish) before raising
ALM_INNER = 50            # Newton steps per augmented-Lagrangian subproblem
HALVINGS = 40             # Armijo backtracking steps per Newton step
ARMIJO = 1e-4
INNER_TOL = 1e-13         # subproblem gradient, relative to 1 + max|z| (only the active pattern is needed)
SIGMA0, SIGMA_GROWTH, SIGMA_MAX = 10.0, 10.0, 1e12  # penalty (unit-norm rows, so dimensionless)
THRESHOLDS = (1e-4, 1e-6, 1e-8, 1e-10, 1e-12, 1e-13, 1e-14)  # pattern thresholds, relative to 1 + max|z|
FINE_THRESHOLDS = (1e-12, 1e-13, 1e-14)           # re-read off a nearly certified exact pattern solution
ROUND_OFF = 1e-2          # a residual below ROUND_OFF * kkt_tolerance(b) ends the search at once


@dataclasses.dataclass(frozen=True)
class _Cells:
    """Cell form of the rows: ``A = W[:, cell]`` (each row is constant on the cells of the groups).

    cell: (b,) cell index of each coordinate; W: (m, q) the q distinct columns of A.
    """

    cell: np.ndarray
    W: np.ndarray

    @classmethod
    def of(cls, A: np.ndarray) -> _Cells:
        """Distinct columns of A via a random linear key (O(m b) plus one sort), checked exactly."""
        key = np.zeros(A.shape[1])
        for row, r in zip(A, np.random.default_rng(0).uniform(1.0, 2.0, A.shape[0]), strict=True):
            key += r * row                               # elementwise: equal columns give equal keys
        _, first, cell = np.unique(key, return_index=True, return_inverse=True)
        cells = cls(cell=cell.reshape(-1), W=A[:, first])
        if not np.array_equal(cells.W[:, cells.cell], A):  # a key collision (never seen): sort columns
            W, cell = np.unique(A.T, axis=0, return_inverse=True)
            cells = cls(cell=cell.reshape(-1), W=W.T)
        return cells

    def sums(self, x: np.ndarray) -> np.ndarray:
        """(q,) sums of x over each cell."""
        return np.bincount(self.cell, weights=x, minlength=self.W.shape[1])

    def counts(self, mask: np.ndarray) -> np.ndarray:
        """(q,) number of coordinates of each cell in mask."""
        return np.bincount(self.cell[mask], minlength=self.W.shape[1]).astype(np.float64)

    def extreme(self, x: np.ndarray, mask: np.ndarray, largest: bool) -> np.ndarray:
        """(q,) max (largest) or min of x over each cell's coordinates in mask; -inf / inf where none."""
        out = np.full(self.W.shape[1], -np.inf if largest else np.inf)
        for k in np.flatnonzero(self.counts(mask)):
            sel = x[mask & (self.cell == k)]
            out[k] = sel.max() if largest else sel.min()
        return out

    def spread(self, W: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(W^T x)[cell], shape (b,): A^T x for the rows W."""
        return (x @ W)[self.cell]


def _alm_iterates(z: np.ndarray, C: Constraints, cells: _Cells):
    """Augmented Lagrangian of the projection with every constraint dualised (rows scaled to unit norm):

        f(y) = 1/2 ||y - z||^2 + sigma/2 dist(A_n y + nu/sigma, [l, u])^2
               + sigma/2 dist(y + rho/sigma, box)^2.

    f is C^1, piecewise quadratic and 1-strongly convex; each subproblem is solved by semismooth Newton
    steps with Armijo backtracking. The generalised Hessian ``I + sigma D + sigma A_J^T A_J`` (D: coordinates
    outside the box, J: rows outside [l, u]) is inverted by Woodbury through the m x m matrix
    ``I / sigma + A_J D'^-1 A_J^T`` in cell form: dependent rows (pairwise cells, mr with several
    attributes) do not make it singular. Then ``nu = sigma dist-part``, ``rho`` likewise, sigma grows.
    Yields ``(y, nu, rho, newton_steps)`` (nu, rho half-scaled: ``y - z + A^T nu + rho ~ 0``) first for
    ``clip(z)`` and then after every multiplier update. Approximate: it only identifies the active pattern.
    """
    W, cell = cells.W, cells.cell
    norm = np.sqrt((W * W) @ cells.counts(np.ones(z.size, dtype=bool)))
    Wn, lo, hi = W / norm[:, None], C.lo / norm, C.hi / norm
    scale = 1.0 + float(np.max(np.abs(z)))
    y = _clip(z, C.bounds)
    nu, rho, sigma, steps = np.zeros(C.m), np.zeros(z.size), SIGMA0, 0

    def parts(y):
        v = Wn @ cells.sums(y) + nu / sigma
        t = y + rho / sigma
        return v - np.clip(v, lo, hi), t - _clip(t, C.bounds)

    def value(y):
        dv, dt = parts(y)
        return 0.5 * np.sum((y - z) ** 2) + 0.5 * sigma * (dv @ dv + dt @ dt)

    yield y, nu, rho, steps
    for _outer in range(ALM_OUTER):
        for _inner in range(ALM_INNER):
            dv, dt = parts(y)
            grad = (y - z) + sigma * (dv @ Wn)[cell] + sigma * dt
            if np.max(np.abs(grad)) <= INNER_TOL * scale:
                break
            d_inv = 1.0 / (1.0 + sigma * (dt != 0))
            WJ = Wn[dv != 0]
            g = -grad * d_inv
            S = (WJ * cells.sums(d_inv)) @ WJ.T + np.eye(WJ.shape[0]) / sigma
            step = g - d_inv * cells.spread(WJ, np.linalg.solve(S, WJ @ cells.sums(g)))
            f0, slope, alpha = value(y), float(grad @ step), 1.0
            for _ in range(HALVINGS):
                trial = y + alpha * step
                if value(trial) <= f0 + ARMIJO * alpha * slope + 1e-15 * abs(f0):
                    break
                alpha *= 0.5
            else:
                break                                    # no decrease left: solved to round-off
            y, steps = trial, steps + 1
            dv_new, dt_new = parts(y)
            if alpha == 1.0 and np.array_equal(dv_new != 0, dv != 0) and np.array_equal(dt_new != 0, dt != 0):
                break                                    # full step on the same piece: exact minimiser
            if alpha * np.max(np.abs(step)) <= INNER_TOL * scale:
                break                                    # steps at round-off level (large b, large sigma)
        dv, dt = parts(y)
        nu, rho = sigma * dv, sigma * dt
        sigma = min(sigma * SIGMA_GROWTH, SIGMA_MAX)
        yield y, nu / norm, rho, steps


def _pattern_from(y, nu, rho, C: Constraints, cells: _Cells, delta: float):
    """Active pattern read off an approximate (y, nu, rho): every constraint within delta of its side,
    weakly active ones included (the projection onto their affine set is still y*). When both sides of
    a row (eps < delta) or of the box are within delta, the multiplier's sign picks the side (sign 0:
    the row is left out, the coordinate free)."""
    r = cells.W @ cells.sums(y) - C.center
    if C.eps == 0:
        upper, lower = np.abs(r) <= delta, np.zeros(C.m, dtype=bool)
    else:
        near_up, near_lo = r >= C.eps - delta, r <= -C.eps + delta
        both = near_up & near_lo
        upper, lower = near_up & ~(both & (nu <= 0)), near_lo & ~(both & (nu >= 0))
    if C.bounds is None:
        return upper, lower, np.zeros(y.size, dtype=bool), np.zeros(y.size, dtype=bool)
    lb, ub = C.bounds
    near_ub, near_lb = y >= ub - delta, y <= lb + delta
    both = near_ub & near_lb
    return upper, lower, near_ub & ~(both & (rho <= 0)), near_lb & ~(both & (rho >= 0))


def _solve_pattern(z: np.ndarray, C: Constraints, cells: _Cells, pattern):
    """Exact solution for a given active pattern (upper rows, lower rows, coordinates at ub / lb).

    Given the pattern the projection is onto an affine set: ``y_F = z_F - A_TF^T nu`` with
    ``(A_TF A_TF^T) nu = A_TF z_F + A_TX y_X - c_T - side_T`` solved by least squares (consistent, possibly
    rank-deficient: y is unique even when nu is not; the Gram matrix is ``W_T diag(n_F) W_T^T`` in cell
    form); then sign-correct multipliers (:func:`_signed_multipliers`). Returns (nu, y), nu half-scaled.
    """
    upper, lower, at_ub, at_lb = pattern
    T = upper | lower
    free = ~(at_ub | at_lb)
    y = z.copy()
    if C.bounds is not None:
        y = np.where(at_ub, C.bounds[1], np.where(at_lb, C.bounds[0], y))
    nu = np.zeros(C.m)
    if T.any():
        WT = cells.W[T]
        side = np.where(upper[T], C.eps, -C.eps)
        rhs = C.A[T] @ y - C.center[T] - side
        nu_T = np.linalg.lstsq((WT * cells.counts(free)) @ WT.T, rhs, rcond=None)[0]
        y[free] = z[free] - cells.spread(WT, nu_T)[free]
        nu[T] = _signed_multipliers(cells, WT, nu_T, z - y, free, y, C, upper[T], lower[T])
    return nu, y


def _signed_multipliers(cells: _Cells, WT, nu_T, resid, free, y, C: Constraints, upper, lower) -> np.ndarray:
    """Multipliers nu_T (half-scaled) with the KKT signs: the pattern solve's own ``nu_T`` when its signs
    are right, else bounded least squares (BVLS) with its free variables re-solved by least squares
    (BVLS stops at its own tolerance); whichever leaves the smaller residual.

    Stationarity (half-scaled) is ``A_T^T nu + rho = z - y`` with rho = 0 on free coordinates,
    rho >= 0 at ub and rho <= 0 at lb, nu >= 0 on upper-active rows and <= 0 on lower-active rows.
    Coordinates of the same cell give the same row of this system, so it is aggregated per cell: free
    coordinates give one equation (right-hand side the shift ``(W_T^T nu_T)_q`` that made their y, exactly;
    a float sum over the cell would carry ~sqrt(n) u of round-off into multipliers of size ~n), and of
    the clamped ones only the tightest (smallest z - ub, largest z - lb) matters, each with a
    sign-bounded slack.
    """
    from scipy.optimize import lsq_linear

    n_free = cells.counts(free)
    has = n_free > 0
    equations = [(WT[:, has].T, (nu_T @ WT)[has], 0)]   # = z_i - y_i on the cell's free coordinates
    if C.bounds is not None:
        lb, ub = C.bounds
        for at, sign in ((~free & (y == ub), 1), (~free & (y == lb), -1)):
            tight = cells.extreme(resid, at, largest=sign < 0)
            has = np.isfinite(tight)
            equations.append((WT[:, has].T, tight[has], sign))
    M = np.vstack([e[0] for e in equations])
    target = np.concatenate([e[1] for e in equations])
    signs = np.concatenate([np.full(e[1].size, e[2]) for e in equations])
    slack = signs != 0
    S = np.eye(target.size)[:, slack]
    nT = WT.shape[0]
    if C.eps == 0:
        lo_nu, hi_nu = np.full(nT, -np.inf), np.full(nT, np.inf)
    else:
        lo_nu = np.where(upper, 0.0, -np.inf)
        hi_nu = np.where(lower & ~upper, 0.0, np.inf)
    lo_s = np.where(signs[slack] > 0, 0.0, -np.inf)
    hi_s = np.where(signs[slack] > 0, np.inf, 0.0)
    K = np.hstack([M, S])
    lo, hi = np.concatenate([lo_nu, lo_s]), np.concatenate([hi_nu, hi_s])

    def fitted(x):                                       # sign-correct x and its residual
        x = np.clip(x, lo, hi)
        return float(np.max(np.abs(K @ x - target))), x

    own = fitted(np.concatenate([nu_T, target[slack] - M[slack] @ nu_T]))
    if np.all((lo_nu <= nu_T) & (nu_T <= hi_nu)) and own[0] <= 1e-14 * (1.0 + np.max(np.abs(target))):
        return nu_T
    col = np.linalg.norm(K, axis=0)                     # unit columns: entries of W are ~1/n,
    col[col == 0] = 1.0                                  # multipliers ~n (b = 1e6: 1e5)
    x = lsq_linear(K / col, target, bounds=(lo, hi), method="bvls", tol=1e-15).x / col
    inner = (x > lo) & (x < hi)                          # re-solve BVLS's free variables exactly
    x_re = x.copy()
    if inner.any():
        x_re[inner] = np.linalg.lstsq(K[:, inner], target - K[:, ~inner] @ x[~inner], rcond=None)[0]
    return min(own, fitted(x), fitted(x_re), key=lambda t: t[0])[1][:nT]


def _coupled(z: np.ndarray, C: Constraints) -> tuple[np.ndarray, np.ndarray, int]:
    """Coupled rows: augmented Lagrangian to find the active pattern, exact pattern solve, KKT certificate.

    After each multiplier update of :func:`_alm_iterates` the pattern is read at the thresholds
    ``THRESHOLDS`` (relative to 1 + max|z|) and solved exactly (:func:`_solve_pattern`); when the best
    exact solution so far is within 1e3 of the tolerance, patterns are also re-read off it (and its
    multipliers) at ``FINE_THRESHOLDS``: it is exact on its pattern, so finer than the ALM iterate. A
    solution whose relative KKT residual is at round-off level (<= ``ROUND_OFF * kkt_tolerance(b)``) is
    returned at once; otherwise the best one with a residual <= ``kkt_tolerance(b)`` after the last update
    (a near-degenerate instance, e.g. eps ~ 1e-11: the two sides of a row closer than the approximate
    phase resolves). Anything else raises. Returns (nu half-scaled, y, Newton steps).
    """
    cells = _Cells.of(C.A)
    tol = kkt_tolerance(z.size)
    scale = 1.0 + float(np.max(np.abs(z)))
    tried, best = set(), (np.inf, None, None)

    def polish(y_a, nu_a, rho_a, thresholds):
        """Exact solutions of the patterns read at the thresholds; the certified-to-round-off one or None."""
        nonlocal best
        for rel in thresholds:
            pattern = _pattern_from(y_a, nu_a, rho_a, C, cells, rel * scale)
            key = b"".join(np.packbits(p).tobytes() for p in pattern)
            if key in tried:
                continue
            tried.add(key)
            nu, y = _solve_pattern(z, C, cells, pattern)
            res = kkt_residuals(y, z, C, 2.0 * nu)["max"]
            if res <= ROUND_OFF * tol:                 # the exact pattern: no better candidate exists
                return nu, y
            best = min(best, (res, nu, y), key=lambda t: t[0])
        return None

    for y_a, nu_a, rho_a, steps in _alm_iterates(z, C, cells):
        r = np.abs(cells.W @ cells.sums(y_a) - C.center) - C.eps
        if steps and max(float(np.max(r)), float(np.max(np.abs(y_a - _clip(y_a, C.bounds))))) > 1e-4 * scale:
            continue                               # an ALM iterate still far from C: skip its patterns
        found = polish(_clip(y_a, C.bounds), nu_a, rho_a, THRESHOLDS)
        if found is None and best[0] <= 1e3 * tol:     # re-read finer off the best exact solution so far:
            nu_b, y_b = best[1], best[2]               # exact on its pattern, more accurate than y_a
            found = polish(y_b, nu_b, z - y_b - C.A.T @ nu_b, FINE_THRESHOLDS)
        if found is not None:
            return found[0], found[1], steps
    if best[0] <= tol:                             # certified, not to round-off: a near-degenerate pattern
        return best[1], best[2], steps
    raise ConvergenceError(f"coupled solver: no active pattern certified to relative KKT residual "
                           f"{tol:g} after {ALM_OUTER} augmented-Lagrangian steps (best {best[0]:.3g}, "
                           f"m={C.m}, b={z.size})")


# --------------------------------------------------------------------------------------------- public API

def solve(z, groups, *, metric: str, eps, bounds=None, targets=None,
          empty: str = "raise") -> ProjectionResult:
    """Exact projection of z (b,) onto the fairness set of ``metric``; see the module docstring.

    groups: (b,) or (b, k) 0/1 labels; targets: (b,) needed for "mr" and "eo" (ignored by the dp metrics);
    bounds: (lb, ub) or None.
    Returns a :class:`ProjectionResult` with the projection, the row multipliers and KKT residuals.
    Raises ValueError on bad input and ConvergenceError if the final KKT residual exceeds 10 kkt_tolerance(b)
    (the coupled solver already certified <= kkt_tolerance(b); the separable paths have only round-off, so
    this net, 10x above it, catches a wrong answer, not round-off).
    """
    z = as_float_vector(z)
    C = build_constraints(groups, metric, eps=eps, b=z.size, targets=targets, bounds=bounds, empty=empty)
    iters = 0
    if C.m == 0:
        nu, y, method = np.zeros(0), _clip(z.copy(), C.bounds), "closed-form"
    elif C.separable():
        nu, method = _separable_nu(z, C), ("closed-form" if C.bounds is None else "breakpoint")
        y = _clip(z - C.A.T @ nu, C.bounds)
    else:
        nu, y, iters = _coupled(z, C)
        method = "alm-pattern"
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
    Several rows: ``t* = 0`` iff ``lam >= -V'(0+)`` = the least ``sum |mu|`` over the multipliers of the
    eps = 0 projection (a set, not a point, when coordinates sit on the box: :func:`_level_multipliers`);
    else ``t*`` by bracketed secant on the piecewise-linear ``sum |mu(t)|`` (exact once two iterates share
    a linear piece), each evaluation an exact projection; when it closes on a jump of ``sum |mu(t)|`` (t* at
    a kink of V, e.g. t* = G(clip(z))), multipliers with ``sum |mu| = lam`` are picked from the set at t*.
    Empty groups drop their rows.
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

    r0 = solve(z, groups, metric=metric, eps=0.0, bounds=bounds, targets=targets, empty=empty)
    mu0 = _level_multipliers(z, r0.y, r0.constraints)
    mu0 = r0.mu if mu0 is None or np.abs(mu0).sum() >= np.abs(r0.mu).sum() else mu0
    h0 = float(np.abs(mu0).sum()) - lam
    if h0 <= 0:
        return PenalizedResult(y=r0.y, gap=float(np.max(np.abs(C.gaps(r0.y)))), mu=mu0, constraints=C)
    t_hi = float(np.max(np.abs(C.gaps(_clip(z, bounds)))))
    # sum |mu(t_hi)| = 0, so excess(t_hi) = -lam
    f_tol = KKT_TOL * max(lam, 1.0)
    _, h, res, _ = illinois_root(excess, 0.0, h0, t_hi, -lam, f_tol=f_tol, x_tol_abs=1e-15 * max(t_hi, 1.0),
                                 what="penalized step (max-gap level)")
    gap = float(np.max(np.abs(C.gaps(res.y))))
    mu = res.mu * (lam / max(np.abs(res.mu).sum(), 1e-300))
    if abs(h) > f_tol:                   # t* at a kink of V (e.g. t* = t_hi, y = clip(z)): pick from the set
        at_level = _level_multipliers(z, res.y, dataclasses.replace(C, eps=gap), total=lam)
        mu = mu if at_level is None else at_level
    return PenalizedResult(y=res.y, gap=gap, mu=mu, constraints=C)


def _level_multipliers(z: np.ndarray, y: np.ndarray, C: Constraints, total: float | None = None):
    """Multipliers (CLAIMS convention) of y as the projection of z onto C, chosen from their set: the least
    ``sum |mu|`` (``total`` None), or one with ``sum |mu| = total``; None if none is KKT-certified.

    The set is a point only without degeneracy; with coordinates on the box it is a polyhedron. Rows at a
    side of C may carry a multiplier of that side's sign (both signs at eps = 0), other rows none.
    Stationarity ``A^T nu + rho = z - y`` (half-scaled) in cell form: a cell with free coordinates fixes
    ``W_q^T nu``; one clamped at ub (lb) only bounds it from above (below) by its tightest ``z_i - ub``
    (``z_i - lb``). With ``nu = p - n`` (p, n >= 0) this is a linear program (HiGHS); its support is then
    re-solved by least squares on the tight equations and the answer certified by :func:`kkt_residuals`.
    """
    from scipy.optimize import linprog

    cells = _Cells.of(C.A)
    W, m = cells.W, C.m
    resid = z - y
    scale = 1.0 + float(np.max(np.abs(z)))
    r = C.gaps(y)
    near = 1e-14 * scale                               # a row at a side, to the round-off of A y
    pos = (np.abs(r - C.eps) <= near) | (C.eps == 0)
    neg = (np.abs(r + C.eps) <= near) | (C.eps == 0)
    clamped = np.zeros(z.size, dtype=bool) if C.bounds is None else (y == C.bounds[0]) | (y == C.bounds[1])
    has_free = cells.counts(~clamped) > 0
    shift = np.zeros(W.shape[1])
    shift[cells.cell[~clamped]] = resid[~clamped]     # z_i - y_i is the cell's shift on free coordinates
    rows_le, rhs_le = [], []                          # W_q^T nu <= rhs (ub), -W_q^T nu <= -rhs (lb)
    if C.bounds is not None:
        for at, sign in ((y == C.bounds[1], 1.0), (y == C.bounds[0], -1.0)):
            tight = cells.extreme(resid, at, largest=sign < 0)
            keep = np.isfinite(tight) & ~has_free
            rows_le += list(sign * W[:, keep].T)
            rhs_le += list(sign * tight[keep])
    rows_le, rhs_le = np.array(rows_le).reshape(-1, m), np.array(rhs_le)
    col = np.linalg.norm(W, axis=1)                   # nu = x / col: unit columns (W ~ 1/n, nu ~ n)
    split = lambda M: np.hstack([M / col, -M / col])  # noqa: E731  (acts on x = [p, n])
    A_eq, b_eq = split(W[:, has_free].T), shift[has_free]
    if total is not None:
        A_eq = np.vstack([A_eq, np.concatenate([1.0 / col, 1.0 / col])])
        b_eq = np.append(b_eq, total / 2.0)
    bounds = [(0, None if ok else 0) for ok in np.concatenate([pos, neg])]
    lp = linprog(np.concatenate([1.0 / col, 1.0 / col]), A_ub=split(rows_le), b_ub=rhs_le, A_eq=A_eq,
                 b_eq=b_eq, bounds=bounds, method="highs")
    if lp.status != 0:
        return None
    nu = (lp.x[:m] - lp.x[m:]) / col
    support = np.abs(nu * col) > 1e-9 * max(1.0, float(np.max(np.abs(nu * col))))
    if support.any():                                 # exact on the LP's support and tight rows
        tight = rhs_le - rows_le @ nu <= 1e-9 * (1.0 + np.abs(rhs_le))
        M = np.vstack([W[:, has_free].T, rows_le[tight]])[:, support]
        rhs = np.concatenate([shift[has_free], rhs_le[tight]])
        if total is not None:
            M = np.vstack([M, np.sign(nu[support])])
            rhs = np.append(rhs, total / 2.0)
        nu_s = np.zeros(m)
        nu_s[support] = np.linalg.lstsq(M, rhs, rcond=None)[0]
        nu = nu_s
    if kkt_residuals(y, z, C, 2.0 * nu)["max"] > kkt_tolerance(z.size):
        return None
    return 2.0 * nu


def penalized_step(z, groups, *, lam, bounds, metric: str = "dp", targets=None,
                   empty: str = "drop") -> np.ndarray:
    """Output y (b,) of :func:`solve_penalized` (step 1 of Algorithm 1, exact)."""
    return solve_penalized(z, groups, lam=lam, bounds=bounds, metric=metric, targets=targets, empty=empty).y
