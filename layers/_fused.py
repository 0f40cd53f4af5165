r"""Fused (Triton) forward of the dp layer with one attribute: a few passes over z, no sort, exact.

The problem (``layers.project``, metric "dp", one binary attribute, P problems of size b) has one row
``a_i = 1/n_0`` on group 0 and ``-1/n_1`` on group 1, and its solution is ``y = clip(z - nu a, lb, ub)``
with nu the root of ``phi(nu) = a^T clip(z - nu a, lb, ub) = t`` (t = +eps above the band, -eps below;
nu = 0 inside). The eager layer builds the rows and the 2b breakpoints as tensors and sorts or buckets
them: ~120 copies of z in memory traffic at b = 1e6 (``python -m bench.dispatch_model``). Here each pass
is one kernel (:mod:`layers._fused_kernels`; ``BLOCK`` coordinates per program walked in chunks with
elementwise accumulators, per-program partial results, no atomics but one counter per gather) that reads
z and the labels once:

1. ``stats``: group sizes, sums of clip(z) per group (float64: phi(0)), the extreme z per group (the
   range of the breakpoints ``e_in = (z - hi) r``, ``e_out = (z - lo) r``, r = 1/a); writes the labels as
   one byte each, which the later passes read (5 bytes per float32 coordinate instead of 12).
2. ``evaluate`` (repeated): phi at K points and, per point, the number of breakpoints below it. The
   first pass spreads the points over the root's side of 0, the next ones around the secant estimate of
   the root in the bracket. The new bracket (L, R) has phi(L) > t >= phi(R) for the
   exact phi, not only for the evaluated one (:func:`_eval_error` bounds the kernel's round-off). It
   stops when at most ``CAPACITY`` breakpoints lie in [L, R) (an exact count, a bound on those strictly
   inside), or no float lies strictly inside (many tied breakpoints at L), or a pass did not lower the
   count (phi within round-off of t on the rest of the bracket, e.g. flat at t: no pass can resolve it).
3. ``gather``: the coordinates with a breakpoint strictly inside (L, R) are written to a buffer; every
   other coordinate has one state on all of (L, R) (at hi, free or at lo), and the kernel returns the sums
   ``C = sum a bound + sum_free a z`` and ``S = sum_free a^2`` (float64), so that on (L, R)
   ``phi(nu) = C - S nu + phi_U(nu)``.
4. :func:`_finish`, on the host: the gathered few are solved exactly by the reference's sorted search
   (``reference.projection.row_value_root`` with that linear part and the bracket as ends); the last linear
   piece is solved from fresh sums, as in the eager layer, so the result is exact to round-off (in
   float64, so a float32 output is within 12 u32 (1 + max|z|), independent of b: tests/test_fused.py).
   A fresh-sum check that [L, R] holds the root raises otherwise.
5. ``output``: ``y = clip(z - nu a, lb, ub)``.

The decisions between kernels run on the host (numpy on (P, K) arrays; one transfer each way per pass).
Traffic, measured by ``python -m bench.dispatch_model --fused --sizes 1e5 --capacity 2`` (the kernels'
tensor arguments; the capacity scaled to b = 1e8's ratio; the benchmark's data): 2 evaluation passes, 4.6
copies of z (stats 1.6 with int64 labels, each evaluation 0.6, gather 0.6, output 1.1; the eager layer:
~117), ~43 other device kernels on small tensors, 1 + passes + 2 host syncs. Passes at that ratio on five
distributions (emulated at b = 1e6 and 1e7, ``python -m bench.fused_passes``): 2. Arithmetic, from the
compiled kernels' SASS (``python -m bench.compile_fused``, sm_90): ``evaluate``'s loop costs ~13
instructions per point and coordinate, so a pass is issue-bound (~0.3 ms at b = 1e8 with K = 8 on an
H200, ~2.5x its memory time); K = 8 keeps 2 passes on that data at half the cost of K = 16.

Only the forward is fused; with a gradient requirement the output goes through
:class:`layers._rows.RowProject` (the same analytic backward as the eager layer). Triton kernels run on
CUDA; with Triton's interpreter on (:func:`interpreting`) they run on CPU tensors (the tests without a GPU).
"""

from __future__ import annotations

import functools

import numpy as np
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
from layers._rows import RowProject
from reference.projection import row_value_root

K = 8               # points per evaluation pass (see the docstring: the pass is issue-bound, ~13 instructions
                    # per point and coordinate; 8 points keep b = 1e8 at 2 passes on the test data)
BLOCK = 4096        # coordinates per program
CHUNK = 512        # ... walked in chunks of this many (stats, gather, output)
CAPACITY = 2048     # gather when at most this many breakpoints lie in the bracket (the host sorts them)
MAX_PASSES = 64     # a safety stop: passes end when the count stops dropping, 1-2 passes on ordinary data


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


def _sub() -> int:
    """Coordinates per chunk of the evaluation kernel: a (K, SUB) tile of 2048 (a multiple of 8)."""
    return max(8, 2048 // K)


def _grid(P: int, b: int) -> tuple[int, int]:
    return (-(-b // BLOCK), P)


def _np(dt: torch.dtype):
    return np.float32 if dt == torch.float32 else np.float64


def _table(n1: np.ndarray, b: int, bounds, nd) -> tuple[np.ndarray, np.ndarray]:
    """(P, 8) per-problem constants of the kernels, (a0, a1, r0, r1, hi0, hi1, lo0, lo1), in z's dtype ``nd``
    as the eager layer rounds them (a = +-1/n of the counts in that dtype; r = 1/a = +-n); and valid (P,).
    An empty group gives a = r = 0 (row dropped)."""
    n0, n1 = (b - n1).astype(nd), n1.astype(nd)
    valid = (n0 > 0) & (n1 > 0)
    one = nd(1)
    a0 = np.where(valid, one / np.maximum(n0, one), 0).astype(nd)
    a1 = np.where(valid, -one / np.maximum(n1, one), 0).astype(nd)
    r0, r1 = np.where(valid, n0, 0).astype(nd), np.where(valid, -n1, 0).astype(nd)
    lb, ub = bounds
    sides = [np.full_like(n0, v) for v in (ub, lb, lb, ub)]          # group 0 has a > 0: hi = ub, lo = lb
    return np.stack([a0, a1, r0, r1, *sides], 1), valid


def _initial_bracket(tab: np.ndarray, zext: np.ndarray):
    """Smallest entering and largest leaving breakpoint, from each group's extreme z (the breakpoints are
    monotone in z, computed with the kernels' operations): zext (P, 4) = (min0, max0, min1, max1)."""
    r0, r1, hi0, hi1, lo0, lo1 = tab[:, 2:].T
    with np.errstate(invalid="ignore"):          # an empty group (inf * 0): its problem is inactive
        L0 = np.minimum((zext[:, 0] - hi0) * r0, (zext[:, 3] - hi1) * r1)
        R0 = np.maximum((zext[:, 1] - lo0) * r0, (zext[:, 2] - lo1) * r1)
    return L0, R0


def _eval_error(nu: np.ndarray, scale, nd) -> np.ndarray:
    """Bound on |phi~(nu) - phi(nu)|, the ``evaluate`` kernel's value against the exact one, (P, n).

    Per coordinate the kernel rounds nu a, z - nu a and a y in z's dtype (unit round-off u; the clip is
    exact): |a| u (|z| + 2 |nu a| + |y|) to first order; summed with sum |a| = 2 (dp): 2 u (zmax + 2 |nu| amax
    + ymax). It adds the terms in sums of 8 in z's dtype (<= 7 u sum |a y| <= 14 u ymax), then in float64
    (<= (log2 b + 2) u64 sum |a y| <= 64 u64 2 ymax). Doubled. scale = (zmax, amax, ymax), each (P,)."""
    zmax, amax, ymax = (x[:, None] for x in scale)
    u, u64 = np.finfo(nd).eps / 2, np.finfo(np.float64).eps / 2
    fin = np.where(np.isfinite(nu), np.abs(nu.astype(np.float64)), 0.0)
    return 4 * u * (zmax + 2 * fin * amax + 8 * ymax) + 256 * u64 * (zmax + ymax)


def solve_dp(z: torch.Tensor, g: torch.Tensor, eps: torch.Tensor, bounds, *, capacity: int | None = None):
    """The multipliers of P dp problems with one attribute: (nu (P,) float64 numpy, active (P,), up (P,),
    tab (P, 8) on z's device, lab (G, b) uint8 labels on z's device).

    z: (P, b) contiguous float32/float64; g: (G, b) labels (G in {1, P}; nonzero = group 1); eps: (P,);
    capacity: at most this many breakpoints inside the bracket before the gather (default ``CAPACITY``).
    The kernels run on z's device; the small decisions between them run on the host (numpy: a few dozen
    operations on (P, K) arrays, and the exact finish on the gathered few), one transfer each way per pass.
    """
    stats, _, gather, _ = _kernels()
    capacity = CAPACITY if capacity is None else capacity
    P, b = z.shape
    dt, dev, f64 = z.dtype, z.device, torch.float64
    nd = _np(dt)
    inf = float("inf")
    lb, ub = bounds if bounds is not None else (-inf, inf)
    consts = torch.tensor([lb, ub, inf], dtype=dt, device=dev)
    grid = _grid(P, b)
    nblk = grid[0]
    lab_ps = 0 if g.shape[0] == 1 else b
    lab = torch.empty(g.shape, dtype=torch.uint8, device=dev)
    out_f = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    out_i = torch.empty(P, nblk, 3, dtype=torch.int32, device=dev)
    out_m = torch.empty(P, nblk, 4, dtype=dt, device=dev)
    stats[grid](z, g, lab, consts, out_f, out_i, out_m, b, lab_ps, BLOCK=BLOCK, CHUNK=CHUNK)
    host = torch.cat([out_f.sum(1), out_i.sum(1, dtype=torch.int64).to(f64),
                      out_m[:, :, 0::2].amin(1).to(f64), out_m[:, :, 1::2].amax(1).to(f64),
                      eps.detach().to(f64)[:, None]], 1).cpu().numpy()      # one transfer (a sync)
    sums, n1, nfree, e64 = host[:, 0:2], host[:, 2].astype(np.int64), host[:, 3:5], host[:, 9]
    zext = host[:, [5, 7, 6, 8]].astype(nd)                                 # (min0, max0, min1, max1)
    tab_np, valid = _table(n1, b, (lb, ub), nd)
    a0, a1 = tab_np[:, 0].astype(np.float64), tab_np[:, 1].astype(np.float64)
    phi0 = a0 * sums[:, 0] + a1 * sums[:, 1]                                # a^T clip(z)
    up = phi0 > e64
    active = (up | (phi0 < -e64)) & valid
    t = np.where(up, e64, -e64)
    tab = torch.as_tensor(tab_np, device=dev)
    if bounds is None:                                                     # closed form
        n0f, n1f = (b - n1).astype(np.float64), n1.astype(np.float64)
        nu = (phi0 - t) / np.where(valid, a0 * a0 * n0f + a1 * a1 * n1f, 1.0)
        return np.where(active, nu, 0.0), active, up, tab, lab
    zmax = np.where(np.isfinite(zext), np.abs(zext.astype(np.float64)), 0.0).max(1)
    scale = (zmax, np.maximum(np.abs(a0), np.abs(a1)), np.full(P, max(abs(lb), abs(ub))))
    L0, R0 = _initial_bracket(tab_np, zext)
    with np.errstate(all="ignore"):                  # Newton's step from 0 on phi's slope there
        newton = (phi0 - t) / (nfree[:, 0] * a0 * a0 + nfree[:, 1] * a1 * a1)
    L, R, inside = _bracket(z, lab, lab_ps, consts, tab, t, active, up, newton, scale, L0, R0, capacity)
    room = max(1, int(np.where(active, inside, 0).max()))          # >= the coordinates inside (L, R)
    # everything off (L, R): one state on the whole bracket, summed; the few inside: gathered
    L, R = np.where(active, L, 0).astype(nd), np.where(active, R, 0).astype(nd)   # inactive: empty bracket
    part = torch.empty(P, nblk, 2, dtype=f64, device=dev)
    count = torch.zeros(P, dtype=torch.int32, device=dev)
    buf = torch.empty(P, room, dtype=torch.int32, device=dev)
    tab64 = torch.as_tensor(tab_np.astype(np.float64), device=dev)
    gather[grid](z, lab, tab, tab64, torch.as_tensor(np.stack([L, R], 1), device=dev), part, count, buf, b,
                 lab_ps, room, BLOCK=BLOCK, CHUNK=CHUNK)
    host = torch.cat([part.sum(1), count[:, None].to(f64)], 1).cpu().numpy()   # a sync
    C, S, n_in = host[:, 0], host[:, 1], host[:, 2].astype(np.int64)
    u = int(n_in.max())
    if u > room:
        raise RuntimeError(f"fused dp layer: {u} coordinates inside the bracket exceed the {room} "
                           "breakpoints that the evaluation counted there (a kernel defect)")
    idx = buf[:, :u].to(torch.int64)
    idx = torch.where(torch.arange(u, device=dev) < count[:, None], idx, b)
    idx = idx.sort(1).values                                  # deterministic order (atomics fill buf)
    keep = idx < b
    idx = idx.clamp_max(b - 1)
    U = torch.cat([z.gather(1, idx).to(f64), lab.expand(P, b).gather(1, idx).to(f64), keep.to(f64)],
                  1).cpu().numpy()                            # the few inside, to the host
    zU, oneU, keepU = U[:, :u], U[:, u:2 * u] != 0, U[:, 2 * u:] != 0
    L64, R64 = L.astype(np.float64), R.astype(np.float64)
    nu = _finish(zU, oneU, keepU, a0, a1, t, L64, R64, C, S, bounds, active, scale)
    return np.where(active, nu, 0.0), active, up, tab, lab


def _finish(zU, oneU, keepU, a0, a1, t, L, R, C, S, bounds, active, scale) -> np.ndarray:
    """On the host: nu (P,) float64 from the gathered coordinates (zU, oneU = in group 1, keepU = not padding;
    (P, u) numpy) and the sums C, S of the others, exactly: ``reference.projection.row_value_root`` on
    [L, R] with the linear part C - S nu (sorted breakpoints, the last piece solved from fresh sums)."""
    aU = np.where(keepU, np.where(oneU, a1[:, None], a0[:, None]), 0.0)
    nu = np.zeros(len(t))
    for p in np.flatnonzero(active):
        nu[p] = row_value_root(zU[p], aU[p], t[p], bounds, linear=(C[p], S[p]), ends=(L[p], R[p]))
    _check_bracket(zU, aU, bounds, C, S, L, R, t, active, scale)
    return nu


def _check_bracket(zU, aU, bounds, C, S, L, R, t, active, scale):
    """Raise unless phi(L) >= t >= phi(R) in fresh float64 sums (phi = C - S nu + a_U^T clip(z_U - nu a_U) on
    [L, R]): a bracket that lost the root would give a wrong nu silently (the final clamp to [L, R]); the
    certified selection makes it a defect.

    Tolerance, float64 round-off: C, S nu and the gathered sum add <= b terms a_i w_i with |w_i| <= zmax +
    ymax (a bound, z, or z - nu a = y for a free coordinate) and sum |a_i| = 2, so each is within
    (log2 b + 2) u64 2 (zmax + ymax) <= 128 u64 (zmax + ymax) (b < 2^62); 1024 u64 (zmax + ymax + 1)
    leaves a factor 8 for adding the three (L and R, float32 or float64 values, are exact in float64)."""
    def phi(nu):
        nu = np.where(np.isfinite(nu), nu, 0.0)
        return C - S * nu + (aU * np.clip(zU - nu[:, None] * aU, *bounds)).sum(1)
    tol = 1024 * (np.finfo(np.float64).eps / 2) * (scale[0] + scale[2] + 1)
    with np.errstate(invalid="ignore"):
        ok = (~np.isfinite(L) | (phi(L) >= t - tol)) & (~np.isfinite(R) | (phi(R) <= t + tol))
    if not (ok | ~active).all():
        raise RuntimeError("fused dp layer: the bracket does not hold the root (phi(L) < t or phi(R) > t "
                           "in fresh float64 sums): a defect of the evaluation pass or its error bound")


def _bracket(z, lab, lab_ps, consts, tab, t, active, up, newton, scale, L0, R0, capacity):
    """(L, R, inside) (numpy; L, R in z's dtype) with phi(L) > t >= phi(R) and ``inside`` >= the number of
    breakpoints strictly inside, usually <= ``capacity``: K-point evaluation passes. The first: L0, R0 and
    K - 2 points on the side of 0 that holds the root (up = phi(0) > t: the root is >= 0), around Newton's
    step from 0 (``newton``; within ~1% of the root on the benchmark's data) at distances |newton| 4^-i / 4,
    i = 0 .. K/2 - 2, or evenly where there is no Newton step (nothing free at 0); the next ones around an
    estimate in the bracket (:func:`_next_points`). The selection is certified against the kernel's
    round-off (:func:`_eval_error`). t, active, up, newton, scale, L0, R0: numpy (P,)."""
    _, evaluate, _, _ = _kernels()
    P, b = z.shape
    dev, nd = z.device, _np(z.dtype)
    grid = _grid(P, b)
    inf = np.inf
    col = lambda x: x[:, None]
    L, R = np.full(P, -inf, nd), np.full(P, inf, nd)
    cL, cR = np.zeros(P, np.int64), np.full(P, 2 * b, np.int64)        # #{e < L}, #{e < R}
    lo = np.where(up, np.minimum(np.maximum(L0, 0), R0), L0).astype(nd)
    hi = np.where(up, R0, np.maximum(np.minimum(R0, 0), L0)).astype(nd)
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    even = lo64[:, None] + (hi64 - lo64)[:, None] * (np.arange(K - 2) / (K - 3))
    quarter = 4.0 ** -np.arange(1, K // 2)
    with np.errstate(invalid="ignore"):                 # no Newton step (inf, nan): the even points
        around = col(newton) + col(np.abs(newton)) * np.concatenate([-quarter, quarter[::-1]])
        inner = np.where(col(np.isfinite(newton)), np.minimum(np.maximum(around, col(lo64)), col(hi64)), even)
    first = np.concatenate([col(L0), inner.astype(nd), col(R0)], 1)
    nu = np.where(active[:, None], first, 0).astype(nd)
    phi = torch.empty(P, grid[0], K, dtype=torch.float64, device=dev)
    cnt = torch.empty(P, grid[0], K, dtype=torch.int32, device=dev)
    searching = np.ones(P, bool)
    inside = np.full(P, 2 * b + 1, np.int64)
    idx, rows = np.arange(K + 2), np.arange(P)
    for _ in range(MAX_PASSES):
        evaluate[grid](z, lab, consts, tab, torch.as_tensor(nu, device=dev), phi, cnt, b, lab_ps, K=K,
                       BLOCK=BLOCK, SUB=_sub())
        host = torch.cat([phi.sum(1), cnt.sum(1, dtype=torch.int64).to(torch.float64)],
                         1).cpu().numpy()                            # one transfer per pass (a sync)
        pts = np.concatenate([col(L), nu, col(R)], 1)
        vals = np.concatenate([np.full((P, 1), inf), host[:, :K], np.full((P, 1), -inf)], 1)
        lt = np.concatenate([col(cL), host[:, K:].astype(np.int64), col(cR)], 1)   # #{e < point}
        # certified: phi(L) > t >= phi(R) for the exact phi despite the evaluation's round-off
        err = _eval_error(pts, scale, nd)
        jR = np.argmax(vals + err <= col(t), 1)                         # vals[-1] = -inf
        jL = np.where((vals - err > col(t)) & (idx < col(jR)), idx, 0).max(1)   # vals[0] = +inf
        L = np.where(searching, pts[rows, jL], L)                       # settled rows keep theirs
        R = np.where(searching, pts[rows, jR], R)
        cL = np.where(searching, lt[rows, jL], cL)
        cR = np.where(searching, lt[rows, jR], cR)
        # #{L <= e < R} bounds the number strictly inside (breakpoints tied at L are counted too). Stop at
        # <= capacity, or when no float lies strictly inside (L, R) (ties), or when a pass did not lower the
        # count: the points left inside are those where phi is within the evaluation's round-off of t (e.g.
        # phi = t on a whole interval, all clipped), which more passes cannot resolve; the gather then takes
        # them all (its buffer is sized by the count)
        shrunk = cR - cL < inside
        inside = np.where(searching, cR - cL, inside)
        more = active & (inside > capacity) & (np.nextafter(L, R) < R) & shrunk
        if not more.any():
            return L, R, inside
        inner = _next_points(pts.astype(np.float64), vals, jL, jR, t)
        nu = np.where(more[:, None], inner, 0).astype(nd)
        searching = more
    raise RuntimeError(f"fused dp layer: the bracket did not narrow to {capacity} breakpoints in "
                       f"{MAX_PASSES} passes")


def _next_points(pts, vals, jL, jR, t) -> np.ndarray:
    """(P, K) points for the next pass in the bracket (L, R) = (pts[jL], pts[jR]): an estimate of the root
    and points around it at distances d 2^(1 - 2i), i = 0 .. K/2 - 1 (clamped to the bracket), where d is
    the estimate's likely error. Estimate: inverse quadratic interpolation of phi through L, R and the
    nearer evaluated neighbour (phi is nearly smooth at the scale of a bracket that holds many breakpoints),
    d = its distance to the secant estimate; where that fails (no finite neighbour, an estimate outside the
    bracket), the secant estimate with d = (R - L) / 4. Points are evaluated in any case, so a poor estimate
    costs a pass, never correctness."""
    P = pts.shape[0]
    rows = np.arange(P)
    L, R, fL, fR = pts[rows, jL], pts[rows, jR], vals[rows, jL], vals[rows, jR]
    with np.errstate(all="ignore"):
        w = R - L
        secant = L + w * np.nan_to_num(np.clip((fL - t) / (fL - fR), 0, 1), nan=0.5)
        jl, jr = np.maximum(jL - 1, 0), np.minimum(jR + 1, pts.shape[1] - 1)   # the neighbours outside
        left_ok = (jL > 0) & np.isfinite(vals[rows, jl])
        right_ok = (jR + 1 < pts.shape[1]) & np.isfinite(vals[rows, jr])
        nearer_right = right_ok & (~left_ok | (pts[rows, jr] - R < L - pts[rows, jl]))
        jN = np.where(nearer_right, jr, jl)
        xN, fN = pts[rows, jN], vals[rows, jN]
        y0, y1, y2 = fL - t, fR - t, fN - t                            # inverse interpolation nu(phi) at t
        iqi = (L * y1 * y2 / ((y0 - y1) * (y0 - y2)) + R * y0 * y2 / ((y1 - y0) * (y1 - y2))
               + xN * y0 * y1 / ((y2 - y0) * (y2 - y1)))
        ok = np.isfinite(iqi) & (iqi > L) & (iqi < R) & (left_ok | right_ok)
        est = np.where(ok, iqi, secant)
        d = np.where(ok, np.maximum(np.abs(iqi - secant), w * 2.0 ** -40), w / 4)
        half = 2.0 ** (1 - 2 * np.arange(K // 2))
        offsets = d[:, None] * np.concatenate([-half, half[::-1]])[None, :]
        return np.minimum(np.maximum(est[:, None] + offsets, L[:, None]), R[:, None])


def output(z, lab, bounds, nu: np.ndarray, tab) -> torch.Tensor:
    """y = clip(z - nu a, lb, ub), (P, b), by the ``output`` kernel; lab (G, b) from :func:`solve_dp`."""
    *_, out = _kernels()
    P, b = z.shape
    inf = float("inf")
    lb, ub = bounds if bounds is not None else (-inf, inf)
    consts = torch.tensor([lb, ub], dtype=z.dtype, device=z.device)
    y = torch.empty_like(z)
    out[_grid(P, b)](z, lab, consts, tab, torch.as_tensor(nu.astype(_np(z.dtype)), device=z.device), y, b,
                     0 if lab.shape[0] == 1 else b, BLOCK=BLOCK, CHUNK=CHUNK)
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
        nu, active, up, tab, lab = solve_dp(zc, g, eps_t, bounds)
    if not (torch.is_grad_enabled() and (z2.requires_grad or eps_t.requires_grad)):
        return output(zc, lab, bounds, nu, tab).reshape(zt.shape)
    with torch.no_grad():                    # the eager layer's analytic backward on the same solution
        a = torch.where(lab != 0, tab[:, 1:2], tab[:, 0:1]).expand(P, b)
        dev, dt = zt.device, zt.dtype
        side = torch.as_tensor(np.where(up, 1.0, -1.0), dtype=dt, device=dev)[:, None]
        nu_t = torch.as_tensor(nu, dtype=dt, device=dev)[:, None]
        solve = torch.as_tensor(active, device=dev)[:, None]
    y = RowProject.apply(z2, eps_t, a[:, None, :], a, None, nu_t, solve, side, torch.zeros_like(side), bounds)
    return y.reshape(zt.shape)
