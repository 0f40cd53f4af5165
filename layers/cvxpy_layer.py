"""The authors' fairness layer, reproduced with cvxpylayers (the system the paper ships). CPU only.

Faithful to the published code (PyPI ``fairness-training`` 0.1.0, ``fair_model.py`` /
``fairness_metrics.py``; FairFace experiment ``FairDL/fairface_experiment/fair_model.py`` for the
pairwise metric): for one batch composition,

    yhat = Variable(b); raw = Parameter(b); slack = Parameter(1, nonneg=True) [; y = Parameter(b) for mr]
    minimize sum_squares(yhat - raw)
    s.t.  lb <= yhat <= ub                                   (when bounds are given; package default)
          dp: |sum(multiply(yhat, s_j0))/n_j0 - sum(multiply(yhat, s_j1))/n_j1| <= slack   per attribute j
          mr: |sum(multiply(yhat, s_ja))/n_ja - sum(multiply(y, s_ja))/n_ja| <= slack      per j, a in {0, 1}
          eo: the dp rows within each label class (y > 0.5)
          dp_pairwise: |(m_g @ yhat)/n_g - (m_h @ yhat)/n_h| <= slack for every pair of present cells

each two-sided row written as two inequalities, exactly as the authors do. Rows whose groups are empty in
the batch are skipped as the authors skip them (dp and mr: the whole attribute when either of its groups
is empty; eo: the (attribute, class) pair; pairwise: absent cells are no cells); a batch with no row left
raises ValueError. Bad input raises ValueError before any solve, with the reference's checks (eps finite and
>= 0, targets finite of shape (b,), every row reachable in the box) and dtype / shape checks on z, eps,
targets as in :func:`layers.project`.
``CvxpyLayer(problem, parameters=[raw, (y,) slack], variables=[yhat])`` is solved by the library default
(diffcp + SCS at its default settings) unless ``solver`` / ``solver_args`` say otherwise.

* :func:`cvxpy_layer` rebuilds the problem and the layer on every call, as the authors' forward does
  (the selectors depend on the batch's groups, which cvxpylayers cannot take as parameters).
* :class:`CvxpyFairnessLayer` is built once for one composition and called repeatedly (benchmarks).

cvxpy and cvxpylayers are imported lazily so that ``import layers`` works without them. The layer runs
on the CPU only (cvxpylayers' diffcp backend is NumPy/SciPy): CUDA inputs raise ValueError.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from reference.constraints import (
    as_float_vector,
    build_constraints,
    check_bounds,
    check_eps,
    check_groups,
    check_metric,
)

DEFAULT_SOLVER = None           # cvxpylayers' default backend: diffcp, which solves with SCS
DEFAULT_SOLVER_ARGS: dict = {}  # the library defaults: diffcp's batch solve uses SCS at its defaults


def _cpu(x, name: str) -> None:
    if isinstance(x, torch.Tensor) and x.device.type != "cpu":
        raise ValueError(f"cvxpy_layer runs on the CPU only (cvxpylayers/diffcp); {name} is on {x.device}")


class CvxpyFairnessLayer:
    """The authors' layer for one batch composition, built once. CPU only.

    groups: (b,) or (b, k) 0/1; metric: "dp" | "mr" | "eo" | "dp_pairwise"; bounds: (lb, ub) or None;
    targets: (b,) labels, needed to build the eo selectors (y > 0.5); solver / solver_args: passed to
    ``CvxpyLayer`` (default: the library default). Call as ``layer(z, eps, targets=None)`` with z (b,)
    or (P, b) (cvxpylayers batches), eps a number or tensor (differentiable), targets (b,) for mr.
    """

    def __init__(self, groups, *, metric: str, bounds=None, targets=None, solver=DEFAULT_SOLVER,
                 solver_args=None):
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        _cpu(groups, "groups")
        _cpu(targets, "targets")
        self.metric = check_metric(metric)
        self.bounds = check_bounds(bounds)
        g = check_groups(groups.numpy() if isinstance(groups, torch.Tensor) else groups,
                         np.shape(groups)[0])
        b, k = g.shape
        self.b = b
        if metric in ("mr", "eo") and targets is None:
            raise ValueError(f"metric {metric!r} needs targets (y_true), got None")
        if metric == "eo":          # the selectors are built from these labels: validate them here
            targets = as_float_vector(targets.detach() if isinstance(targets, torch.Tensor) else targets,
                                      "targets")
            if targets.shape[0] != b:
                raise ValueError(f"shape mismatch: targets must have shape ({b},), got {targets.shape}")
        self.groups, self.eo_targets = g, (targets if metric == "eo" else None)

        yhat = cp.Variable(b)
        raw = cp.Parameter(b)
        slack = cp.Parameter(1, nonneg=True)
        y = cp.Parameter(b) if metric == "mr" else None
        cons = [] if self.bounds is None else [yhat >= self.bounds[0], yhat <= self.bounds[1]]
        mean = lambda v, s: cp.sum(cp.multiply(v, s)) / s.sum()
        if metric == "dp_pairwise":
            cells, index = np.unique(g, axis=0, return_inverse=True)
            masks = [(index.reshape(-1) == c).astype(float) for c in range(len(cells))]
            for mi, mj in itertools.combinations(masks, 2):
                diff = (mi @ yhat) / mi.sum() - (mj @ yhat) / mj.sum()
                cons += [diff <= slack, -diff <= slack]
        elif metric == "eo":
            t = np.asarray(targets.detach().numpy() if isinstance(targets, torch.Tensor) else targets)
            label = (t.reshape(-1) > 0.5).astype(np.float32)
            for j in range(k):
                for c in (0, 1):
                    s0 = ((label == c) & (g[:, j] == 0)).astype(np.float32)
                    s1 = ((label == c) & (g[:, j] == 1)).astype(np.float32)
                    if s0.sum() >= 1 and s1.sum() >= 1:
                        cons += [mean(yhat, s0) - mean(yhat, s1) <= slack,
                                 mean(yhat, s1) - mean(yhat, s0) <= slack]
        else:
            for j in range(k):
                s0, s1 = (g[:, j] == 0).astype(np.float32), (g[:, j] == 1).astype(np.float32)
                if s0.sum() < 1 or s1.sum() < 1:
                    continue
                if metric == "dp":
                    cons += [mean(yhat, s0) - mean(yhat, s1) <= slack,
                             mean(yhat, s1) - mean(yhat, s0) <= slack]
                else:  # mr
                    for s in (s0, s1):
                        cons += [mean(yhat, s) - mean(y, s) <= slack, mean(yhat, s) - mean(y, s) >= -slack]
        if len(cons) == (0 if self.bounds is None else 2):
            raise ValueError(f"no fairness row: every {metric} constraint has an empty group in this batch "
                             "(the authors' layer skips such rows, which leaves nothing to project onto)")
        problem = cp.Problem(cp.Minimize(cp.sum_squares(yhat - raw)), cons)
        params = [raw, y, slack] if y is not None else [raw, slack]
        self.layer = CvxpyLayer(problem, parameters=params, variables=[yhat], solver=solver,
                                solver_args=dict(DEFAULT_SOLVER_ARGS if solver_args is None else solver_args))

    def __call__(self, z, eps, targets=None) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            z = torch.as_tensor(np.asarray(z, dtype=np.float64))
        _cpu(z, "z")
        _cpu(eps, "eps")
        _cpu(targets, "targets")
        if z.shape[-1] != self.b or z.ndim not in (1, 2):
            raise ValueError(f"shape mismatch: z must be ({self.b},) or (P, {self.b}), got {tuple(z.shape)}")
        if z.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"z must be float32 or float64, got {z.dtype}")
        if not bool(torch.isfinite(z).all()):
            raise ValueError("z contains NaN or inf")
        for name, v in (("eps", eps), ("targets", targets)):
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != z.dtype:
                raise ValueError(f"dtype mismatch: {name} is {v.dtype}, z is {z.dtype}")
        e = torch.as_tensor(eps, dtype=z.dtype).reshape(-1)
        P = z.shape[0] if z.ndim == 2 else 1
        if e.numel() not in (1, P):
            raise ValueError(f"shape mismatch: eps must be a scalar or have {P} entries, got {e.numel()}")
        t = targets.detach() if isinstance(targets, torch.Tensor) else targets
        for v in e.detach().unique().tolist():   # eps finite, >= 0; mr targets finite, (b,); rows reachable
            build_constraints(self.groups, self.metric, eps=check_eps(v), b=self.b, bounds=self.bounds,
                              targets=t if self.metric == "mr" else self.eo_targets, empty="drop")
        e = e.reshape(1) if e.numel() == 1 else e.reshape(-1, 1)
        args = [z]
        if self.metric == "mr":
            args.append(torch.as_tensor(targets, dtype=z.dtype))
        args.append(e)
        (y,) = self.layer(*args)
        return y


def cvxpy_layer(z, groups, *, metric: str, eps, bounds=None, targets=None, solver=DEFAULT_SOLVER,
                solver_args=None) -> torch.Tensor:
    """The authors' layer, rebuilt for this batch on every call (as their forward does). CPU only.

    Same arguments as :func:`layers.project` (z (b,) or (P, b) with shared groups); returns y (z's shape).
    """
    if np.ndim(z) not in (1, 2):
        raise ValueError(f"z must have shape (b,) or (P, b) (groups shared), got {tuple(np.shape(z))}")
    check_groups(groups.cpu().numpy() if isinstance(groups, torch.Tensor) else groups, np.shape(z)[-1])
    layer = CvxpyFairnessLayer(groups, metric=metric, bounds=bounds, targets=targets, solver=solver,
                               solver_args=solver_args)
    return layer(z, eps, targets=targets)


cvxpy_layer.DEFAULT_SOLVER_ARGS = DEFAULT_SOLVER_ARGS
cvxpy_layer.CvxpyFairnessLayer = CvxpyFairnessLayer
