r"""Exact batched breakpoint search for rows with disjoint supports (torch, no host sync).

For one row a (zeros off its support) and a box [lb, ub], ``phi(nu) = a^T clip(z - nu a, lb, ub)`` is
continuous, nonincreasing and piecewise linear with breakpoints ``(z_i - ub)/a_i`` and ``(z_i - lb)/a_i``.
:func:`row_root` is ``reference.projection.row_value_root`` vectorised over N independent rows: sort
the 2b breakpoints, accumulate the slope changes, locate the segment where phi crosses the target
(searchsorted), then solve the linear piece directly from that segment's free set (a fresh sum, so
the cumulative sums' round-off never reaches the answer).
"""

from __future__ import annotations

import torch


def clip(w: torch.Tensor, bounds) -> torch.Tensor:
    return w if bounds is None else w.clamp(bounds[0], bounds[1])


@torch.no_grad()
def row_root(z: torch.Tensor, a: torch.Tensor, target: torch.Tensor, bounds, dense: bool = False):
    """nu (N,) with ``a^T clip(z - nu a, lb, ub) = target``; z, a: (N, b), target: (N,).

    ``target`` must lie in the range of phi (the caller checked feasibility). Coordinates with
    ``a_i = 0`` are ignored (``dense=True`` promises there are none); for a row without support the
    result is meaningless (+inf, or NaN when dense) and the caller masks it.
    Without a box: ``nu = (a^T z - target) / ||a||^2``.
    """
    if bounds is None:
        return ((a * z).sum(-1) - target) / (a * a).sum(-1)
    lb, ub = bounds
    pos = a > 0
    ubt, lbt = torch.full_like(z, ub), torch.full_like(z, lb)
    hi_val = torch.where(pos, ubt, lbt)                         # y_i for nu -> -inf
    lo_val = torch.where(pos, lbt, ubt)                         # y_i for nu -> +inf
    if dense:
        nu_in, nu_out = (z - hi_val) / a, (z - lo_val) / a      # coordinate i free on (nu_in, nu_out)
    else:
        nz = a != 0
        sa = torch.where(nz, a, torch.ones_like(a))
        inf = torch.full_like(z, float("inf"))
        nu_in = torch.where(nz, (z - hi_val) / sa, inf)
        nu_out = torch.where(nz, (z - lo_val) / sa, inf)
    ev, order = torch.sort(torch.cat([nu_in, nu_out], -1), dim=-1, stable=True)
    az, a2, a_hi = a * z, a * a, a * hi_val
    # changes of phi's intercept alpha and slope beta: entering the free set at nu_in, leaving at nu_out
    alpha = torch.cat([az - a_hi, a * lo_val - az], -1).gather(-1, order).cumsum(-1)
    beta = torch.cat([-a2, a2], -1).gather(-1, order).cumsum(-1)
    phi = a_hi.sum(-1, keepdim=True) + alpha + beta * ev       # phi at each breakpoint (continuous)
    if not dense:
        phi = torch.where(torch.isfinite(ev), phi, torch.full_like(phi, -float("inf")))
    k = torch.searchsorted(-phi, -target[:, None], side="left").squeeze(-1)  # first with phi <= target
    n_ev = ev.shape[-1] if dense else 2 * nz.sum(-1)
    kc = k.clamp(1, ev.shape[-1] - 1)
    left = ev.gather(-1, (kc - 1)[:, None]).squeeze(-1)
    right = ev.gather(-1, kc[:, None]).squeeze(-1)
    mid = (0.5 * (left + right))[:, None]
    free = (nu_in < mid) & (nu_out > mid)                       # the segment's free set
    num = torch.where(free, az, a * torch.where(nu_in >= mid, hi_val, lo_val)).sum(-1) - target
    den = torch.where(free, a2, torch.zeros_like(a2)).sum(-1)
    nu = num / torch.where(den > 0, den, torch.ones_like(den))
    nu = torch.where(den > 0, torch.minimum(torch.maximum(nu, left), right), left)
    nu = torch.where(k == 0, ev[:, 0], nu)                      # target = max phi: any nu <= first
    last = ev[:, -1] if dense else ev.gather(-1, (n_ev - 1).clamp_min(0)[:, None]).squeeze(-1)
    return torch.where(k >= n_ev, last, nu)                     # target = min phi: any nu >= last


def coefficients(prob):
    """Per-coordinate row coefficient a (P, b) and row id (P, b) of a separable problem."""
    coef_cell = prob.W.sum(1).expand(prob.P, prob.C)            # one nonzero row per cell
    a = coef_cell.gather(1, prob.cell)
    return a, prob.rowof[prob.cell]


def per_row(a: torch.Tensor, rowid: torch.Tensor, m: int) -> torch.Tensor:
    """(P, b) coefficients -> (P, m, b), row r keeping only its own support."""
    if m == 1:
        return a[:, None, :]
    r = torch.arange(m, device=a.device)[None, :, None]
    return torch.where(rowid[:, None, :] == r, a[:, None, :], torch.zeros((), dtype=a.dtype, device=a.device))


class RowProject(torch.autograd.Function):
    r"""``y = clip(z - nu[row] a, lb, ub)`` for rows with disjoint supports, with the analytic VJP.

    Inputs: z (P, b); par (P,) the differentiable scalar of each problem (eps, or lam for the penalized
    step); A (P, m, b) the rows; a, rowid (P, b) each coordinate's coefficient and row; nu (P, m) the
    exact multipliers (no grad); solve (P, m) rows whose nu solves ``a_F^T y_F = t - a_X^T y_X`` on the
    final free set F (active projection rows, penalized rows strictly inside +-lam/2); dt (P, m) = dt/dpar
    of those rows' target (the side +-1 for eps, 0 for lam); dnu (P, m) = dnu/dpar of the other rows
    (+-1/2 for clipped penalized rows, else 0). On F, ``nu = (a_F^T z_F + a_X^T y_X - t) / ||a_F||^2``, so

        J = diag(1_F) (I - sum_{solved r} a_F a_F^T / ||a_F||^2) diag(1_F)      (claim L3's projector)
        dy_F / dpar = -a_F dnu_r/dpar,  dnu_r/dpar = -dt_r / ||a_F||^2 (solved) or dnu_r (others).

    The backward is written in torch ops of the cotangent, so double backward works (and is 0 in z).
    """

    @staticmethod
    def forward(ctx, z, par, A, a, rowid, nu, solve, dt, dnu, bounds):
        with torch.no_grad():
            w = z - nu.gather(1, rowid) * a
            if bounds is None:
                free = torch.ones_like(w, dtype=torch.bool)
            else:
                free = (w > bounds[0]) & (w < bounds[1])
            den = (A * A * free[:, None, :]).sum(-1)
            ok = solve & (den > 0)
            den = torch.where(ok, den, torch.ones_like(den))
            dnu_dpar = torch.where(ok, -dt / den, dnu)
        ctx.save_for_backward(A, a, rowid, free, den, ok, dnu_dpar)
        return clip(w, bounds)

    @staticmethod
    def backward(ctx, v):
        A, a, rowid, free, den, ok, dnu_dpar = ctx.saved_tensors
        vF = torch.where(free, v, torch.zeros_like(v))
        S = (A * vF[:, None, :]).sum(-1)                                    # a_F^T v_F per row
        coef = torch.where(ok, S / den, torch.zeros_like(S))
        grad_z = vF - torch.where(free, a * coef.gather(1, rowid), torch.zeros_like(v))
        grad_par = -(S * dnu_dpar).sum(1) if ctx.needs_input_grad[1] else None
        return grad_z, grad_par, None, None, None, None, None, None, None, None
