r"""Algorithm 1 (online primal-dual fairness) in torch, vectorised over S independent streams.

Same algorithm, options and conventions as ``reference.online.run_online`` (read its docstring): for
t = 1..T, every stream s takes the exact penalised step (``layers.penalized_step``) with coefficient
lambda_{t,s} b_t, measures g_{t,s} = G_t(y_{t,s}) and updates
lambda_{t+1,s} = max(0, lambda_{t,s} + eta_t b_t (g_{t,s} - eps)); batches with b_t >= b_tau take the
hard layer ``layers.project`` and leave lambda alone. The S streams share the batch size b_t of step t
(their group labels and values differ), so S x T steps run as T batched steps.

Structure built once, outside the step loop. Steps are processed in chunks of <= ``chunk`` consecutive
steps of equal batch size, stacked as (K S) problems:

* hard chunks (b >= b_tau): y_t does not depend on lambda, so the whole chunk is one ``layers.project``
  call (no per-step loop);
* one-row chunks (dp with one attribute, the workload of the paper and the benchmark): the rows a_t, c_t
  and the lambda-independent root r_t of a_t^T clip(z_t - nu a_t) = c_t are computed for the whole chunk
  at once (:func:`prepare_one_row`; on the CPU the breakpoint sort runs only where the box binds); the
  step is then the closed form of ``layers.penalized_step`` for one row,
  ``nu = clip(r_t, -lambda_t b_t / 2, lambda_t b_t / 2)``, ``y = clip(z_t - nu a_t)``
  (:func:`one_row_step`), and :func:`dual_steps` runs the K steps on these preallocated tensors: about
  20 elementwise/reduction kernels per step, no host synchronisation, no host->device copy, nothing
  allocated but the kernels' outputs -- capturable in a CUDA graph (``bench/bench_online.py``);
* other rows (several attributes, mr, eo, dp_pairwise): ``layers.penalized_step`` per step (the coupled
  solver syncs with the host once per iteration) with the gap rows built once per chunk.

eta_t and the b_tau switch depend only on t and b_t (host integers); g, lambda and the distortion are
written into preallocated device tensors. Inputs are validated once, before the loop (``check``).

Agreement with the reference: every step is exact in both, so they differ by round-off only, but the dual
recursion amplifies a perturbation of lambda_t by |1 - eta_t b_t kappa_t| per step (kappa_t = b_t ||a||^2 / 2
for one row without a box: dg/dlambda = -kappa_t while the gap is positive), which exceeds 1 early in a
stream when eta_0 is large (eta_0 = 0.5, b = 16, kappa ~ 2-5: eta_t b kappa > 2 for t < ~300). Measured:
<= 4e-11 over 300 steps on 4 streams of 3 scenarios (tests/test_online.py asserts <= 1e-10 at T = 200).

Shapes: z (T, S, b) or a sequence of T tensors (S, b_t); groups (T, S, b) / (T, S, b, k) or a sequence
of (S, b_t[, k]); targets like z (mr, eo). The trace holds g (T, S), lam (T+1, S), eta (T,), b (T,),
hard (T,), distortion (T, S) = ||y - z||^2 and, with keep_y, y.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from layers._problem import Problem, build_problem, cell_sums, resolve_device
from layers._rows import clip, coefficients, row_root
from layers.projection import penalized_step, project
from reference import online as ref


def batch_gaps(y: torch.Tensor, groups, *, metric: str = "dp", targets=None) -> torch.Tensor:
    """G(y) = max_k |a_k^T y - c_k| per problem, y (P, b) -> (P,); 0 where no row survives (empty group)."""
    prob = build_problem(y, groups, metric=metric, eps=0.0, targets=targets, empty="drop", check=False)
    return _row_gaps(y, prob.cell, prob.W, prob.center, prob.valid)


def _row_gaps(y, cell, W, center, valid) -> torch.Tensor:
    """max over valid rows of |A y - c|, rows in cell form (``layers._problem``): A y = W @ cellsum(y).
    y, cell: (P, b); W: (P|1, m, C); center, valid: (P|1, m)."""
    if W.shape[1] == 0:
        return torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    f64 = torch.float64                     # float32 sums of > 2^24 terms stall (x + 1 rounds back to x)
    r = (W.to(f64) * cell_sums(y.to(f64), cell, W.shape[2])[:, None, :]).sum(-1) - center
    return torch.where(valid, r.abs(), 0.0).amax(-1).to(y.dtype)


# ------------------------------------------------------------------------------- one-row step (dp, k = 1)

@dataclasses.dataclass
class OneRow:
    """The lambda-independent part of K steps x S streams of a one-row problem (dp, one attribute).

    z, a: (K, S, b) inputs and row coefficients; c, valid, root: (K, S) row centre, row present (both
    groups non-empty), and r with a^T clip(z - r a) = c (``layers._rows.row_root``, exact)."""

    z: torch.Tensor
    a: torch.Tensor
    c: torch.Tensor
    valid: torch.Tensor
    root: torch.Tensor


def prepare_one_row(prob: Problem, K: int, *, subset: bool | None = None) -> OneRow | None:
    """:class:`OneRow` of a stacked (K S)-problem ``prob`` (None unless it has exactly one row).
    ``subset``: see :func:`one_row_roots` (default: on the CPU only)."""
    if prob.rowof is None or prob.m != 1:
        return None
    P, b = prob.P, prob.b
    a, _ = coefficients(prob)                                     # (P, b), zero when the row is dropped
    c = prob.center.expand(P, 1)[:, 0]
    valid = prob.valid.expand(P, 1)[:, 0]
    if subset is None:
        subset = prob.z.device.type == "cpu"
    root = one_row_roots(prob.z, a, c, valid, prob.bounds, subset=subset)
    S = P // K
    return OneRow(z=prob.z.reshape(K, S, b), a=a.reshape(K, S, b), c=c.reshape(K, S),
                  valid=valid.reshape(K, S), root=root.reshape(K, S))


def one_row_roots(z, a, c, valid, bounds, *, subset: bool) -> torch.Tensor:
    """r (P,) with a^T clip(z - r a) = c (``layers._rows.row_root``, dense; NaN or anything for a dropped
    row, which the step masks).

    With a box, ``row_root`` sorts the 2b breakpoints of every row. Where the box does not bind at the
    closed-form root r0 = (a^T z - c)/||a||^2 (every z_i - r0 a_i inside [lb, ub]), r0 is the root and equals
    ``row_root``'s answer to round-off (the same sums over the same free set). ``subset=True`` runs the
    sort only on the other rows: a boolean index, i.e. a host sync on CUDA, free on the CPU, where it cuts
    the preparation's cost ~10x on the benchmark (box (-3.5, 3.5), b = 16: a few % of the rows bind).
    ``subset=False`` sorts every row (no host sync: the whole preparation stays capturable)."""
    if bounds is None or not subset:
        return row_root(z, a, c, bounds, dense=True)
    r0 = row_root(z, a, c, None, dense=True)
    w = z - r0[:, None] * a
    bind = valid & ~((w >= bounds[0]) & (w <= bounds[1])).all(-1)
    root = torch.where(valid, r0, torch.zeros_like(r0))
    root[bind] = row_root(z[bind], a[bind], c[bind], bounds, dense=True)
    return root


def one_row_step(z, a, c, valid, root, coef, bounds) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact penalised step argmin_{box} ||y - z||^2 + coef |a^T y - c| for one row, and its gap.

    nu = clip(root, -coef/2, coef/2) (0 for a dropped row), y = clip(z - nu a, lb, ub), g = |a^T y - c|:
    the closed form of ``layers.penalized_step`` for one row (phi(nu) = a^T clip(z - nu a) is
    nonincreasing, so the penalty's subgradient condition puts nu at the root or at +-coef/2).
    z, a: (S, b); c, valid, root, coef: (S,). Returns y (S, b), g (S,)."""
    half = coef * 0.5
    nu = torch.where(valid, torch.clamp(root, -half, half), 0.0)
    y = clip(torch.addcmul(z, nu[:, None], a, value=-1.0), bounds)
    g = torch.where(valid, (torch.linalg.vecdot(a, y) - c).abs(), 0.0)
    return y, g


def dual_steps(rows: OneRow, lam: torch.Tensor, g: torch.Tensor, dist: torch.Tensor, etab: torch.Tensor,
               b: int, eps: float, bounds, ys: list | None = None) -> None:
    """K dual steps of Algorithm 1 on prepared one-row tensors, in place: reads lam[0] (S,), writes
    lam[1..K], g (K, S), dist (K, S); etab (K,) = eta_t b_t on the device; ``ys`` collects the y_t.
    Sync-free and allocation-free apart from the kernels' outputs (CUDA-graph capturable)."""
    for k in range(rows.z.shape[0]):
        y, g[k] = one_row_step(rows.z[k], rows.a[k], rows.c[k], rows.valid[k], rows.root[k], lam[k] * b,
                               bounds)
        lam[k + 1] = torch.clamp_min(lam[k] + etab[k] * (g[k] - eps), 0.0)
        d = y - rows.z[k]
        dist[k] = torch.linalg.vecdot(d, d)
        if ys is not None:
            ys.append(y)


# ----------------------------------------------------------------------------------------------- the run

# CPU chunks of <= 2^18 values (S K b): measured (bench_online workload, S = 1024, b = 16, one thread, load
# ~5) 1.5 / 1.1 / 1.3 / 2.5 ms per step at K = 4 / 16 / 64 / 256 (large chunks leave the cache)
CPU_CHUNK_VALUES = 2 ** 18

@dataclasses.dataclass
class BatchedTrace:
    """Trace of S streams (torch tensors on the run's device; see the module docstring)."""

    g: torch.Tensor
    lam: torch.Tensor
    eta: np.ndarray
    b: np.ndarray
    hard: np.ndarray
    distortion: torch.Tensor
    y: list | None
    eps: float
    eta0: float
    schedule: str

    @property
    def S(self) -> int:
        return self.g.shape[1]

    def stream(self, s: int) -> ref.OnlineTrace:
        """Stream s as a ``reference.online.OnlineTrace`` (NumPy), to reuse its bound and statistics."""
        y = None if self.y is None else [yt[s].detach().cpu().numpy() for yt in self.y]
        return ref.OnlineTrace(y=y, z=None, g=self.g[:, s].detach().cpu().numpy(),
                               lam=self.lam[:, s].detach().cpu().numpy(), eta=self.eta, b=self.b,
                               hard=self.hard, distortion=self.distortion[:, s].detach().cpu().numpy(),
                               eps=self.eps, eta0=self.eta0, schedule=self.schedule)


def _steps(x, name: str, device, dtype=None, like=None) -> list:
    """(T, S, ...) array / tensor or a sequence of T per-step arrays -> list of tensors on device.

    ``like`` (z's first step): a torch tensor given for groups / targets must already be on z's device
    and, for floating targets, of z's dtype (as in ``layers.project``); NumPy input is converted."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        given = [isinstance(x, torch.Tensor)] * (x.shape[0] if x.ndim >= 2 else 0)
        seq = list(torch.as_tensor(x).unbind(0)) if x.ndim >= 2 else None
    elif isinstance(x, Sequence):
        given = [isinstance(v, torch.Tensor) for v in x]
        seq = [torch.as_tensor(v) for v in x]
    else:
        seq = None
    if seq is None or len(seq) == 0:
        raise ValueError(f"{name} must be a (T, S, ...) array or a non-empty sequence of per-step arrays")
    out = []
    for v, tensor in zip(seq, given, strict=True):
        if tensor and like is not None:
            if v.device != like.device:
                raise ValueError(f"device mismatch: {name} on {v.device}, z on {like.device}")
            if v.is_floating_point() and dtype is not None and v.dtype != dtype:
                raise ValueError(f"dtype mismatch: {name} are {v.dtype}, z is {dtype}")
        v = v.to(device)
        if dtype is not None:
            v = v.to(dtype)
        out.append(v)
    return out


def _chunks(b: np.ndarray, chunk: int):
    """(t0, t1) ranges of at most ``chunk`` consecutive steps with equal batch size."""
    t0, T = 0, b.size
    while t0 < T:
        t1 = t0 + 1
        while t1 < T and t1 - t0 < chunk and b[t1] == b[t0]:
            t1 += 1
        yield t0, t1
        t0 = t1


def _stacked(xs, t0, t1):
    """Steps t0..t1-1 of a per-step list stacked as (K S, ...) (rows of step t: [(t-t0) S, (t-t0+1) S))."""
    if xs[t0] is None:
        return None
    x = torch.stack(xs[t0:t1])
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _stacked_rows(zs, gs, ts, t0, t1, metric, bounds, check: bool) -> Problem:
    """build_problem for steps t0..t1-1 stacked as (K S) problems."""
    return build_problem(_stacked(zs, t0, t1), _stacked(gs, t0, t1), metric=metric, eps=0.0, bounds=bounds,
                         targets=_stacked(ts, t0, t1), empty="drop", check=check)


def stack_streams(streams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S ``reference.data.Stream`` objects of equal length and batch sizes -> z (T, S, b), groups
    (T, S, b, k), targets (T, S, b) (constant batch size; ValueError otherwise)."""
    sizes = {tuple(s.sizes) for s in streams}
    if len(sizes) != 1 or len(set(next(iter(sizes)))) != 1:
        raise ValueError("stack_streams needs streams of equal length with one constant batch size")
    z = np.stack([[bt.z for bt in s.batches] for s in streams], axis=1)
    groups = np.stack([[bt.groups for bt in s.batches] for s in streams], axis=1)
    targets = np.stack([[bt.targets for bt in s.batches] for s in streams], axis=1)
    return z, groups, targets


def run_online(z, groups, *, eps: float, eta0: float = ref.ETA0_PACKAGE, schedule: str = "package",
               metric: str = "dp", bounds=None, targets=None, b_tau: int | None = ref.B_TAU_PACKAGE,
               lam1: float = 0.0, keep_y: bool = False, device=None, dtype=None,
               chunk: int | None = None, check: bool = True, progress=None) -> BatchedTrace:
    """Algorithm 1 on S streams at once; see the module docstring. ``dtype`` defaults to float64 for
    NumPy input (else z's dtype). The problem structure is built once per ``chunk`` consecutive steps of
    equal batch size (default: 256 on CUDA; on the CPU as many as keep a chunk's S K b values under
    CPU_CHUNK_VALUES, so that its tensors stay in cache: K = 256 at S = b = 16, K = 16 at S = 1024).
    Raises ValueError on bad input (checked once, before the loop; ``check=False`` skips the value checks,
    e.g. for streams generated on the device). ``progress``: optional wrapper of the list of chunks (a
    progress bar, e.g. ``tqdm``) for long runs."""
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if not (np.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"eta0 must be finite and > 0, got {eta0}")
    ref.check_schedule(schedule)
    ref.check_b_tau(b_tau)
    if not (np.isfinite(lam1) and lam1 >= 0):
        raise ValueError(f"lam1 must be finite and >= 0, got {lam1}")
    device = resolve_device(device)
    if dtype is None:
        dtype = z.dtype if isinstance(z, torch.Tensor) else torch.float64
    if device is None and isinstance(z, torch.Tensor):
        device = z.device
    zs = _steps(z, "z", device, dtype)
    gs = _steps(groups, "groups", zs[0].device, like=zs[0])
    ts = (_steps(targets, "targets", zs[0].device, dtype, like=zs[0]) if targets is not None
          else [None] * len(zs))
    T, S = len(zs), zs[0].shape[0]
    if len(gs) != T or len(ts) != T:
        raise ValueError(f"shape mismatch: z has {T} steps, groups {len(gs)}, targets {len(ts)}")
    for t in range(T):
        if zs[t].ndim != 2 or zs[t].shape[0] != S:
            raise ValueError(f"shape mismatch: step {t} of z has shape {tuple(zs[t].shape)}, "
                             f"expected ({S}, b)")
    b = np.array([v.shape[1] for v in zs], dtype=np.int64)
    if S == 0 or not b.all():
        raise ValueError(f"empty input: {S} streams, batch sizes down to {int(b.min())} (need >= 1 of each)")
    hard = np.zeros(T, dtype=bool) if b_tau is None else b >= b_tau
    eta = np.zeros(T)
    count = 0
    for t in range(T):
        if not hard[t]:
            count += 1
            eta[t] = ref.step_size(count, eta0, schedule)

    dev = zs[0].device
    if chunk is None:
        chunk = 256 if dev.type == "cuda" else int(np.clip(CPU_CHUNK_VALUES // (S * int(b.max())), 1, 256))
    g = torch.zeros(T, S, dtype=dtype, device=dev)
    dist = torch.zeros(T, S, dtype=dtype, device=dev)
    lam = torch.zeros(T + 1, S, dtype=dtype, device=dev)
    lam[0] = lam1
    etab = torch.as_tensor(eta * b, dtype=dtype, device=dev)      # eta_t b_t, one host->device copy
    if check:       # validate every step once, before the loop (the steps run with check=False)
        for t0, t1 in _chunks(b, chunk):
            _stacked_rows(zs, gs, ts, t0, t1, metric, bounds, check=True)
    ys = [] if keep_y else None
    chunks = list(_chunks(b, chunk))
    with torch.no_grad():
        for t0, t1 in (progress(chunks) if progress else chunks):
            K, bt = t1 - t0, int(b[t0])
            if hard[t0]:            # the hard layer on the whole chunk at once; lambda left alone
                rows = _stacked_rows(zs, gs, ts, t0, t1, metric, None, check=False)
                y = project(rows.z, _stacked(gs, t0, t1), metric=metric, eps=eps, bounds=bounds,
                            targets=_stacked(ts, t0, t1), empty="drop", check=False)
                g[t0:t1] = _row_gaps(y, rows.cell, rows.W, rows.center, rows.valid).reshape(K, S)
                dist[t0:t1] = ((y - rows.z) ** 2).sum(-1).reshape(K, S)
                lam[t0 + 1:t1 + 1] = lam[t0]
                if keep_y:
                    ys.extend(y.reshape(K, S, bt).unbind(0))
                continue
            rows = _stacked_rows(zs, gs, ts, t0, t1, metric, bounds, check=False)
            one = prepare_one_row(rows, K)
            if one is not None:
                dual_steps(one, lam[t0:t1 + 1], g[t0:t1], dist[t0:t1], etab[t0:t1], bt, eps, bounds, ys)
                continue
            for t in range(t0, t1):     # coupled rows: the general penalised step, gap rows built above
                y = penalized_step(zs[t], gs[t], lam=lam[t] * bt, bounds=bounds, metric=metric,
                                   targets=ts[t], check=False)
                k = slice((t - t0) * S, (t - t0 + 1) * S)
                g[t] = _row_gaps(y, rows.cell[k], rows.W[k], rows.center[k], rows.valid[k])
                lam[t + 1] = torch.clamp_min(lam[t] + etab[t] * (g[t] - eps), 0.0)
                dist[t] = ((y - zs[t]) ** 2).sum(-1)
                if keep_y:
                    ys.append(y)
    return BatchedTrace(g=g, lam=lam, eta=eta, b=b, hard=hard, distortion=dist, y=ys, eps=float(eps),
                        eta0=float(eta0), schedule=schedule)
