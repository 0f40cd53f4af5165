"""cvxpy mirror of the authors' convex programs: a second, independent reference.

The authors (``fairness_training`` 0.1.0 ``FairModel``, FairDL-ICML-2026 experiment code) build their
layer as a cvxpy problem from 0/1 selection masks of the group labels:

    min_y  ||y - z||^2   s.t.  mean_P(y) - mean_M(y) - c <= eps,  -(mean_P(y) - mean_M(y) - c) <= eps
                               (one pair per fairness row),  lb <= y <= ub  (when a box is given),

and their primal-dual step (Algorithm 1, the penalised layer) as

    min_{y, t >= 0}  ||y - z||^2 + lam * t   s.t.  -t <= gap_j(y) <= t  for every row j,  lb <= y <= ub,

(``gap="sum"``: one t_j per row and ``lam * sum_j t_j``, the FairFace variant). This module writes the
same programs, building every row straight from the group labels (it does not call
``reference.constraints.build_constraints``; it only reuses its input validators), so that it can be
compared row for row with the exact solvers of ``reference.projection``. Row order is the one of
``build_constraints`` (for ``eo``: class outer, attribute inner; the authors loop attribute outer,
class inner, which coincides for one attribute).

Multiplier convention (CLAIMS.md): mu_k = dual(upper_k) - dual(lower_k), so that
2(y - z) + A^T mu + (box multipliers) = 0 and mu_k > 0 when the upper side c_k + eps is active.

Accuracy of the presets :data:`TIGHT`. Error = max_i |y_i - y*_i| / max(1, ||z||_inf) against the
exact projection of ``reference.projection``. Measured worst cases (every metric, 1-3 attributes,
eps in {0, 0.01, 0.05}, with and without box [-1, 1], z of scale 0.3-5 plus a group offset):
(a) 120 instances with b in 6..64, (b) 46 instances with b = 1024 (16 + 30, two offset scales):

=========  ==========  ==========  ===========================================================
solver     (a) b<=64   (b) b=1024  documented ACCURACY (small instances, b <= 64)
=========  ==========  ==========  ===========================================================
CLARABEL   7.7e-10     1.2e-6      1e-7
OSQP       2.8e-9      4.3e-10     1e-7
SCS        7.1e-8      8.4e-9      1e-6
ECOS       2.9e-5      4.5e-5      1e-3 (and optimal_inaccurate on 3 % (a) / 20 % (b) of instances)
=========  ==========  ==========  ===========================================================

* CLARABEL (interior point; gap abs/rel and feasibility 1e-12). Its stopping test accepts a gap of
  1e-12 |f*|, and |f*| grows like b max|z|^2 (up to 2e4 at b = 1024). The barrier then keeps a *free*
  coordinate lying a distance d inside a bound off its true value by ~ mu / d: coordinates within 1e-4
  of a bound are the ones that err at b = 1024 (measured). A priori only ||y - y*||^2 <= gap holds
  (strong convexity of ||y - z||^2, modulus 2): sqrt(1e-12 |f*|) ~ 1e-4 at b = 1024. Tightening
  tol_gap_rel to 1e-15 reaches ~1e-10 but ends optimal_inaccurate on some b = 1024 instances, so it
  is not the preset. **At large b, use OSQP-tight (or the exact solver) as the reference, not Clarabel.**
* OSQP (ADMM to 1e-9, then polishing = an equality-constrained solve on the identified active set,
  exact to round-off when it succeeds). 1e-7 is the ADMM accuracy if polishing fails.
* SCS (ADMM to 1e-8, no polishing).
* ECOS (interior point on the second-order-cone form of the square; gap/feasibility 1e-9): the error
  follows the strong-convexity bound sqrt(1e-9 |f*|) since the quadratic term is a cone variable.
  The least suitable solver for this problem.
* SCS at cvxpy's defaults (eps 1e-5) and the authors' setting :data:`PAPER` (eps 1e-8, max_iters
  10000, no acceleration) are not presets; tests/test_cvx.py records their error at b = 1024.

KKT residuals (``reference.kkt_residuals``, relative, see :func:`_kkt` for near-active box
coordinates) of CLARABEL-tight: <= 7.2e-10 on (a), up to 2.0e-6 on (b) for the reason above; OSQP-tight
<= 1.3e-9 / 7.3e-10; SCS-tight <= 2.1e-8 / 1.2e-8.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from reference.constraints import (
    as_float_vector,
    build_constraints,
    check_bounds,
    check_eps,
    check_groups,
    check_metric,
)

try:  # cvxpy is an optional dependency of the package (extra "cvxpy")
    import cvxpy as cp
except ImportError:  # pragma: no cover - exercised only without the extra
    cp = None

SOLVERS = ("CLARABEL", "SCS", "OSQP", "ECOS")

# Tight-tolerance settings (the most each solver reaches reliably on b <= 1024; tighter ones end in
# optimal_inaccurate or a solver failure on some instances, measured):
# Clarabel: duality gap (abs, rel) and primal/dual residuals <= 1e-12 (defaults 1e-8); 1e-14 fails
#   on some b = 1024 instances. SCS: eps_abs = eps_rel = 1e-8 (1e-9 takes ~50x longer at b = 1024 and
#   sometimes fails). OSQP: eps 1e-9 then polishing (1e-10 reported a b = 1024 instance infeasible).
# ECOS: gap and feasibility 1e-9 (1e-10 ends optimal_inaccurate on ~30 % of small instances).
TIGHT: dict[str, dict] = {
    "CLARABEL": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10,
                 "max_iter": 500},
    "SCS": {"eps_abs": 1e-8, "eps_rel": 1e-8, "max_iters": 200_000},
    "OSQP": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iter": 200_000, "polishing": True},
    "ECOS": {"abstol": 1e-9, "reltol": 1e-9, "feastol": 1e-9, "max_iters": 500},
}

# The authors' own solver call (FairDL fairface_experiment/fair_model.py, plain-cvxpy path):
# problem.solve(solver=cp.SCS, eps=1e-8, max_iters=10000, acceleration_lookback=0).
# (cvxpy turns SCS's ``eps`` into eps_abs = eps_rel; written out here because ``eps`` is our tolerance.)
PAPER: dict[str, dict] = {"SCS": {"eps_abs": 1e-8, "eps_rel": 1e-8, "max_iters": 10_000,
                                  "acceleration_lookback": 0}}

# Documented accuracy of each TIGHT preset on small instances (b <= 64): max_i |y_i - y*_i| /
# max(1, ||z||_inf), y* the exact projection; measured worst cases (also at b = 1024, where CLARABEL
# degrades to ~1e-6) and the reasoning are in the module docstring.
ACCURACY: dict[str, float] = {"CLARABEL": 1e-7, "OSQP": 1e-7, "SCS": 1e-6, "ECOS": 1e-3}


class SolverError(RuntimeError):
    """The solver did not return an optimal solution (status named in the message)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One fairness row  gap(y) = mean_plus(y) - mean_minus(y) - center  (minus may be None).

    plus, minus: boolean masks (b,); center: float; name: the label used by build_constraints.
    """

    name: str
    plus: np.ndarray
    minus: np.ndarray | None
    center: float

    def coefficients(self) -> np.ndarray:
        """The row a (b,) with a^T y = mean_plus(y) - mean_minus(y)."""
        a = self.plus / self.plus.sum()
        if self.minus is not None:
            a = a - self.minus / self.minus.sum()
        return a

    def expression(self, y):
        """gap(y) as a cvxpy expression, written as the authors do: (mask @ y) / n."""
        e = (self.plus.astype(np.float64) @ y) / float(self.plus.sum())
        if self.minus is not None:
            e = e - (self.minus.astype(np.float64) @ y) / float(self.minus.sum())
        return e - self.center


@dataclasses.dataclass
class CvxResult:
    """Solution of one cvxpy solve.

    y: (b,) solution; mu: (m,) signed multipliers of the fairness rows (CLAIMS convention) for the
    projection, or of the rows |gap_j| <= t for the penalised step; status, solver: as cvxpy reports;
    solve_time: wall seconds of ``problem.solve`` (compilation included); kkt: the dict of
    ``reference.kkt_residuals`` (projection only, None for the penalised step); rows: row names;
    objective: optimal value; iters: solver iterations (None when not reported); t: the auxiliary
    gap variable(s) of the penalised step (None for the projection).
    """

    y: np.ndarray
    mu: np.ndarray
    status: str
    solver: str
    solve_time: float
    kkt: dict | None
    rows: tuple[str, ...]
    objective: float
    iters: int | None = None
    t: np.ndarray | None = None


def _need_cvxpy() -> None:
    if cp is None:  # pragma: no cover
        raise ImportError("reference.cvx needs cvxpy (pip install 'fairverify[cvxpy]')")


def fairness_rows(groups, metric: str, *, b: int, targets=None, empty: str = "raise") -> list[Row]:
    """The fairness rows of ``metric`` built directly from the 0/1 labels ``groups`` (b,) or (b, k).

    dp: one row per attribute j, mean over A_j=0 minus mean over A_j=1. dp_pairwise: cells = distinct
    rows of groups (lexicographic order), one row per pair of cells g < h. mr: per attribute j and
    a in {0, 1}, mean over A_j=a with center mean of the targets there. eo: per class c in {0, 1}
    (targets > 0.5), then per attribute j, mean over {A_j=0, Y=c} minus mean over {A_j=1, Y=c}.
    A row with an empty group raises ValueError (empty="raise") or is dropped (empty="drop").
    """
    metric = check_metric(metric)
    g = check_groups(groups, b)
    if empty not in ("raise", "drop"):
        raise ValueError(f"empty must be 'raise' or 'drop', got {empty!r}")
    if metric in ("mr", "eo"):
        if targets is None:
            raise ValueError(f"metric {metric!r} needs targets (y_true), got None")
        targets = as_float_vector(targets, "targets")
        if targets.shape[0] != b:
            raise ValueError(f"shape mismatch: targets has shape {targets.shape}, expected ({b},)")

    def present(mask: np.ndarray, what: str) -> bool:
        if mask.any():
            return True
        if empty == "raise":
            raise ValueError(f"empty group: {what} has no sample in this batch "
                             "(pass empty='drop' to drop its constraint)")
        return False

    rows: list[Row] = []
    k = g.shape[1]
    if metric == "dp":
        for j in range(k):
            s0, s1 = g[:, j] == 0, g[:, j] == 1
            if present(s0, f"attribute {j} group 0") and present(s1, f"attribute {j} group 1"):
                rows.append(Row(f"dp[a{j}]", s0, s1, 0.0))
    elif metric == "dp_pairwise":
        cells = sorted({tuple(r) for r in g.tolist()})
        if len(cells) < 2 and empty == "raise":
            raise ValueError("empty group: dp_pairwise needs at least two non-empty cells, "
                             f"the batch has {len(cells)}")
        masks = [np.all(g == np.array(c), axis=1) for c in cells]
        for p, q in itertools.combinations(range(len(cells)), 2):
            name = f"dp[{''.join(map(str, cells[p]))}-{''.join(map(str, cells[q]))}]"
            rows.append(Row(name, masks[p], masks[q], 0.0))
    elif metric == "mr":
        for j in range(k):      # an attribute with an empty group is dropped whole, as the authors do
            masks = [g[:, j] == a for a in (0, 1)]
            if present(masks[0], f"attribute {j} group 0") & present(masks[1], f"attribute {j} group 1"):
                for a, s in enumerate(masks):
                    rows.append(Row(f"mr[a{j}={a}]", s, None, float(targets[s].mean())))
    else:  # eo
        label = targets > 0.5
        for c in (0, 1):
            for j in range(k):
                s0 = (g[:, j] == 0) & (label == c)
                s1 = (g[:, j] == 1) & (label == c)
                if present(s0, f"attribute {j} group 0 in class y={c}") and \
                        present(s1, f"attribute {j} group 1 in class y={c}"):
                    rows.append(Row(f"eo[a{j},y={c}]", s0, s1, 0.0))
    return rows


def _box(y, bounds) -> list:
    if bounds is None:
        return []
    lb, ub = bounds
    return [y >= lb, y <= ub]


def _projection(z, groups, *, metric, eps, bounds, targets, empty):
    z = as_float_vector(z)
    eps = check_eps(eps)
    bounds = check_bounds(bounds)
    rows = fairness_rows(groups, metric, b=z.shape[0], targets=targets, empty=empty)
    y = cp.Variable(z.shape[0], name="y")
    fairness = []
    for r in rows:
        gap = r.expression(y)
        fairness += [gap <= eps, -gap <= eps]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - z)), fairness + _box(y, bounds))
    return problem, y, fairness, tuple(r.name for r in rows)


def projection_problem(z, groups, *, metric: str, eps, bounds=None, targets=None, empty: str = "raise"):
    """The layer as the authors write it: min ||y - z||^2 s.t. |gap_k(y)| <= eps, lb <= y <= ub.

    Returns (problem, y, fairness) with ``fairness`` the flat list [upper_0, lower_0, upper_1, ...]:
    upper_k is gap_k(y) <= eps, lower_k is -gap_k(y) <= eps (row order of build_constraints).
    """
    _need_cvxpy()
    problem, y, fairness, _ = _projection(z, groups, metric=metric, eps=eps, bounds=bounds,
                                          targets=targets, empty=empty)
    return problem, y, fairness


def _penalized(z, groups, *, lam, bounds, metric, targets, empty, gap):
    z = as_float_vector(z)
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    if gap not in ("max", "sum"):
        raise ValueError(f"gap must be 'max' or 'sum', got {gap!r}")
    bounds = check_bounds(bounds)
    rows = fairness_rows(groups, metric, b=z.shape[0], targets=targets, empty=empty)
    y = cp.Variable(z.shape[0], name="y")
    t = cp.Variable(1 if gap == "max" else max(len(rows), 1), nonneg=True, name="t")
    fairness = []
    for j, r in enumerate(rows):
        tj = t[0] if gap == "max" else t[j]
        e = r.expression(y)
        fairness += [e <= tj, -e <= tj]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - z) + lam * cp.sum(t)), fairness + _box(y, bounds))
    return problem, y, t, fairness, tuple(r.name for r in rows)


def penalized_problem(z, groups, *, lam, bounds, metric: str = "dp", targets=None, empty: str = "drop",
                      gap: str = "max"):
    """The primal-dual step of Algorithm 1 as the authors write it.

    gap="max": min_{y, t >= 0} ||y - z||^2 + lam * t  s.t. -t <= gap_j(y) <= t for every row j,
    i.e. lam * max_j |gap_j(y)|; gap="sum": one t_j >= 0 per row, lam * sum_j t_j (FairFace code).
    ``lam`` is the whole coefficient of the penalty (the authors pass lambda_t * b_t).
    Returns (problem, y, t, fairness) with fairness = [upper_0, lower_0, ...]: gap_j(y) <= t_j,
    -gap_j(y) <= t_j.
    """
    _need_cvxpy()
    problem, y, t, fairness, _ = _penalized(z, groups, lam=lam, bounds=bounds, metric=metric,
                                            targets=targets, empty=empty, gap=gap)
    return problem, y, t, fairness


def _solve(problem, solver: str, allow_inaccurate: bool, solver_opts: dict) -> float:
    """Run ``problem.solve``; raise SolverError unless the status is optimal. Returns wall seconds."""
    solver = solver.upper()
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    start = time.perf_counter()
    try:
        problem.solve(solver=solver, **solver_opts)
    except cp.error.SolverError as exc:
        raise SolverError(f"{solver} failed: {exc}") from exc
    elapsed = time.perf_counter() - start
    ok = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) if allow_inaccurate else (cp.OPTIMAL,)
    if problem.status not in ok:
        raise SolverError(f"{solver} returned status {problem.status!r}"
                          + (" (pass allow_inaccurate=True to accept it)"
                             if problem.status == cp.OPTIMAL_INACCURATE else ""))
    return elapsed


def _signed(fairness) -> np.ndarray:
    """mu_k = dual(upper_k) - dual(lower_k) from the flat list [upper_0, lower_0, ...]."""
    duals = np.array([float(np.asarray(c.dual_value).reshape(-1)[0]) for c in fairness])
    return duals[0::2] - duals[1::2] if duals.size else np.zeros(0)


def _iters(problem) -> int | None:
    it = problem.solver_stats.num_iters if problem.solver_stats is not None else None
    return None if it is None else int(it)


def _kkt(y: np.ndarray, z: np.ndarray, constraints, mu: np.ndarray) -> dict:
    """reference.kkt_residuals at (y with near-active box coordinates put on their bound, mu).

    Iterative solvers approach an active bound without landing on it (an interior-point iterate stays
    strictly inside), while kkt_residuals recognises an active bound only to ~1e-14 and would report
    the whole box multiplier rho_i = -2(y_i - z_i) - (A^T mu)_i of such a coordinate as stationarity
    residual. Coordinate i is put on its bound when rho_i pushes towards that bound and the distance
    is below |rho_i| / 2, the primal move that the residual |rho_i| stands for (no threshold to tune).
    The largest move is returned as "snap" and counted in "max" (relative to the same scale).
    """
    from reference.projection import kkt_residuals

    y_kkt = y
    if constraints.bounds is not None:
        lb, ub = constraints.bounds
        rho = -2.0 * (y - z) - (constraints.A.T @ mu if constraints.m else 0.0)
        to_ub = (rho > 0) & (np.abs(ub - y) <= rho / 2)
        to_lb = (rho < 0) & (np.abs(y - lb) <= -rho / 2)
        y_kkt = np.where(to_ub, ub, np.where(to_lb, lb, y))
    out = kkt_residuals(y_kkt, z, constraints, mu)
    out["snap"] = float(np.max(np.abs(y_kkt - y)))
    out["max"] = max(out["max"], out["snap"] / out["scale"])
    return out


def solve_projection(z, groups, *, metric: str, eps, bounds=None, targets=None, empty: str = "raise",
                     solver: str = "CLARABEL", allow_inaccurate: bool = False, **solver_opts) -> CvxResult:
    """Solve :func:`projection_problem` with ``solver`` (options passed through, e.g. ``**TIGHT[s]``).

    Raises SolverError when the status is not optimal (optimal_inaccurate too, unless
    allow_inaccurate=True), ValueError on bad input. The KKT residuals are those of
    ``reference.kkt_residuals`` at (y, mu).
    """
    _need_cvxpy()
    problem, y, fairness, rows = _projection(z, groups, metric=metric, eps=eps, bounds=bounds,
                                             targets=targets, empty=empty)
    elapsed = _solve(problem, solver, allow_inaccurate, solver_opts)
    z = as_float_vector(z)
    yv = np.asarray(y.value, dtype=np.float64)
    mu = _signed(fairness)
    constraints = build_constraints(groups, metric, eps=eps, b=z.shape[0], targets=targets, bounds=bounds,
                                    empty=empty)
    if constraints.names != rows:
        raise RuntimeError(f"row order differs from build_constraints: {rows} vs {constraints.names}")
    return CvxResult(y=yv, mu=mu, status=problem.status, solver=solver.upper(), solve_time=elapsed,
                     kkt=_kkt(yv, z, constraints, mu), rows=rows,
                     objective=float(problem.value), iters=_iters(problem))


def solve_penalized(z, groups, *, lam, bounds, metric: str = "dp", targets=None, empty: str = "drop",
                    gap: str = "max", solver: str = "CLARABEL", allow_inaccurate: bool = False,
                    **solver_opts) -> CvxResult:
    """Solve :func:`penalized_problem`; mu holds the signed multipliers of -t_j <= gap_j(y) <= t_j."""
    _need_cvxpy()
    problem, y, t, fairness, rows = _penalized(z, groups, lam=lam, bounds=bounds, metric=metric,
                                               targets=targets, empty=empty, gap=gap)
    elapsed = _solve(problem, solver, allow_inaccurate, solver_opts)
    return CvxResult(y=np.asarray(y.value, dtype=np.float64), mu=_signed(fairness), status=problem.status,
                     solver=solver.upper(), solve_time=elapsed, kkt=None, rows=rows,
                     objective=float(problem.value), iters=_iters(problem),
                     t=np.asarray(t.value, dtype=np.float64).reshape(-1))


def solver_report(result: CvxResult) -> str:
    """One line: solver, status, iterations, time and the largest relative KKT residual."""
    kkt = "n/a" if result.kkt is None else f"{result.kkt['max']:.2e}"
    it = "?" if result.iters is None else result.iters
    return (f"{result.solver}: status={result.status}, iters={it}, time={result.solve_time * 1e3:.1f} ms, "
            f"rows={len(result.rows)}, max KKT residual={kkt}")
