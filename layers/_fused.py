r"""Fused (Triton) forward of the dp layer with one attribute: a few passes over z, no sort.

The problem (``layers.project``, metric "dp", one binary attribute, P problems of size b) has one row
``a_i = 1/n_0`` on group 0 and ``-1/n_1`` on group 1, and its solution is ``y = clip(z - nu a, lb, ub)``
with nu the root of ``phi(nu) = a^T clip(z - nu a, lb, ub) = t`` (t = +eps above the band, -eps below;
nu = 0 inside). The eager layer builds the rows and the 2b breakpoints as tensors and sorts or buckets
them: about 120 copies of z in memory traffic at b = 1e6. Here every pass is one kernel that reads z and
the group labels once (``BLOCK`` coordinates per program, partial sums per program, no atomics but one
counter per gather):

1. ``_stats``: group sizes, sums of clip(z) per group (float64: phi(0)), the extreme z per group (the
   range of the breakpoints ``e_in = (z - hi) r``, ``e_out = (z - lo) r``, r = 1/a), and the counts of
   non-finite z and non-binary labels.
2. ``_evaluate`` (repeated): phi at K points of the current bracket (L, R) and, per point, the number of
   breakpoints below it (``< nu`` and ``<= nu``); phi(L) > t >= phi(R) picks the new bracket. It stops
   when at most ``capacity`` breakpoints lie strictly inside (an exact count, not an estimate).
3. ``_gather``: the coordinates with a breakpoint strictly inside (L, R) are written to a buffer; every
   other coordinate has one state on all of (L, R) (at hi, free or at lo), and the kernel returns the sums
   ``C = sum a bound + sum_free a z`` and ``S = sum_free a^2`` (float64), so that on (L, R)
   ``phi(nu) = C - S nu + phi_U(nu)``.
4. The gathered few (``U``) are solved exactly by the sorted search of :mod:`layers._rows` with that
   linear part added (``_Breakpoints.restrict``): the last linear piece is solved from fresh sums, as in
   the eager layer, so the result is exact to round-off.
5. ``_output``: ``y = clip(z - nu a, lb, ub)``.

Passes over z: 1 + (usually 2) + 1 + 1 (write), about 64 bytes per float32 coordinate with int64
labels, i.e. 8 copies of z; the eager layer moves ~120 copies. Each ``_evaluate`` does K clip-evaluations
per coordinate (float64 partial sums), so it is compute-bound unless K is small: K = 16.

Only the forward is fused; with a gradient requirement the output goes through
:class:`layers._rows.RowProject` (the same analytic backward as the eager layer). Triton kernels run on
CUDA; with Triton's interpreter on (:func:`interpreting`) they run on CPU tensors (the tests without a GPU).
"""

from __future__ import annotations

import functools

import torch

from layers._problem import (
    _aux_tensor,
    _split_groups,
    as_z,
    build_problem,
    check_bounds,
    resolve_device,
    scalar_or_batch,
)
from layers._rows import RowProject, _bracket_sorted, _Breakpoints

K = 16              # points per evaluation pass
BLOCK = 1024        # coordinates per program
CAPACITY = 1 << 16  # gather when at most this many breakpoints lie strictly inside the bracket
MAX_PASSES = 64     # uniform passes shrink the bracket by K + 1 each: float64 runs out of digits by ~14


def available() -> bool:
    """Triton importable (it ships with CUDA builds of torch)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    """Triton's interpreter is on (``TRITON_INTERPRET=1`` before triton is imported): the kernels then run
    on CPU tensors, slowly (tests without a GPU)."""
    import triton
    return bool(triton.knobs.runtime.interpret)


@functools.lru_cache(maxsize=1)
def _kernels():
    from layers import _fused_kernels as k  # imports triton
    return k.stats, k.evaluate, k.gather, k.output


def _grid(P: int, b: int) -> tuple[int, int]:
    return (-(-b // BLOCK), P)


def _table(n1: torch.Tensor, b: int, bounds, dt) -> torch.Tensor:
    """(P, 8) per-problem constants of the kernels: (a0, a1, r0, r1, hi0, hi1, lo0, lo1), as the eager
    layer computes them (counts in z's dtype, a = +-1/n); an empty group gives a = r = 0 (row dropped)."""
    n0, n1 = (b - n1).to(dt), n1.to(dt)
    valid = (n0 > 0) & (n1 > 0)
    zero = torch.zeros_like(n0)
    a0 = torch.where(valid, 1.0 / n0.clamp_min(1), zero)
    a1 = torch.where(valid, -1.0 / n1.clamp_min(1), zero)
    r0, r1 = torch.where(valid, n0, zero), torch.where(valid, -n1, zero)
    lb, ub = bounds
    hl = [torch.full_like(n0, v) for v in (ub, lb, lb, ub)]      # group 0 has a > 0: hi = ub, lo = lb
    return torch.stack([a0, a1, r0, r1, *hl], 1).contiguous(), valid


def _initial_bracket(tab: torch.Tensor, zext: torch.Tensor):
    """Smallest entering and largest leaving breakpoint, from each group's extreme z (the breakpoints are
    monotone in z, computed with the kernels' operations): zext (P, 4) = (min0, max0, min1, max1)."""
    r0, r1, hi0, hi1, lo0, lo1 = tab[:, 2:].unbind(1)
    L0 = torch.minimum((zext[:, 0] - hi0) * r0, (zext[:, 3] - hi1) * r1)
    R0 = torch.maximum((zext[:, 1] - lo0) * r0, (zext[:, 2] - lo1) * r1)
    return L0, R0


def solve_dp(z: torch.Tensor, g: torch.Tensor, eps: torch.Tensor, bounds, *, capacity: int | None = None):
    """nu (P,), active (P,), up (P,) and the per-problem table of the dp layer with one attribute.

    z: (P, b) contiguous float32/float64; g: (G, b) labels (G in {1, P}; nonzero = group 1); eps: (P,);
    capacity: at most this many breakpoints inside the bracket before the gather (default ``CAPACITY``).
    """
    stats, evaluate, gather, _ = _kernels()
    capacity = CAPACITY if capacity is None else capacity
    P, b = z.shape
    dt, dev, f64 = z.dtype, z.device, torch.float64
    inf = float("inf")
    lb, ub = bounds if bounds is not None else (-inf, inf)
    consts = torch.tensor([lb, ub, inf], dtype=dt, device=dev)
    grid, g_ps = _grid(P, b), (0 if g.shape[0] == 1 else b)
    nblk = grid[0]
    out_f = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    out_i = torch.empty(P, nblk, dtype=torch.int32, device=dev)
    out_m = torch.empty(P, nblk, 4, dtype=dt, device=dev)
    stats[grid](z, g, consts, out_f, out_i, out_m, b, b, g_ps, BLOCK=BLOCK)
    sums = out_f.sum(1)
    n1 = out_i.sum(1, dtype=torch.int64)
    tab, valid = _table(n1, b, (lb, ub), dt)
    a0, a1 = tab[:, 0].to(f64), tab[:, 1].to(f64)
    phi0 = a0 * sums[:, 0] + a1 * sums[:, 1]                       # a^T clip(z)
    e64 = eps.detach().to(f64)
    up = phi0 > e64
    active = (up | (phi0 < -e64)) & valid
    t = torch.where(up, e64, -e64)
    if bounds is None:                                             # closed form
        n0f, n1f = (b - n1).to(f64), n1.to(f64)
        nu = (phi0 - t) / torch.where(valid, a0 * a0 * n0f + a1 * a1 * n1f, 1.0)
        return torch.where(active, nu, 0.0), active, up, tab
    zext = torch.stack([out_m[:, :, 0].amin(1), out_m[:, :, 1].amax(1), out_m[:, :, 2].amin(1),
                        out_m[:, :, 3].amax(1)], 1)
    finite = torch.isfinite(zext)
    zmax = torch.where(finite, zext.abs().to(f64), 0.0).amax(1)
    scale = (zmax, torch.maximum(a0.abs(), a1.abs()), torch.full_like(zmax, max(abs(lb), abs(ub))))
    L0, R0 = _initial_bracket(tab, zext)
    L, R = _bracket(z, g, consts, tab, t, active, up, scale, L0, R0, evaluate, grid, g_ps, capacity)
    # everything off (L, R): one state on the whole bracket, summed; the few inside: gathered
    L, R = torch.where(active, L, 0.0), torch.where(active, R, 0.0)    # inactive: empty bracket
    part = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    count = torch.zeros(P, dtype=torch.int32, device=dev)
    buf = torch.empty(P, capacity, dtype=torch.int32, device=dev)
    gather[grid](z, g, tab, torch.stack([L, R], 1).contiguous(), part, count, buf, b, b, g_ps, capacity,
                 BLOCK=BLOCK)
    C, S = part.sum(1).unbind(1)
    u = int(count.max())                                            # a host sync
    if u > capacity:
        raise RuntimeError(f"fused dp layer: {u} coordinates inside the bracket exceed the capacity "
                           f"{capacity} that the evaluation count allowed (a kernel defect)")
    pos = torch.arange(u, device=dev)
    idx = torch.where(pos < count[:, None], buf[:, :u].to(torch.int64), b).sort(1).values  # deterministic
    keep = idx < b
    idx = idx.clamp_max(b - 1)
    zU = z.gather(1, idx).to(f64)
    oneU = g.expand(P, b).gather(1, idx) != 0
    aU = torch.where(keep, torch.where(oneU, a1[:, None], a0[:, None]), 0.0)
    bp = _Breakpoints(zU, aU, bounds, dense=False)
    bp.restrict(L.to(f64), R.to(f64), C, S)
    lo, hi = _bracket_sorted(bp, t)
    nu = bp.solve(t, lo, hi)
    _check_bracket(zU, aU, bounds, C, S, L.to(f64), R.to(f64), t, active, scale)
    return torch.where(active, nu, 0.0), active, up, tab


def _check_bracket(zU, aU, bounds, C, S, L, R, t, active, scale):
    """Raise unless phi(L) >= t >= phi(R) in fresh float64 sums (phi = C - S nu + a_U^T clip(z_U - nu a_U) on
    [L, R]), up to float64 round-off (1024 u64 (zmax + ymax + 1)): a bracket that lost the root would give
    a wrong nu silently (the final clamp to [L, R]); the certified selection makes it a defect."""
    def phi(nu):
        nu = torch.where(torch.isfinite(nu), nu, 0.0)
        return C - S * nu + (aU * (zU - nu[:, None] * aU).clamp(*bounds)).sum(1)
    tol = 1024 * (torch.finfo(torch.float64).eps / 2) * (scale[0] + scale[2] + 1)
    ok = (~torch.isfinite(L) | (phi(L) >= t - tol)) & (~torch.isfinite(R) | (phi(R) <= t + tol))
    if not bool((ok | ~active).all()):                                # a host sync
        raise RuntimeError("fused dp layer: the bracket does not hold the root (phi(L) < t or phi(R) > t "
                           "in fresh float64 sums): a defect of the evaluation pass or its error bound")


def _eval_error(nu: torch.Tensor, scale, dt) -> torch.Tensor:
    """Bound on |phi~(nu) - phi(nu)|, the ``_evaluate`` kernel's value against the exact one, (P, n).

    Per coordinate the kernel rounds nu a, z - nu a and a y in z's dtype (unit round-off u; the clip is
    exact): |a| u (|z| + 2 |nu a| + |y|) to first order; summed with sum |a| = 2 (dp): 2 u (zmax + 2 |nu| amax
    + ymax); the float64 sums add <= (log2 b + 2) u64 sum |a y| <= 64 u64 2 ymax. Doubled. scale = (zmax,
    amax, ymax), each (P,)."""
    zmax, amax, ymax = (x[:, None] for x in scale)
    u = torch.finfo(dt).eps / 2
    fin = torch.where(torch.isfinite(nu), nu.abs().to(torch.float64), 0.0)
    return 4 * u * (zmax + 2 * fin * amax + ymax) + 256 * (torch.finfo(torch.float64).eps / 2) * (zmax + ymax)


def _bracket(z, g, consts, tab, t, active, up, scale, L0, R0, evaluate, grid, g_ps, capacity):
    """(L, R) with phi(L) > t >= phi(R) and at most ``capacity`` breakpoints strictly inside: K-point
    evaluation passes (the first on [L0, R0], then around the secant estimate of the root in the bracket).
    up (P,): phi(0) > t, so the root is >= 0 (else <= 0); scale: see :func:`_eval_error`."""
    P, b = z.shape
    dt, dev, f64 = z.dtype, z.device, torch.float64
    nblk = grid[0]
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    L, R = -inf.expand(P), inf.expand(P)
    cL = torch.zeros(P, dtype=torch.int64, device=dev)                # #{e <= L}
    cR = torch.full((P,), 2 * b, dtype=torch.int64, device=dev)      # #{e < R}
    # first pass: L0, R0 and K - 1 points evenly on the side of 0 that holds the root (phi(0) > t: nu > 0)
    zero = torch.zeros_like(L0)
    lo = torch.where(up, torch.minimum(torch.maximum(L0, zero), R0), L0)
    hi = torch.where(up, R0, torch.maximum(torch.minimum(R0, zero), L0))
    frac = torch.arange(K - 1, dtype=f64, device=dev) / (K - 2)
    even = (lo.to(f64)[:, None] + (hi - lo).to(f64)[:, None] * frac).to(dt)
    even[:, 0], even[:, -1] = lo, hi
    first = torch.where(up[:, None], torch.cat([L0[:, None], even], 1), torch.cat([even, R0[:, None]], 1))
    nu = torch.where(active[:, None], first, 0.0).contiguous()
    half = 2.0 ** -torch.arange(2, K + 1, 2, dtype=f64, device=dev)      # 1/4 ... 2^-K
    spread = torch.cat([-half, half.flip(0)])                         # sorted offsets around the estimate
    phi = torch.empty(P, nblk, K, dtype=f64, device=dev)
    cnt = torch.empty(P, nblk, K, 2, dtype=torch.int32, device=dev)
    big = torch.tensor(float("inf"), dtype=f64, device=dev).expand(P, 1)
    searching = torch.ones(P, dtype=torch.bool, device=dev)
    idx = torch.arange(K + 2, device=dev)
    for _ in range(MAX_PASSES):
        evaluate[grid](z, g, consts, tab, nu, phi, cnt, b, b, g_ps, K=K, BLOCK=BLOCK)
        c = cnt.sum(1, dtype=torch.int64)                              # (P, K, 2): #{e < nu}, #{e <= nu}
        pts = torch.cat([L[:, None], nu, R[:, None]], 1)
        vals = torch.cat([big, phi.sum(1), -big], 1)
        lt = torch.cat([cL[:, None], c[:, :, 0], cR[:, None]], 1)
        le = torch.cat([cL[:, None], c[:, :, 1], cR[:, None]], 1)
        # certified: phi(L) > t >= phi(R) for the exact phi despite the evaluation's round-off
        err = _eval_error(pts, scale, dt)
        jR = (vals + err <= t[:, None]).to(torch.uint8).argmax(1, keepdim=True)    # vals[-1] = -inf
        above = (vals - err > t[:, None]) & (idx < jR)                             # vals[0] = +inf
        jL = torch.where(above, idx, 0).amax(1, keepdim=True)
        L = torch.where(searching, pts.gather(1, jL).squeeze(1), L)         # settled rows keep theirs
        R = torch.where(searching, pts.gather(1, jR).squeeze(1), R)
        cL = torch.where(searching, le.gather(1, jL).squeeze(1), cL)
        cR = torch.where(searching, lt.gather(1, jR).squeeze(1), cR)
        more = active & (cR - cL > capacity)
        if not bool(more.any()):                                       # a host sync per pass
            return L, R
        # next points: the secant estimate of the root in (L, R) and K points around it at distances
        # (R - L) 2^-2 ... 2^-K (clamped to the bracket): a piece of phi that is nearly linear at the scale of
        # the bracket (dense breakpoints) shrinks the bracket ~2^K-fold, any other ~4-fold or better
        fL = vals.gather(1, jL).squeeze(1)
        fR = vals.gather(1, jR).squeeze(1)
        L64, R64 = L.to(f64), R.to(f64)
        w = R64 - L64
        est = L64 + w * ((fL - t) / (fL - fR)).clamp(0, 1).nan_to_num(0.5)
        inner = torch.minimum(torch.maximum(est[:, None] + w[:, None] * spread, L64[:, None]), R64[:, None])
        nu = torch.where(more[:, None], inner.to(dt), 0.0).contiguous()
        searching = more
    raise RuntimeError(f"fused dp layer: the bracket did not narrow to {capacity} breakpoints in "
                       f"{MAX_PASSES} passes")


def output(z, g, bounds, nu, tab) -> torch.Tensor:
    """y = clip(z - nu a, lb, ub), (P, b), by the ``_output`` kernel."""
    *_, out = _kernels()
    P, b = z.shape
    inf = float("inf")
    lb, ub = bounds if bounds is not None else (-inf, inf)
    consts = torch.tensor([lb, ub], dtype=z.dtype, device=z.device)
    y = torch.empty_like(z)
    out[_grid(P, b)](z, g, consts, tab, nu.to(z.dtype).contiguous(), y, b, b, 0 if g.shape[0] == 1 else b,
                     BLOCK=BLOCK)
    return y


def project(z, groups, *, metric: str, eps, bounds, empty: str, device, check: bool) -> torch.Tensor:
    """``layers.project(..., fused=True)``: same arguments, errors and result (to round-off) as the eager
    layer, for dp (or dp_pairwise) with one attribute; CUDA only (or Triton's interpreter)."""
    if metric not in ("dp", "dp_pairwise"):
        raise ValueError(f"fused=True supports metric 'dp' (and 'dp_pairwise' with one attribute), "
                         f"got {metric!r}")
    if not available():
        raise ValueError("fused=True needs triton (the CUDA builds of torch ship it): pip install triton")
    if check:           # the eager layer's validation: the same errors, one sync (and a few passes over z)
        build_problem(z, groups, metric=metric, eps=eps, bounds=bounds, empty=empty, device=device,
                      check=True)
    zt = as_z(z, resolve_device(device))
    if zt.device.type != "cuda" and not interpreting():
        raise ValueError(f"fused=True runs Triton kernels on CUDA; z is on {zt.device} "
                         "(use fused=False, the default, on the CPU)")
    bounds = check_bounds(bounds)
    batch_shape, b = tuple(zt.shape[:-1]), zt.shape[-1]
    P = zt.numel() // b
    g, _ = _split_groups(_aux_tensor(groups, "groups", zt, floating=False), zt)
    if g.shape[2] != 1:
        raise ValueError(f"fused=True supports one attribute, got {g.shape[2]} (use fused=False)")
    g = g[..., 0].contiguous()
    if g.dtype == torch.bool:
        g = g.view(torch.uint8)
    eps_t = scalar_or_batch(eps, "eps", zt, batch_shape, P)
    z2 = zt.reshape(P, b)
    zc = z2.detach().contiguous()
    with torch.no_grad():
        nu, active, up, tab = solve_dp(zc, g, eps_t, bounds)
    if not (torch.is_grad_enabled() and (z2.requires_grad or eps_t.requires_grad)):
        return output(zc, g, bounds, nu, tab).reshape(zt.shape)
    with torch.no_grad():                    # the eager layer's analytic backward on the same solution
        a = torch.where(g != 0, tab[:, 1:2], tab[:, 0:1]).expand(P, b)
        side = torch.where(up, 1.0, -1.0).to(zt.dtype)[:, None]
    y = RowProject.apply(z2, eps_t, a[:, None, :], a, None, nu.to(zt.dtype)[:, None], active[:, None], side,
                         torch.zeros_like(side), bounds)
    return y.reshape(zt.shape)
