r"""Exact, batched, differentiable fairness layers in torch (CPU and CUDA).

The layer (CLAIMS.md, "the fairness layer") is the Euclidean projection

    g(z) = argmin_y ||y - z||^2   s.t.   c_k - eps <= a_k^T y <= c_k + eps  (k = 1..m),   lb <= y <= ub,

with the rows of ``reference.constraints`` and the multiplier convention of ``reference.projection``
(half-scaled ``nu = mu / 2``: ``y = clip(z - A^T nu, lb, ub)``). Shapes: z (..., b) -> y (..., b); every
leading index is an independent problem.

Forward (exact, no iteration tolerance):
* rows with disjoint supports (dp, mr, eo with one attribute): the breakpoint search of
  :mod:`layers._rows`, batched: a sort of the breakpoints below b = 8192 (no host sync), sort-free bucket
  passes from there on (one host sync); no box: the closed form nu = (a^T z - t) / ||a||^2.
* coupled rows (several attributes, dp_pairwise): :mod:`layers._coupled` (augmented Lagrangian with
  semismooth Newton, then an exact polish on the identified active set, certified by the reference's
  KKT tolerance; raises ConvergenceError otherwise). One host sync per iteration.

Backward: the analytic vector-Jacobian product on the active set read off the solution (no unrolling):
J = the orthogonal projector onto {v : v_fixed = 0, A_T v = 0} of claim L3, and dy/d eps from the
active rows' linear system. Separable rows: :class:`layers._rows.RowProject` applies it directly (a
backward written in torch ops, so double backward works). Coupled rows: y is re-expressed on the
certified pattern as a differentiable function of (z, eps), ``y_F = z_F - (A_TF^T nu)_F`` with ``nu``
from the active rows' (pseudo-inverse) system, ``y_fixed = bounds``, and autograd yields the same
projector. Either way ``gradgradcheck`` sees the (a.e. zero) second derivative. Without a gradient
requirement nothing of this is built.
"""

from __future__ import annotations

import torch

from layers import _coupled, _fused
from layers._problem import Problem, build_problem, scalar_or_batch
from layers._rows import RowProject, clip, coefficients, per_row, row_root, spread


def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in ts)


def _rows_output(prob: Problem, par, A, a, rowid, nu, solve, dt, dnu, need_grad):
    """y = clip(z - nu[row] a); with the analytic backward of :class:`layers._rows.RowProject` if asked."""
    if not need_grad:
        with torch.no_grad():
            return clip(torch.addcmul(prob.z, spread(nu, rowid), a, value=-1.0), prob.bounds)
    return RowProject.apply(prob.z, par, A, a, rowid, nu, solve, dt, dnu, prob.bounds)


def _separable(prob: Problem, need_grad: bool) -> torch.Tensor:
    """Rows with disjoint supports: one exact breakpoint search per row, all rows of all problems at once."""
    P, m, b = prob.P, prob.m, prob.b
    with torch.no_grad():
        z = prob.z.detach()
        a, rowid = coefficients(prob)
        A = per_row(a, rowid, m)                                       # (P, m, b)
        eps = prob.eps.detach()[:, None]
        hi, lo = prob.center + eps, prob.center - eps                  # (P, m)
        phi0 = (A * clip(z, prob.bounds)[:, None, :]).sum(-1)
        up = phi0 > hi
        active = (up | (phi0 < lo)) & prob.valid
        zr = z[:, None, :].expand(P, m, b).reshape(P * m, b)
        dense = prob.metric_rows == "dp"                               # one row through every coordinate
        nu = row_root(zr, A.reshape(P * m, b), torch.where(up, hi, lo).reshape(-1), prob.bounds,
                      dense=dense).reshape(P, m)
        nu = torch.where(active, nu, 0.0)
        side = torch.where(up, 1.0, -1.0).to(z.dtype) if need_grad else None     # d target / d eps
        dnu = torch.zeros_like(nu) if need_grad else None
    return _rows_output(prob, prob.eps, A, a, rowid, nu, active, side, dnu, need_grad)


def project(z, groups, *, metric: str, eps, bounds=None, targets=None, empty: str = "raise",
            device=None, check: bool = True, fused: bool = False) -> torch.Tensor:
    """Exact projection ``g(z) = argmin_{y in C} ||y - z||^2``, batched over the leading dims of z.

    z: (..., b) float32/float64 tensor (numpy -> float64), differentiable; groups: 0/1 labels of shape
    (b,) or (b, k) (shared by all problems) or z.shape / z.shape + (k,) (one per problem);
    metric: "dp" | "dp_pairwise" | "mr" | "eo"; eps: number or tensor of shape () or z.shape[:-1]
    (differentiable); bounds: (lb, ub) or None; targets: (b,) or z.shape, needed by mr and eo (dp,
    dp_pairwise: ignored, not validated);
    empty: "raise" | "drop" (rows of empty groups); device: put z there (numpy inputs follow z;
    tensors on another device raise; "cuda" without CUDA raises ValueError); check=False skips the
    value checks that sync with the device (NaN, binary groups, empty groups, eps >= 0, MR
    feasibility); fused=True: the forward in a few Triton kernels (:mod:`layers._fused`: dp with one
    attribute, CUDA; for large b, where the eager layer is bandwidth-bound; same backward). Returns y of
    z's shape, dtype and device.
    """
    if fused:
        return _fused.project(z, groups, metric=metric, eps=eps, bounds=bounds, empty=empty, device=device,
                              check=check)
    prob = build_problem(z, groups, metric=metric, eps=eps, bounds=bounds, targets=targets, empty=empty,
                         device=device, check=check)
    need_grad = _needs_grad(prob.z, prob.eps)
    if prob.rowof is not None:
        y = _separable(prob, need_grad)
    else:
        y = _coupled.project(prob, need_grad)
    return y.reshape(*prob.batch_shape, prob.b)


def _check_lam(lam, prob: Problem, check: bool) -> torch.Tensor:
    lam_t = scalar_or_batch(lam, "lam", prob.z, prob.batch_shape, prob.P)
    if check and not bool((torch.isfinite(lam_t) & (lam_t >= 0)).all()):
        raise ValueError(f"lam must be finite and >= 0, got min {lam_t.min().item()}")
    return lam_t


def penalized_step(z, groups, *, lam, bounds, metric: str = "dp", targets=None, empty: str = "drop",
                   device=None, check: bool = True) -> torch.Tensor:
    r"""Exact step 1 of Algorithm 1, batched: ``argmin_{lb <= y <= ub} ||y - z||^2 + lam * G(y)``,
    ``G(y) = max_k |a_k^T y - c_k|`` (pass ``lam = lambda_t * b_t``), as ``reference.solve_penalized``.

    z: (..., b); lam: number or tensor of shape () or z.shape[:-1] (one per problem); the other
    arguments as in :func:`project` (empty groups drop their rows: G = 0). Differentiable in z (and lam).
    One row (dp with one attribute): ``nu = clip(root of a^T clip(z - nu a) = c, -lam/2, lam/2)``, no
    host sync. Several rows: secant on the level t of the max-gap (:func:`layers._coupled.penalized`).
    """
    prob = build_problem(z, groups, metric=metric, eps=0.0, bounds=bounds, targets=targets, empty=empty,
                         device=device, check=check)
    lam_t = _check_lam(lam, prob, check)
    need_grad = _needs_grad(prob.z, lam_t)
    if prob.rowof is None or prob.m != 1:
        y = _coupled.penalized(prob, lam_t, need_grad)
        return y.reshape(*prob.batch_shape, prob.b)
    bounds = prob.bounds
    with torch.no_grad():
        z0 = prob.z.detach()
        a, rowid = coefficients(prob)
        c = prob.center.expand(prob.P, 1)
        half = (lam_t.detach() / 2)[:, None]
        gap_plus = (a * clip(z0 - half * a, bounds)).sum(-1, keepdim=True) - c
        gap_minus = (a * clip(z0 + half * a, bounds)).sum(-1, keepdim=True) - c
        root = row_root(z0, a, c[:, 0], bounds, dense=True)[:, None]
        on = prob.valid.expand(prob.P, 1) & (half > 0)
        pos, neg = on & (gap_plus > 0), on & ~(gap_plus > 0) & (gap_minus < 0)
        solve = on & ~pos & ~neg
        nu = torch.where(pos, half, torch.where(neg, -half, torch.where(
            solve, torch.minimum(torch.maximum(root, -half), half), torch.zeros_like(half))))
        dnu = torch.where(pos, 0.5, torch.where(neg, -0.5, 0.0)).to(z0.dtype)   # nu = +-lam/2 when clipped
    y = _rows_output(prob, lam_t, a[:, None, :], a, rowid, nu, solve, torch.zeros_like(nu), dnu, need_grad)
    return y.reshape(*prob.batch_shape, prob.b)


class FairnessLayer(torch.nn.Module):
    """``nn.Module`` wrapper of :func:`project`: ``FairnessLayer(metric, eps, bounds)(z, groups, targets)``.

    eps may be a number, a tensor or an ``nn.Parameter`` (then learned: the layer is differentiable
    in eps); ``fused=True`` as in :func:`project`. Appending it to a network makes its outputs satisfy
    the constraints on every batch.
    """

    def __init__(self, metric: str, eps, bounds=None, *, empty: str = "raise", fused: bool = False):
        super().__init__()
        self.metric, self.bounds, self.empty, self.fused = metric, bounds, empty, fused
        if isinstance(eps, torch.nn.Parameter):
            self.eps = eps
        elif isinstance(eps, torch.Tensor):
            self.register_buffer("eps", eps)
        else:
            self.eps = float(eps)

    def forward(self, z: torch.Tensor, groups, targets=None) -> torch.Tensor:
        return project(z, groups, metric=self.metric, eps=self.eps, bounds=self.bounds, targets=targets,
                       empty=self.empty, fused=self.fused)

    def extra_repr(self) -> str:
        return (f"metric={self.metric!r}, eps={self.eps}, bounds={self.bounds}, empty={self.empty!r}"
                + (", fused=True" if self.fused else ""))
