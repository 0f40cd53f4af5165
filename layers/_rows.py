r"""Exact batched breakpoint search for rows with disjoint supports (torch).

For one row a (zeros off its support) and a box [lb, ub], ``phi(nu) = a^T clip(z - nu a, lb, ub)`` is
continuous, nonincreasing and piecewise linear: coordinate i is at ``hi_i`` (ub if a_i > 0, else lb) for
``nu <= nu_in_i = (z_i - hi_i)/a_i``, free (``z_i - nu a_i``) on ``(nu_in_i, nu_out_i)`` and at ``lo_i``
for ``nu >= nu_out_i = (z_i - lo_i)/a_i``. Crossing nu_in adds ``a_i z_i - a_i hi_i`` to phi's intercept
and ``-a_i^2`` to its slope; crossing nu_out adds ``a_i lo_i - a_i z_i`` and ``+a_i^2``.
:func:`row_root` (``reference.projection.row_value_root`` vectorised over N rows) brackets the root
between two breakpoints L < R with no breakpoint strictly inside, then solves that linear piece
directly from its free set (a fresh sum, so no accumulated round-off reaches the answer). Bracketing:

* small b (:func:`_bracket_sorted`): sort the 2b breakpoints, accumulate the changes, count the
  breakpoints where phi still exceeds the target; no host sync.
* large b (:func:`_bracket_buckets`, sort-free): a few passes of a monotone bucketing of the breakpoints
  into K buckets that cover the current bracket; per bucket the sums of the changes and the largest
  and smallest breakpoint. phi at each bucket's largest breakpoint (the cumulative sums: every smaller
  breakpoint lies in that or an earlier bucket) picks the bucket holding the root; the new bracket is
  (largest of the previous bucket, largest of this one), which holds only that bucket's smaller
  breakpoints; done once the bucket's smallest equals its largest. A fixed number of passes without
  host sync, then one check (one sync) and more passes only where needed; should a pathological
  spread (e.g. geometric) not settle in ``MAX_PASSES``, those rows take the sort.
"""

from __future__ import annotations

import functools

import torch

SORT_FREE_MIN_B = 8192       # from this b on (per row) the sort-free bracketing is used (CPU crossover ~6e3)
FIXED_PASSES = 2             # passes before the (single) host-synchronising check
MAX_PASSES = 40


def clip(w: torch.Tensor, bounds) -> torch.Tensor:
    return w if bounds is None else w.clamp(bounds[0], bounds[1])


@torch.no_grad()
def row_root(z: torch.Tensor, a: torch.Tensor, target: torch.Tensor, bounds, dense: bool = False):
    """nu (N,) with ``a^T clip(z - nu a, lb, ub) = target``; z, a: (N, b), target: (N,).

    ``target`` must lie in the range of phi (the caller checked feasibility). Coordinates with
    ``a_i = 0`` contribute nothing (``dense=True`` promises there are none); for a row without support
    the result is meaningless and the caller masks it. Without a box: ``nu = (a^T z - target) / ||a||^2``.
    """
    if bounds is None:
        return ((a * z).sum(-1) - target) / (a * a).sum(-1)
    bp = _Breakpoints(z, a, bounds, dense)
    if z.shape[-1] >= SORT_FREE_MIN_B:
        L, R, ok = _bracket_buckets(bp, target)
        if ok is not None:                                   # rows that did not settle: sort them
            Ls, Rs = _bracket_sorted(bp, target)
            L, R = torch.where(ok, L, Ls), torch.where(ok, R, Rs)
    else:
        L, R = _bracket_sorted(bp, target)
    return bp.solve(target, L, R)


@functools.lru_cache(maxsize=64)
def _constants(lb: float, ub: float, dtype, device):
    """Device constants of the search (built once per box, dtype and device: no host->device copy per call):
    (hi, lo) columns (2, 1) for a > 0 and for a <= 0, the sign columns +-(1, -1) of (entering, leaving)
    and the (-inf, +inf) pair."""
    t = functools.partial(torch.tensor, dtype=dtype, device=device)
    return (t([[ub], [lb]]), t([[lb], [ub]]), t([[1.0], [-1.0]]), t([[-1.0], [1.0]]),
            t([-float("inf"), float("inf")]))


class _Breakpoints:
    """The 2b breakpoints of each row and what crossing them changes in phi (see the module docstring),
    stacked (N, 2, b) as (entering, leaving): ``e`` = (nu_in, nu_out), ``hl`` = (hi, lo), ``ahl = a hl``,
    ``d`` = intercept changes (a z - a hi, a lo - a z), ``s`` = slope changes (-a^2, +a^2).

    A coordinate with a_i = 0 gets the (finite, harmless) breakpoints z_i - lb, z_i - ub and no change.
    """

    def __init__(self, z, a, bounds, dense: bool):
        hl_pos, hl_neg, sign, minus_sign, self.infs = _constants(bounds[0], bounds[1], z.dtype, z.device)
        a3 = a[:, None, :]
        hl = torch.where(a3 > 0, hl_pos, hl_neg)
        sa = a3 if dense else torch.where(a3 != 0, a3, 1.0)
        self.e = torch.sub(z[:, None, :], hl).div_(sa)               # free on (nu_in, nu_out)
        self.az, self.a2, self.ahl = a * z, a * a, hl.mul_(a3)       # (in place: fewer fresh buffers)
        self.d = torch.sub(self.az[:, None, :], self.ahl).mul_(sign)
        self.s = self.a2[:, None, :] * minus_sign
        self.phi_min_inf = self.ahl[:, 0].sum(-1)                     # phi(nu) below every breakpoint

    def solve(self, target, L, R):
        """The root on a bracket (L, R) holding no breakpoint strictly inside: phi is linear there and its
        free set is read at L (coordinates whose breakpoint equals L have crossed it); fresh sums."""
        crossed = self.e > L[:, None, None]                           # (nu_in > L, nu_out > L)
        hi_state = crossed[:, 0]
        free = crossed[:, 1] & ~hi_state
        at_bound = torch.where(hi_state, self.ahl[:, 0], self.ahl[:, 1])
        num = torch.where(free, self.az, at_bound).sum(-1) - target
        den = torch.where(free, self.a2, 0.0).sum(-1)
        sloped = den > 0
        nu = torch.clamp(num / torch.where(sloped, den, 1.0), L, R)
        flat = torch.where(L > -float("inf"), L, R)        # phi constant on the piece: its finite end
        return torch.where(sloped, nu, flat)


def _bracket_sorted(bp: _Breakpoints, target):
    """Sort the breakpoints, accumulate the changes: (L, R) around the first breakpoint with phi <= target."""
    N = bp.e.shape[0]
    ev, order = torch.sort(bp.e.flatten(1), dim=-1)     # ties: any order (continuity)
    alpha = bp.d.flatten(1).gather(-1, order).cumsum(-1)
    beta = bp.s.flatten(1).gather(-1, order).cumsum(-1)
    # phi at each breakpoint (continuous) = phi_min_inf + alpha + beta ev; nonincreasing, so the first
    # breakpoint with phi <= target is number k (0-based) and the bracket is (ev[k - 1], ev[k]), padded
    k = (torch.addcmul(alpha, beta, ev) > (target - bp.phi_min_inf)[:, None]).sum(-1, keepdim=True)
    padded = torch.cat([bp.infs[:1].expand(N, 1), ev, bp.infs[1:].expand(N, 1)], -1)
    return padded.gather(-1, k).squeeze(-1), padded.gather(-1, k + 1).squeeze(-1)


def _n_buckets(b: int) -> int:
    """K with two passes usually enough: 2b breakpoints / K^2 = 0.01."""
    return int(min(65536, max(256, (200 * b) ** 0.5)))


def _bracket_buckets(bp: _Breakpoints, target):
    """Sort-free bracketing (module docstring). Returns (L, R, ok): ok is None when every row settled,
    else the (N,) mask of the rows that did (the caller sorts the others).

    One pass, bracket (L, R) (before the first: the smallest / largest breakpoint, Le / Re), K buckets:
    ``bucket(e) = clamp(ceil((e - Le) K / (Re - Le)), 0, K) + (e >= Re)``, monotone in e (every floating
    operation is), 0 exactly for e <= Le, K + 1 exactly for e >= Re. phi's intercept and slope just right
    of L (``base``) are carried from pass to pass; with ``m_j`` the largest breakpoint in buckets 0..j,
    ``phi(m_j) = base_alpha + base_beta m_j + sum_{buckets 1..j} (d_alpha + d_beta m_j)`` (continuity;
    bucket 0, the breakpoints <= L, is in the base, except in the first pass where L = -inf). j = the first
    bucket with phi(m_j) <= target; new bracket (m_{j-1}, m_j) intersected with the old one, settled when
    bucket j's smallest breakpoint equals its largest (nothing strictly inside), or j is an end bucket
    (0, K + 1: nothing of the old bracket beyond it), or no bucket reaches the target. The sums are kept
    in float64 (a float32 sum of many breakpoints' changes could pick a wrong bucket).
    """
    e = bp.e.flatten(1)                           # (N, 2b): entering, then leaving
    N, b = e.shape[0], e.shape[1] // 2
    K = _n_buckets(b)
    dt, dev, f64 = e.dtype, e.device, torch.float64
    d_alpha, d_beta = bp.d.flatten(1).to(f64), bp.s.flatten(1).to(f64)
    inf = bp.infs[1]
    gmin, gmax = e.amin(-1), e.amax(-1)
    L, R = -inf.expand(N).clone(), inf.expand(N).clone()
    base_a, base_b = bp.phi_min_inf.to(f64), torch.zeros(N, dtype=f64, device=dev)
    done = ~(torch.isfinite(gmin) & torch.isfinite(gmax))       # a row without support (dense): masked
    tmp = torch.empty_like(e)
    idx = torch.empty(N, 2 * b, dtype=torch.int64, device=dev)
    big = torch.finfo(dt).max
    t = target.to(f64)[:, None]
    zero_col = torch.zeros(N, 1, dtype=f64, device=dev)
    for p in range(MAX_PASSES):
        if p >= FIXED_PASSES and bool(done.all()):         # the one host sync (more only if needed)
            return L, R, None
        Le = torch.where(torch.isfinite(L), L, gmin)[:, None]
        Re = torch.where(torch.isfinite(R), R, gmax)[:, None]
        scale = torch.where(Re > Le, K / (Re - Le), 1.0).clamp_max(big)     # finite, > 0: no NaN below
        S = torch.zeros(2, N, K + 2, dtype=f64, device=dev)     # sums of the intercept / slope changes
        M = torch.empty(2, N, K + 2, dtype=dt, device=dev)      # largest, smallest breakpoint
        M[0].fill_(-float("inf"))
        M[1].fill_(float("inf"))
        torch.sub(e, Le, out=tmp).mul_(scale).ceil_().clamp_(0, K).nan_to_num_(0.0)
        idx.copy_(tmp)
        idx += e >= Re
        S[0].scatter_add_(1, idx, d_alpha)
        S[1].scatter_add_(1, idx, d_beta)
        M[0].scatter_reduce_(1, idx, e, "amax")
        M[1].scatter_reduce_(1, idx, e, "amin")
        S[:, :, 0] *= ~torch.isfinite(L)                          # bucket 0 is in the base once L is set
        cum_a, cum_b = S[0].cumsum(1), S[1].cumsum(1)
        m = M[0].cummax(1).values
        m64 = m.to(f64)
        phi = torch.where(m > -inf, base_a[:, None] + cum_a + (base_b[:, None] + cum_b) * m64,
                          base_a[:, None])
        reach = phi <= t
        j = torch.where(reach.any(1), reach.to(torch.uint8).argmax(1), K + 2)[:, None]
        mx = torch.cat([-inf.expand(N, 1), m, inf.expand(N, 1)], 1)   # m_{j-1} = mx[j], m_j = mx[j + 1]
        L_new, R_new = mx.gather(1, j).squeeze(1), mx.gather(1, j + 1).squeeze(1)
        R_new = torch.where(R_new > -inf, R_new, gmin)                  # at or below the smallest one
        jc = j.clamp_max(K + 1)
        settled = (j.squeeze(1) == 0) | (j.squeeze(1) >= K + 1) | (
            M[1].gather(1, jc) >= M[0].gather(1, jc)).squeeze(1)
        move = ~done & (L_new > L)                                      # the base follows L
        base_a = torch.where(move, base_a + torch.cat([zero_col, cum_a], 1).gather(1, j).squeeze(1), base_a)
        base_b = torch.where(move, base_b + torch.cat([zero_col, cum_b], 1).gather(1, j).squeeze(1), base_b)
        L = torch.where(move, L_new, L)
        R = torch.where(done, R, torch.minimum(R, R_new))
        done = done | settled
    return L, R, done


def coefficients(prob):
    """Per-coordinate row coefficient a (P, b) and row id (P, b) of a separable problem (None: one row)."""
    coef_cell = prob.W.sum(1).expand(prob.P, prob.C)            # one nonzero row per cell
    a = coef_cell.gather(1, prob.cell)
    return a, (None if prob.m == 1 else prob.rowof[prob.cell])


def spread(x: torch.Tensor, rowid) -> torch.Tensor:
    """Per-row values x (P, m) -> each coordinate's row value, (P, b) (or (P, 1) for one row)."""
    return x if rowid is None else x.gather(1, rowid)


def per_row(a: torch.Tensor, rowid, m: int) -> torch.Tensor:
    """(P, b) coefficients -> (P, m, b), row r keeping only its own support."""
    if rowid is None:
        return a[:, None, :]
    r = torch.arange(m, device=a.device)[None, :, None]
    return torch.where(rowid[:, None, :] == r, a[:, None, :], torch.zeros((), dtype=a.dtype, device=a.device))


class RowProject(torch.autograd.Function):
    r"""``y = clip(z - nu[row] a, lb, ub)`` for rows with disjoint supports, with the analytic VJP.

    Inputs: z (P, b); par (P,) the differentiable scalar of each problem (eps, or lam for the penalized
    step); A (P, m, b) the rows; a, rowid (P, b) each coordinate's coefficient and row (None: one row);
    nu (P, m) the exact multipliers (no grad); solve (P, m) rows whose nu solves
    ``a_F^T y_F = t - a_X^T y_X`` on the final free set F (active projection rows, penalized rows strictly
    inside +-lam/2); dt (P, m) = dt/dpar of those rows' target (the side +-1 for eps, 0 for lam);
    dnu (P, m) = dnu/dpar of the other rows (+-1/2 for clipped penalized rows, else 0). On F,
    ``nu = (a_F^T z_F + a_X^T y_X - t) / ||a_F||^2``, so

        J = diag(1_F) (I - sum_{solved r} a_F a_F^T / ||a_F||^2) diag(1_F)      (claim L3's projector)
        dy_F / dpar = -a_F dnu_r/dpar,  dnu_r/dpar = -dt_r / ||a_F||^2 (solved) or dnu_r (others).

    The backward is written in torch ops of the cotangent, so double backward works (and is 0 in z).
    """

    @staticmethod
    def forward(ctx, z, par, A, a, rowid, nu, solve, dt, dnu, bounds):
        with torch.no_grad():
            w = torch.addcmul(z, spread(nu, rowid), a, value=-1.0)
            if bounds is None:
                free = torch.ones_like(w, dtype=torch.bool)
            else:
                free = (w > bounds[0]) & (w < bounds[1])
            den = (A * A * free[:, None, :]).sum(-1)
            ok = solve & (den > 0)
            den = torch.where(ok, den, 1.0)
        ctx.save_for_backward(A, a, rowid, free, den, ok, dt, dnu)
        return clip(w, bounds)

    @staticmethod
    def backward(ctx, v):
        A, a, rowid, free, den, ok, dt, dnu = ctx.saved_tensors
        vF = torch.where(free, v, 0.0)
        S = (A * vF[:, None, :]).sum(-1)                                    # a_F^T v_F per row
        coef = torch.where(ok, S / den, 0.0)
        grad_z = vF - torch.where(free, a * spread(coef, rowid), 0.0)
        grad_par = None
        if ctx.needs_input_grad[1]:
            dnu_dpar = torch.where(ok, -dt / den, dnu)
            grad_par = -(S * dnu_dpar).sum(1)
        return grad_z, grad_par, None, None, None, None, None, None, None, None
