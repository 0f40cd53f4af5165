"""Triton kernels of :mod:`layers._fused` (read its docstring): one program = ``BLOCK`` coordinates of one
problem (grid (blocks, P)), walked in chunks with elementwise accumulators (one cross-thread reduction per
program, not per chunk); per-program partial results, reduced by the caller. ``lab`` = the labels as
one byte each (written by ``stats``, read by the others); ``tab`` (P, 8) = (a0, a1, r0, r1, hi0, hi1,
lo0, lo1) per problem in z's dtype; ``c`` = (lb, ub, +inf) in z's dtype (no float32 rounding of a
Python-float kernel argument)."""

import triton
import triton.language as tl


@triton.jit
def _row(z_ptr, lab_ptr, tab_ptr, p, offs, b, lab_ps):
    """z, a, r = 1/a, hi, lo at coordinates ``offs`` of problem p (int64: p b may pass 2^31); coordinates
    past b get a = 0."""
    m = offs < b
    z = tl.load(z_ptr + p * b + offs, mask=m, other=0.0)
    one = tl.load(lab_ptr + p * lab_ps + offs, mask=m, other=0) != 0
    t = tab_ptr + p * 8
    a = tl.where(m, tl.where(one, tl.load(t + 1), tl.load(t + 0)), 0.0)
    r = tl.where(one, tl.load(t + 3), tl.load(t + 2))
    hi = tl.where(one, tl.load(t + 5), tl.load(t + 4))
    lo = tl.where(one, tl.load(t + 7), tl.load(t + 6))
    return m, z, a, r, hi, lo, one


@triton.jit
def stats(z_ptr, g_ptr, lab_ptr, c_ptr, out_f, out_i, out_m, b, g_ps,
          BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """Per program: sums of clip(z) per group (float64), the size of group 1 and the number of coordinates
    strictly inside the box per group, min and max z per group; writes lab = (g != 0) as one byte. The
    program's BLOCK coordinates in chunks of CHUNK, accumulated elementwise and reduced once at the end."""
    blk, p, nblk = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.num_programs(0)
    lb, ub, big = tl.load(c_ptr), tl.load(c_ptr + 1), tl.load(c_ptr + 2)        # big = +inf
    s0 = tl.zeros((CHUNK,), dtype=tl.float64)
    s1 = tl.zeros((CHUNK,), dtype=tl.float64)
    n1 = tl.zeros((CHUNK,), dtype=tl.int32)
    f0 = tl.zeros((CHUNK,), dtype=tl.int32)
    f1 = tl.zeros((CHUNK,), dtype=tl.int32)
    min0 = tl.full((CHUNK,), float("inf"), dtype=c_ptr.dtype.element_ty)
    max0 = -min0
    min1 = min0
    max1 = -min0
    for s in range(0, BLOCK, CHUNK):
        offs = blk * BLOCK + s + tl.arange(0, CHUNK)
        m = offs < b
        z = tl.load(z_ptr + p * b + offs, mask=m, other=0.0)
        g = tl.load(g_ptr + p * g_ps + offs, mask=m, other=0)
        tl.store(lab_ptr + p * g_ps + offs, (g != 0).to(tl.uint8), mask=m)
        in1 = m & (g != 0)
        in0 = m & (g == 0)
        zc = tl.minimum(tl.maximum(z, lb), ub).to(tl.float64)
        s0 += tl.where(in0, zc, 0.0)
        s1 += tl.where(in1, zc, 0.0)
        free = (z > lb) & (z < ub)
        n1 += in1.to(tl.int32)
        f0 += (in0 & free).to(tl.int32)
        f1 += (in1 & free).to(tl.int32)
        min0 = tl.minimum(min0, tl.where(in0, z, big))
        max0 = tl.maximum(max0, tl.where(in0, z, -big))
        min1 = tl.minimum(min1, tl.where(in1, z, big))
        max1 = tl.maximum(max1, tl.where(in1, z, -big))
    q = p * nblk + blk
    tl.store(out_f + 2 * q, tl.sum(s0, axis=0))
    tl.store(out_f + 2 * q + 1, tl.sum(s1, axis=0))
    tl.store(out_i + 3 * q, tl.sum(n1, axis=0))
    tl.store(out_i + 3 * q + 1, tl.sum(f0, axis=0))
    tl.store(out_i + 3 * q + 2, tl.sum(f1, axis=0))
    tl.store(out_m + 4 * q, tl.min(min0, axis=0))
    tl.store(out_m + 4 * q + 1, tl.max(max0, axis=0))
    tl.store(out_m + 4 * q + 2, tl.min(min1, axis=0))
    tl.store(out_m + 4 * q + 3, tl.max(max1, axis=0))


@triton.jit
def evaluate(z_ptr, lab_ptr, c_ptr, tab_ptr, nu_ptr, phi_ptr, cnt_ptr, b, lab_ps,
             K: tl.constexpr, BLOCK: tl.constexpr, SUB: tl.constexpr):
    """Per program and point nu_k: sum a clip(z - nu_k a) (float64) and #{e < nu_k} over the 2 breakpoints
    e = (z - hi) r, (z - lo) r of each coordinate; the program's BLOCK coordinates in chunks of SUB (a
    (K, SUB) tile: few registers per thread)."""
    blk, p, nblk = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.num_programs(0)
    lb, ub = tl.load(c_ptr), tl.load(c_ptr + 1)
    ks = tl.arange(0, K)
    nu = tl.load(nu_ptr + p * K + ks)[:, None]                       # (K, 1)
    # elementwise accumulators over the chunks, reduced across threads once at the end
    phi_acc = tl.zeros((K, SUB // 8), dtype=tl.float64)
    lt_acc = tl.zeros((K, SUB), dtype=tl.int32)
    for s in range(0, BLOCK, SUB):
        offs = blk * BLOCK + s + tl.arange(0, SUB)
        m, z, a, r, hi, lo, _ = _row(z_ptr, lab_ptr, tab_ptr, p, offs, b, lab_ps)
        ein = ((z - hi) * r)[None, :]
        eout = ((z - lo) * r)[None, :]
        y = tl.minimum(tl.maximum(z[None, :] - nu * a[None, :], lb), ub)
        # sums of 8 terms in z's dtype, then float64: 8 x fewer conversions (their throughput is low on
        # GPUs); the 8-term sums' round-off is in layers._fused._eval_error
        part = tl.sum(tl.reshape(a[None, :] * y, (K, SUB // 8, 8), can_reorder=True), axis=2)
        phi_acc += part.to(tl.float64)
        mm = m[None, :]
        lt_acc += (mm & (ein < nu)).to(tl.int32) + (mm & (eout < nu)).to(tl.int32)
    phi = tl.sum(phi_acc, axis=1)
    lt = tl.sum(lt_acc, axis=1)
    q = (p * nblk + blk) * K + ks
    tl.store(phi_ptr + q, phi)
    tl.store(cnt_ptr + q, lt)


@triton.jit
def gather(z_ptr, lab_ptr, tab_ptr, tab64_ptr, lr_ptr, sums_ptr, count_ptr, buf_ptr, b, lab_ps, cap,
           BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """Coordinates with a breakpoint strictly inside (L, R) of their problem -> buf (positions by one
    atomic counter per chunk that has any: most have none); per program: C = sum a bound + sum_free a z,
    S = sum_free a^2 (float64, from ``tab64``, the table in float64: one conversion per coordinate, of z)
    over the others, accumulated elementwise over the chunks and reduced once at the end."""
    blk, p, nblk = tl.program_id(0), tl.program_id(1).to(tl.int64), tl.num_programs(0)
    t64 = tab64_ptr + p * 8
    L = tl.load(lr_ptr + 2 * p)
    R = tl.load(lr_ptr + 2 * p + 1)
    c_acc = tl.zeros((CHUNK,), dtype=tl.float64)
    s_acc = tl.zeros((CHUNK,), dtype=tl.float64)
    for s in range(0, BLOCK, CHUNK):
        offs = blk * BLOCK + s + tl.arange(0, CHUNK)
        m, z, a, r, hi, lo, one = _row(z_ptr, lab_ptr, tab_ptr, p, offs, b, lab_ps)
        a64 = tl.where(m, tl.where(one, tl.load(t64 + 1), tl.load(t64 + 0)), 0.0)
        hi64 = tl.where(one, tl.load(t64 + 5), tl.load(t64 + 4))
        lo64 = tl.where(one, tl.load(t64 + 7), tl.load(t64 + 6))
        e_in = (z - hi) * r
        e_out = (z - lo) * r
        inside = m & (((e_in > L) & (e_in < R)) | ((e_out > L) & (e_out < R)))
        at_hi = ~inside & (e_in >= R)
        at_lo = ~inside & ~at_hi & (e_out <= L)
        free = ~inside & ~at_hi & ~at_lo
        bound = tl.where(at_hi, a64 * hi64, tl.where(at_lo, a64 * lo64, 0.0))
        c_acc += tl.where(free, a64 * z.to(tl.float64), bound)
        s_acc += tl.where(free, a64 * a64, 0.0)
        flag = inside.to(tl.int32)
        n = tl.sum(flag, axis=0)
        if n > 0:
            start = tl.atomic_add(count_ptr + p, n)
            pos = start + tl.cumsum(flag, axis=0) - 1
            tl.store(buf_ptr + p * cap + pos, offs, mask=inside & (pos < cap))
    q = p * nblk + blk
    tl.store(sums_ptr + 2 * q, tl.sum(c_acc, axis=0))
    tl.store(sums_ptr + 2 * q + 1, tl.sum(s_acc, axis=0))


@triton.jit
def output(z_ptr, lab_ptr, c_ptr, tab_ptr, nu_ptr, y_ptr, b, lab_ps,
           BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """y = clip(z - nu a, lb, ub)."""
    blk, p = tl.program_id(0), tl.program_id(1).to(tl.int64)
    lb, ub = tl.load(c_ptr), tl.load(c_ptr + 1)
    nu = tl.load(nu_ptr + p)
    for s in range(0, BLOCK, CHUNK):
        offs = blk * BLOCK + s + tl.arange(0, CHUNK)
        m, z, a, r, hi, lo, _ = _row(z_ptr, lab_ptr, tab_ptr, p, offs, b, lab_ps)
        y = tl.minimum(tl.maximum(z - nu * a, lb), ub)
        tl.store(y_ptr + p * b + offs, y, mask=m)
