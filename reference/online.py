r"""Algorithm 1 of Troxell et al. (the online primal-dual fairness algorithm), one stream, NumPy, exact.

For t = 1, 2, ... with lambda_1 = ``lam1`` (0 in the paper and the package) and a batch
(z_t, groups_t, targets_t) of size b_t:

* b_t >= b_tau: the hard layer, y_t = g(z_t) (exact projection, ``reference.solve``); the dual state is
  left alone (the package neither updates lambda nor advances the step counter).
* b_t <  b_tau: the penalised step (``reference.solve_penalized``, exact)::

      y_t     = argmin_{lb <= y <= ub} ||y - z_t||^2 + lambda_t b_t G_t(y),   G_t(y) = max_k |a_k^T y - c_k|
      g_t     = G_t(y_t)
      lambda_{t+1} = max(0, lambda_t + eta_t b_t (g_t - eps)),  eta_t = eta_0 / sqrt(t)  (t: dual step count)

  ``schedule="package"`` is eta_0/sqrt(t) (fairness-training 0.1.0 ``FairModel._forward_primal_dual``, and
  the FairFace experiment code, eta_0/sqrt(count + 1) before the increment); ``schedule="experiment"`` is
  eta_0/sqrt(max(1, t - 1)) (FairDL synthetic ``get_adaptive_eta``, read before the increment), so
  eta_1 = eta_2 = eta_0. ``gap="sum"`` is the FairFace variant: the primal penalty is
  lambda_t b_t sum_k |a_k^T y - c_k| (solved by cvxpy/Clarabel at tight tolerance: solver-accurate, not
  exact) while the dual update still uses the max gap g_t.

Batches whose groups are missing (b = 1, or a group of every attribute absent; ``empty="drop"`` drops an
attribute with an empty group, for mr both of its rows, as the package does) have no fairness row: G_t = 0,
y_t = clip(z_t), and the dual step still runs with g_t = 0 (as the package's forward does; the authors'
evaluation loops skip such batches instead, and so does their FairFace forward, whose step counter then
does not advance -- not mirrored by ``gap="sum"``).

Guarantee checked by O1 (``OnlineTrace.bound``): with N_T = sum_{t<=T} b_t,
(1/N_T) sum_t b_t g_t <= eps + lambda_{T+1} / (eta_T N_T) <= eps + max_{t<=T+1} lambda_t / (eta_T N_T).

Offline comparators (O4, O6): :func:`pooled_projection` (one exact projection of all predictions onto the
pooled constraint) and :func:`aggregate_optimum` (the best decisions whose batch-weighted average gap is
<= eps, i.e. the constraint Algorithm 1 targets: a fixed multiplier lambda* in every penalised step).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from reference.constraints import build_constraints, check_bounds, check_eps
from reference.projection import KKT_TOL, ConvergenceError, illinois_root, solve, solve_penalized

SCHEDULES = ("package", "experiment")          # the authors' two schedules (CLAIMS.md)
FAULT_SCHEDULES = ("inverse",)                  # eta_0 / t: O3's planted fault, not an algorithm of the paper
GAPS = ("max", "sum")
B_TAU_PACKAGE = 64        # fairness-training 0.1.0 default; docs / older code: 2000 (synthetic: 1000)
ETA0_PACKAGE = 0.5        # package and synthetic inference; 0.1 in the FairFace and training code


def check_schedule(schedule: str) -> str:
    """ValueError unless ``schedule`` is one of SCHEDULES or FAULT_SCHEDULES."""
    if schedule not in SCHEDULES + FAULT_SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES + FAULT_SCHEDULES}, got {schedule!r}")
    return schedule


def step_size(t: int, eta0: float, schedule: str = "package") -> float:
    """eta_t for the t-th dual update (t >= 1): eta0/sqrt(t) ("package") or eta0/sqrt(max(1, t-1))
    ("experiment"); "inverse" = eta0/t is a planted fault (O3), not an algorithm of the paper."""
    if schedule == "package":
        return eta0 / math.sqrt(t)
    if schedule == "experiment":
        return eta0 / math.sqrt(max(1, t - 1))
    check_schedule(schedule)
    return eta0 / t                                     # "inverse"


def dual_update(lam: float, eta: float, b: int, g: float, eps: float) -> float:
    """lambda_{t+1} = max(0, lambda_t + eta_t b_t (g_t - eps))."""
    return max(0.0, lam + eta * b * (g - eps))


def batch_gap(y, groups, *, metric: str = "dp", targets=None) -> float:
    """G(y) = max_k |a_k^T y - c_k| over the batch's rows (0 when no row survives: a group is missing)."""
    y = np.asarray(y, dtype=np.float64)
    C = build_constraints(groups, metric, eps=0.0, b=y.size, targets=targets, empty="drop")
    return float(np.max(np.abs(C.gaps(y)), initial=0.0))


@dataclasses.dataclass
class OnlineTrace:
    """Trace of one stream of T batches.

    y: list of T outputs (b_t,) (None when ``keep_y=False``); z: the inputs (same shapes, or None);
    g: (T,) g_t = G_t(y_t); lam: (T+1,) lambda_1..lambda_{T+1} (step t uses lam[t-1]);
    eta: (T,) eta_t (0 on hard-layer batches); b: (T,) b_t; hard: (T,) True where b_t >= b_tau;
    distortion: (T,) ||y_t - z_t||^2; eps, eta0, schedule: the run's parameters.
    """

    y: list | None
    z: list | None
    g: np.ndarray
    lam: np.ndarray
    eta: np.ndarray
    b: np.ndarray
    hard: np.ndarray
    distortion: np.ndarray
    eps: float
    eta0: float
    schedule: str

    @property
    def T(self) -> int:
        return self.g.size

    @property
    def N(self) -> np.ndarray:
        """N_T = sum_{t<=T} b_t, (T,)."""
        return np.cumsum(self.b).astype(np.float64)

    def cumulative_violation(self) -> np.ndarray:
        """sum_{t<=T} b_t (g_t - eps), (T,)."""
        return np.cumsum(self.b * (self.g - self.eps))

    def weighted_gap(self) -> np.ndarray:
        """(1/N_T) sum_{t<=T} b_t g_t, (T,): the quantity O1 bounds, over every batch (hard ones too; the
        package's ``weighted_avg_fairness_gap`` counts only the primal-dual batches, which differs on
        streams that mix b >= b_tau and smaller batches)."""
        return np.cumsum(self.b * self.g) / self.N

    def eta_last(self) -> np.ndarray:
        """eta_T: the step of the last dual update up to T (forward-filled over hard batches; inf before
        the first dual update, where lambda is still lambda_1), (T,)."""
        eta = np.where(self.eta > 0, self.eta, np.nan)
        idx = np.where(np.isfinite(eta), np.arange(self.T), -1)
        idx = np.maximum.accumulate(idx)
        return np.where(idx >= 0, self.eta[np.maximum(idx, 0)], np.inf)

    def bound(self, variant: str = "last", eta: np.ndarray | None = None) -> np.ndarray:
        """eps + L_T / (eta_T N_T), (T,), with L_T = lambda_{T+1} ("last") or max_{t<=T+1} lambda_t ("max").

        ``eta`` replaces eta_T (the planted fault of O1 passes eta_0 here)."""
        lam_next = self.lam[1:]
        if variant == "last":
            L = lam_next
        elif variant == "max":
            L = np.maximum.accumulate(self.lam)[1:]
        else:
            raise ValueError(f"bound variant must be 'last' or 'max', got {variant!r}")
        eta_T = self.eta_last() if eta is None else np.broadcast_to(np.asarray(eta, dtype=float), L.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            slack = np.where(L == 0, 0.0, L / (eta_T * self.N))
        return self.eps + slack

    def roundoff(self) -> np.ndarray:
        """Float64 allowance for ``weighted_gap - bound`` at every T, (T,), in gap units.

        The proof chains v_t <= (lambda_{t+1} - lambda_t)/eta_t; each computed lambda_{t+1} carries a
        relative error <= u of |lambda_t| + |eta_t v_t| (one product, one sum, one max), i.e. an absolute
        error <= 2u (lambda_t + eta_t |v_t|) that the division by eta_t scales up; the running sums of
        b_t g_t and the bound's own division add <= T u sum|b_t g_t| and u |bound| (gamma_T, deterministic).
        Total, divided by N_T: (2u sum_t (lambda_t/eta_t + |v_t|) + T u sum_t b_t g_t)/N_T + 4u |bound|.
        """
        u = np.finfo(np.float64).eps / 2
        dual = ~self.hard
        v = self.b * (self.g - self.eps)
        per_step = np.where(dual, self.lam[:-1] / np.where(dual, self.eta, 1.0) + np.abs(v), 0.0)
        t = np.arange(1, self.T + 1)
        return ((2 * u * np.cumsum(per_step) + t * u * np.cumsum(self.b * self.g)) / self.N
                + 4 * u * np.abs(self.bound("max")))


def _as_batches(stream) -> Sequence:
    batches = getattr(stream, "batches", stream)
    if not isinstance(batches, Sequence):
        batches = list(batches)
    if len(batches) == 0:
        raise ValueError("the stream has no batch")
    return batches


def check_b_tau(b_tau) -> None:
    """b_tau: a batch size (an integer >= 1) or None (never switch to the hard layer)."""
    if b_tau is None:
        return
    try:
        ok = bool(np.isfinite(b_tau) and float(b_tau) == int(b_tau) and b_tau >= 1)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"b_tau must be an integer >= 1 or None, got {b_tau!r}")


def run_online(stream, *, eps: float, eta0: float = ETA0_PACKAGE, schedule: str = "package",
               metric: str = "dp", bounds=None, b_tau: int | None = B_TAU_PACKAGE, gap: str = "max",
               lam1: float = 0.0, update: Callable[[float, float, int, float, float], float] = dual_update,
               keep_y: bool = True) -> OnlineTrace:
    """Run Algorithm 1 on ``stream`` (a ``reference.data.Stream`` or a sequence of batches with
    attributes z (b,), groups (b,) or (b, k), targets (b,) or None). See the module docstring.

    b_tau=None never switches to the hard layer. ``update`` computes lambda_{t+1} from
    (lambda_t, eta_t, b_t, g_t, eps) (a planted fault of O1 replaces it). Raises ValueError on bad
    parameters and ConvergenceError (or cvxpy's SolverError for gap="sum") if a step's solver fails.
    """
    eps = check_eps(eps)
    bounds = check_bounds(bounds)
    if not (np.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"eta0 must be finite and > 0, got {eta0}")
    check_schedule(schedule)
    if gap not in GAPS:
        raise ValueError(f"gap must be one of {GAPS}, got {gap!r}")
    check_b_tau(b_tau)
    if not (np.isfinite(lam1) and lam1 >= 0):
        raise ValueError(f"lam1 must be finite and >= 0, got {lam1}")
    batches = _as_batches(stream)
    T = len(batches)
    g, eta, dist = np.zeros(T), np.zeros(T), np.zeros(T)
    lam = np.zeros(T + 1)
    lam[0] = lam1
    b = np.zeros(T, dtype=np.int64)
    hard = np.zeros(T, dtype=bool)
    ys, zs = ([], []) if keep_y else (None, None)
    count = 0
    for t, bt in enumerate(batches):
        z = np.asarray(bt.z, dtype=np.float64)
        targets = getattr(bt, "targets", None)
        b[t] = z.size
        if b_tau is not None and z.size >= b_tau:
            hard[t] = True
            y = solve(z, bt.groups, metric=metric, eps=eps, bounds=bounds, targets=targets, empty="drop").y
            g[t] = batch_gap(y, bt.groups, metric=metric, targets=targets)
            lam[t + 1] = lam[t]
        else:
            count += 1
            eta[t] = step_size(count, eta0, schedule)
            coef = lam[t] * z.size
            if gap == "max":
                res = solve_penalized(z, bt.groups, lam=coef, bounds=bounds, metric=metric, targets=targets)
                y, g[t] = res.y, res.gap
            else:
                y = _penalized_sum(z, bt.groups, coef, bounds, metric, targets)
                g[t] = batch_gap(y, bt.groups, metric=metric, targets=targets)
            lam[t + 1] = update(lam[t], eta[t], int(z.size), g[t], eps)
        dist[t] = float(np.sum((y - z) ** 2))
        if keep_y:
            ys.append(y)
            zs.append(z)
    return OnlineTrace(y=ys, z=zs, g=g, lam=lam, eta=eta, b=b, hard=hard, distortion=dist, eps=eps,
                       eta0=float(eta0), schedule=schedule)


def _penalized_sum(z, groups, coef, bounds, metric, targets) -> np.ndarray:
    """FairFace primal step: argmin ||y - z||^2 + coef * sum_k |a_k^T y - c_k| over the box, by cvxpy/Clarabel
    at the tight preset (accuracy ~1e-7 relative, reference.cvx.ACCURACY); equals the max-gap step for
    one row. Raises cvxpy's SolverError (via reference.cvx) when the solver fails."""
    from reference import cvx

    return cvx.solve_penalized(z, groups, lam=coef, bounds=bounds, metric=metric, targets=targets,
                               gap="sum", solver="CLARABEL", **cvx.TIGHT["CLARABEL"]).y


# ------------------------------------------------------------------------------------------- comparators

def pooled_gap(ys: Iterable, stream, *, metric: str = "dp") -> float:
    """G of all predictions at once: max_k |a_k^T y - c_k| with the rows built on the pooled groups."""
    batches = _as_batches(stream)
    y = np.concatenate([np.asarray(v, dtype=np.float64) for v in ys])
    groups, targets = _pooled(batches)
    return batch_gap(y, groups, metric=metric, targets=targets)


def _pooled(batches) -> tuple[np.ndarray, np.ndarray | None]:
    groups = np.concatenate([np.asarray(bt.groups).reshape(np.asarray(bt.z).size, -1) for bt in batches])
    tg = [getattr(bt, "targets", None) for bt in batches]
    targets = None if any(t is None for t in tg) else np.concatenate(tg)
    return groups, targets


def _distortion(ys, batches) -> np.ndarray:
    """||y_t - z_t||^2 per batch, (T,)."""
    return np.array([float(np.sum((np.asarray(y) - np.asarray(bt.z)) ** 2))
                     for y, bt in zip(ys, batches, strict=True)])


@dataclasses.dataclass
class Comparator:
    """Offline decisions: y list of (b_t,); distortion (T,) ||y_t - z_t||^2; lam: the multiplier lambda*
    (aggregate optimum; None for the pooled projection); gap: the comparator's constraint value."""

    y: list
    distortion: np.ndarray
    lam: float | None
    gap: float


def pooled_projection(stream, *, eps: float, metric: str = "dp", bounds=None) -> Comparator:
    """Best fair decisions in hindsight for the pooled constraint: one exact projection of the
    concatenation of all z_t onto {|pooled gap| <= eps, box} (``reference.solve``), split back per batch."""
    batches = _as_batches(stream)
    z = np.concatenate([np.asarray(bt.z, dtype=np.float64) for bt in batches])
    groups, targets = _pooled(batches)
    y = solve(z, groups, metric=metric, eps=eps, bounds=bounds, targets=targets, empty="drop").y
    ys = np.split(y, np.cumsum([np.asarray(bt.z).size for bt in batches])[:-1])
    return Comparator(y=ys, distortion=_distortion(ys, batches), lam=None,
                      gap=batch_gap(y, groups, metric=metric, targets=targets))


def aggregate_optimum(stream, *, eps: float, metric: str = "dp", bounds=None,
                      max_iter: int = 200) -> Comparator:
    r"""min sum_t ||y_t - z_t||^2  s.t.  sum_t b_t G_t(y_t) <= eps N_T  (box on every y_t), exactly.

    The constraint Algorithm 1 targets (its guarantee is on the batch-weighted average gap). Convex
    (G_t convex); by duality its solution is y_t = penalised step with one multiplier lambda* for every
    batch (coefficient lambda* b_t), where h(lambda) = sum_t b_t G_t(y_t(lambda)) - eps N_T crosses 0.
    h is nonincreasing; its root is bracketed and found by Illinois regula falsi (each evaluation: T
    exact penalised steps); we stop when |h| <= 1e-12 (1 + eps) N_T or the bracket is at round-off.
    """
    eps = check_eps(eps)
    batches = _as_batches(stream)
    sizes = np.array([np.asarray(bt.z).size for bt in batches], dtype=np.float64)
    N = float(sizes.sum())

    def evaluate(lam):
        res = [solve_penalized(bt.z, bt.groups, lam=lam * s, bounds=bounds, metric=metric,
                               targets=getattr(bt, "targets", None))
               for bt, s in zip(batches, sizes, strict=True)]
        return float(sizes @ np.array([r.gap for r in res])) - eps * N, res

    def done(lam, res):
        ys = [r.y for r in res]
        return Comparator(y=ys, distortion=_distortion(ys, batches), lam=lam,
                          gap=float(sizes @ np.array([r.gap for r in res])) / N)

    h0, r0 = evaluate(0.0)
    if h0 <= 0:
        return done(0.0, r0)
    hi = 1.0
    hhi, _ = evaluate(hi)
    while hhi > 0:
        hi *= 4.0
        if hi > 1e300:
            raise ConvergenceError("aggregate optimum: no multiplier makes the weighted gap <= eps")
        hhi, _ = evaluate(hi)
    tol = KKT_TOL * (1.0 + eps) * N
    lam, h, res, hi = illinois_root(evaluate, 0.0, h0, hi, hhi, f_tol=tol, x_tol_rel=4 * np.finfo(float).eps,
                                    max_iter=max_iter, what="aggregate optimum (multiplier)")
    if h > tol:                      # bracket collapsed on the infeasible side: use the feasible end
        return done(hi, evaluate(hi)[1])
    return done(lam, res)


def hard_per_batch(stream, *, eps: float, metric: str = "dp", bounds=None) -> Comparator:
    """The hard layer on every batch (y_t = g(z_t), exact): the second comparator of O4/O6."""
    batches = _as_batches(stream)
    ys = [solve(bt.z, bt.groups, metric=metric, eps=eps, bounds=bounds, targets=getattr(bt, "targets", None),
                empty="drop").y for bt in batches]
    sizes = np.array([y.size for y in ys], dtype=np.float64)
    gaps = np.array([batch_gap(y, bt.groups, metric=metric, targets=getattr(bt, "targets", None))
                     for y, bt in zip(ys, batches, strict=True)])
    return Comparator(y=ys, distortion=_distortion(ys, batches), lam=None,
                      gap=float(sizes @ gaps / sizes.sum()))
