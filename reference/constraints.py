"""Input validation and the fairness constraint set C as rows of a matrix.

Every metric of CLAIMS.md is a set of two-sided linear rows

    c_k - eps <= a_k^T y <= c_k + eps,        k = 1..m,

plus an optional box lb <= y <= ub:

* ``dp``          a = 1_{S_j0}/n_j0 - 1_{S_j1}/n_j1, c = 0, one row per attribute j.
* ``dp_pairwise`` cells = distinct rows of ``groups`` (b, k); a = 1_g/n_g - 1_h/n_h, c = 0, every pair g < h.
* ``mr``          a = 1_{S_ja}/n_ja, c = mean_{S_ja}(targets), every attribute j and a in {0, 1}.
* ``eo``          for each label class c in {0, 1} (targets > 0.5) and attribute j:
                  a = 1_{A_j=0,Y=c}/n - 1_{A_j=1,Y=c}/n, c = 0.

A requested row whose group is empty raises (``empty="raise"``, the default) or is dropped
(``empty="drop"``, what the authors' layer does, needed for tiny streaming batches). For ``mr`` the
authors drop the whole attribute (both of its rows) when either of its groups is empty, and so do we.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

METRICS = ("dp", "dp_pairwise", "mr", "eo")


@dataclasses.dataclass(frozen=True)
class Constraints:
    """The polyhedron C = {y : |A y - center| <= eps, lb <= y <= ub}.

    A: (m, b) rows; center: (m,); eps >= 0; bounds: (lb, ub) or None; names: one label per row.
    """

    A: np.ndarray
    center: np.ndarray
    eps: float
    bounds: tuple[float, float] | None
    names: tuple[str, ...]

    @property
    def m(self) -> int:
        return self.A.shape[0]

    @property
    def lo(self) -> np.ndarray:
        return self.center - self.eps

    @property
    def hi(self) -> np.ndarray:
        return self.center + self.eps

    def gaps(self, y: np.ndarray) -> np.ndarray:
        """Signed row values A y - center, shape (m,)."""
        return self.A @ y - self.center

    def violation(self, y: np.ndarray) -> float:
        """max(|A y - c| - eps, box excess, 0): how far y is outside C (0 when feasible; inf when y has a
        NaN or an infinite entry, which Python's max would otherwise drop)."""
        if not np.all(np.isfinite(y)):
            return float("inf")
        v = 0.0
        if self.m:
            v = max(v, float(np.max(np.abs(self.gaps(y)) - self.eps)))
        if self.bounds is not None:
            lb, ub = self.bounds
            v = max(v, float(np.max(lb - y)), float(np.max(y - ub)))
        return max(v, 0.0)

    def separable(self) -> bool:
        """True when rows have pairwise disjoint supports: the projection splits into
        independent single-row problems (dp with one attribute, mr/eo with one attribute)."""
        support = self.A != 0
        return bool(np.all(support.sum(axis=0) <= 1))


def as_float_vector(z, name: str = "z") -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (b,), got shape {z.shape}")
    if z.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or inf")
    return z


def check_groups(groups, b: int) -> np.ndarray:
    """0/1 group labels of shape (b,) or (b, k) -> int array of shape (b, k)."""
    g = np.asarray(groups)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2 or g.shape[0] != b:
        raise ValueError(f"shape mismatch: groups must have shape ({b},) or ({b}, k), got {np.shape(groups)}")
    if g.shape[1] == 0:
        raise ValueError("groups has no attribute column")
    if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
        raise ValueError("groups contains NaN or inf")
    if not np.all((g == 0) | (g == 1)):
        raise ValueError("groups must be binary (0/1) labels; got values "
                         f"{np.unique(g)[:6].tolist()}")
    return g.astype(np.int64)


def check_eps(eps) -> float:
    if isinstance(eps, (bool, np.bool_, str, bytes)):
        raise ValueError(f"eps must be a real scalar, got {eps!r}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a real scalar, got {eps!r}") from None
    if not np.isfinite(eps):
        raise ValueError(f"eps must be finite, got {eps}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return eps


def check_bounds(bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lb, ub = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (lb, ub) or None, got {bounds!r}") from None
    if np.isnan(lb) or np.isnan(ub):
        raise ValueError("bounds contain NaN")
    if not (np.isfinite(lb) and np.isfinite(ub)):
        raise ValueError(f"bounds must be finite (pass bounds=None for no box; a one-sided box is not "
                         f"supported), got lb={lb}, ub={ub}")
    if not lb < ub:
        raise ValueError(f"bounds need lb < ub, got lb={lb}, ub={ub}")
    return lb, ub


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _cells(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of g (the intersectional cells) and each sample's cell index."""
    cells, index = np.unique(g, axis=0, return_inverse=True)
    return cells, index.reshape(-1)


def build_constraints(groups, metric: str, *, eps, b: int, targets=None, bounds=None,
                      empty: str = "raise") -> Constraints:
    """Rows (A, center) of the constraint set of ``metric`` for a batch of size ``b``.

    groups: (b,) or (b, k) 0/1 labels; targets: (b,) required for ``mr`` and ``eo`` (ignored, not
    validated, by ``dp`` and ``dp_pairwise``).
    """
    metric = check_metric(metric)
    eps = check_eps(eps)
    bounds = check_bounds(bounds)
    g = check_groups(groups, b)
    if empty not in ("raise", "drop"):
        raise ValueError(f"empty must be 'raise' or 'drop', got {empty!r}")
    if metric in ("mr", "eo"):
        if targets is None:
            raise ValueError(f"metric {metric!r} needs targets (y_true), got None")
        targets = as_float_vector(targets, "targets")
        if targets.shape[0] != b:
            raise ValueError(f"shape mismatch: targets has shape {targets.shape}, expected ({b},)")

    rows: list[np.ndarray] = []
    centers: list[float] = []
    names: list[str] = []

    def indicator_mean(mask: np.ndarray) -> np.ndarray:
        return mask / mask.sum()

    def need(mask: np.ndarray, what: str) -> bool:
        if mask.any():
            return True
        if empty == "raise":
            raise ValueError(f"empty group: {what} has no sample in this batch "
                             "(pass empty='drop' to drop its constraint, as the authors' layer does)")
        return False

    k = g.shape[1]
    if metric == "dp":
        for j in range(k):
            s0, s1 = g[:, j] == 0, g[:, j] == 1
            if need(s0, f"attribute {j} group 0") & need(s1, f"attribute {j} group 1"):
                rows.append(indicator_mean(s0) - indicator_mean(s1))
                centers.append(0.0)
                names.append(f"dp[a{j}]")
    elif metric == "dp_pairwise":
        cells, index = _cells(g)
        if len(cells) < 2 and empty == "raise":
            raise ValueError("empty group: dp_pairwise needs at least two non-empty cells")
        for p, q in itertools.combinations(range(len(cells)), 2):
            rows.append(indicator_mean(index == p) - indicator_mean(index == q))
            centers.append(0.0)
            names.append(f"dp[{''.join(map(str, cells[p]))}-{''.join(map(str, cells[q]))}]")
    elif metric == "mr":
        for j in range(k):      # an attribute with an empty group is dropped whole, as the authors do
            masks = [g[:, j] == a for a in (0, 1)]
            if need(masks[0], f"attribute {j} group 0") & need(masks[1], f"attribute {j} group 1"):
                for a, s in enumerate(masks):
                    rows.append(indicator_mean(s))
                    centers.append(float(targets[s].mean()))
                    names.append(f"mr[a{j}={a}]")
    else:  # eo
        label = targets > 0.5
        for c in (0, 1):
            for j in range(k):
                s0 = (g[:, j] == 0) & (label == c)
                s1 = (g[:, j] == 1) & (label == c)
                if need(s0, f"attribute {j} group 0 in class y={c}") & \
                        need(s1, f"attribute {j} group 1 in class y={c}"):
                    rows.append(indicator_mean(s0) - indicator_mean(s1))
                    centers.append(0.0)
                    names.append(f"eo[a{j},y={c}]")

    A = np.array(rows, dtype=np.float64).reshape(len(rows), b)
    center = np.array(centers, dtype=np.float64)
    if bounds is not None and len(rows):
        # Feasibility of each row over the box: [lo, hi] must meet [min a^T y, max a^T y] on the box.
        lb, ub = bounds
        lo_reach = np.where(A > 0, A * lb, A * ub).sum(axis=1)
        hi_reach = np.where(A > 0, A * ub, A * lb).sum(axis=1)
        bad = (center + eps < lo_reach - 1e-12) | (center - eps > hi_reach + 1e-12)
        if bad.any():
            k0 = int(np.argmax(bad))
            raise ValueError(f"infeasible: constraint {names[k0]} needs a^T y in "
                             f"[{center[k0] - eps:.6g}, {center[k0] + eps:.6g}] but the box "
                             f"[{lb}, {ub}] only reaches [{lo_reach[k0]:.6g}, {hi_reach[k0]:.6g}]"
                             " (targets outside the box?)")
    return Constraints(A=A, center=center, eps=eps, bounds=bounds, names=tuple(names))
