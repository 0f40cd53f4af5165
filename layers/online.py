r"""Algorithm 1 (online primal-dual fairness) in torch, vectorised over S independent streams.

Same algorithm, options and conventions as ``reference.online.run_online`` (read its docstring): for
t = 1..T, every stream s takes the exact penalised step ``layers.penalized_step`` with coefficient
lambda_{t,s} b_t, measures g_{t,s} = G_t(y_{t,s}) and updates
lambda_{t+1,s} = max(0, lambda_{t,s} + eta_t b_t (g_{t,s} - eps)); batches with b_t >= b_tau take the
hard layer ``layers.project`` and leave lambda alone. The S streams share the batch size b_t of step t
(their group labels and values differ), so S x T steps run as T batched steps.

No host synchronisation inside the loop: eta_t and the b_tau switch depend only on t and b_t (host
integers), the steps run with ``check=False``, and g, lambda are written into preallocated device
tensors. Inputs are validated once, before the loop.

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

from layers._problem import build_problem
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
    cs = torch.zeros(y.shape[0], W.shape[2], dtype=y.dtype, device=y.device).scatter_add_(1, cell, y)
    r = (W * cs[:, None, :]).sum(-1) - center
    return torch.where(valid, r.abs(), torch.zeros_like(r)).amax(-1)


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


def _steps(x, name: str, device, dtype=None) -> list:
    """(T, S, ...) array / tensor or a sequence of T per-step arrays -> list of tensors on device."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        seq = list(torch.as_tensor(x).unbind(0)) if x.ndim >= 2 else None
    elif isinstance(x, Sequence):
        seq = [torch.as_tensor(v) for v in x]
    else:
        seq = None
    if seq is None or len(seq) == 0:
        raise ValueError(f"{name} must be a (T, S, ...) array or a non-empty sequence of per-step arrays")
    out = []
    for v in seq:
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


def _stacked_rows(zs, gs, ts, t0, t1, metric, bounds, check: bool):
    """build_problem for steps t0..t1-1 stacked as (K S) problems (rows of step t: [(t-t0) S, (t-t0+1) S))."""
    K, S = t1 - t0, zs[t0].shape[0]
    gc = torch.stack(gs[t0:t1])
    tc = None if ts[t0] is None else torch.stack(ts[t0:t1]).reshape(K * S, -1)
    return build_problem(torch.stack(zs[t0:t1]).reshape(K * S, -1), gc.reshape(K * S, *gc.shape[2:]),
                         metric=metric, eps=0.0, bounds=bounds, targets=tc, empty="drop", check=check)


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
               chunk: int = 256, check: bool = True) -> BatchedTrace:
    """Algorithm 1 on S streams at once; see the module docstring. ``dtype`` defaults to float64 for
    NumPy input (else z's dtype). The rows used for the gaps are built once per ``chunk`` consecutive
    steps of equal batch size. Raises ValueError on bad input (checked once, before the loop;
    ``check=False`` skips the value checks, e.g. for streams generated on the device)."""
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    if not (np.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"eta0 must be finite and > 0, got {eta0}")
    if schedule not in ref.SCHEDULES:
        raise ValueError(f"schedule must be one of {ref.SCHEDULES}, got {schedule!r}")
    if b_tau is not None and b_tau < 1:
        raise ValueError(f"b_tau must be >= 1 or None, got {b_tau}")
    if not (np.isfinite(lam1) and lam1 >= 0):
        raise ValueError(f"lam1 must be finite and >= 0, got {lam1}")
    if dtype is None:
        dtype = z.dtype if isinstance(z, torch.Tensor) else torch.float64
    if device is None and isinstance(z, torch.Tensor):
        device = z.device
    zs = _steps(z, "z", device, dtype)
    gs = _steps(groups, "groups", device)
    ts = _steps(targets, "targets", device, dtype) if targets is not None else [None] * len(zs)
    T, S = len(zs), zs[0].shape[0]
    if len(gs) != T or len(ts) != T:
        raise ValueError(f"shape mismatch: z has {T} steps, groups {len(gs)}, targets {len(ts)}")
    for t in range(T):
        if zs[t].ndim != 2 or zs[t].shape[0] != S:
            raise ValueError(f"shape mismatch: step {t} of z has shape {tuple(zs[t].shape)}, "
                             f"expected ({S}, b)")
    b = np.array([v.shape[1] for v in zs], dtype=np.int64)
    hard = np.zeros(T, dtype=bool) if b_tau is None else b >= b_tau
    eta = np.zeros(T)
    count = 0
    for t in range(T):
        if not hard[t]:
            count += 1
            eta[t] = ref.step_size(count, eta0, schedule)

    dev = zs[0].device
    g = torch.zeros(T, S, dtype=dtype, device=dev)
    dist = torch.zeros(T, S, dtype=dtype, device=dev)
    lam = torch.zeros(T + 1, S, dtype=dtype, device=dev)
    lam[0] = lam1
    etab = torch.as_tensor(eta * b, dtype=dtype, device=dev)      # eta_t b_t, one host->device copy
    if check:       # validate every step once, before the loop (the steps run with check=False)
        for t0, t1 in _chunks(b, chunk):
            _stacked_rows(zs, gs, ts, t0, t1, metric, bounds, check=True)
    ys = [] if keep_y else None
    with torch.no_grad():
        for t0, t1 in _chunks(b, chunk):
            # the rows of the chunk's steps, built once (cell form) for the gaps g_t
            rows = _stacked_rows(zs, gs, ts, t0, t1, metric, None, check=False)
            for t in range(t0, t1):
                if hard[t]:
                    y = project(zs[t], gs[t], metric=metric, eps=eps, bounds=bounds, targets=ts[t],
                                empty="drop", check=False)
                else:
                    y = penalized_step(zs[t], gs[t], lam=lam[t] * int(b[t]), bounds=bounds, metric=metric,
                                       targets=ts[t], check=False)
                k = slice((t - t0) * S, (t - t0 + 1) * S)
                g[t] = _row_gaps(y, rows.cell[k], rows.W[k], rows.center[k], rows.valid[k])
                lam[t + 1] = lam[t] if hard[t] else torch.clamp_min(lam[t] + etab[t] * (g[t] - eps), 0.0)
                dist[t] = ((y - zs[t]) ** 2).sum(-1)
                if keep_y:
                    ys.append(y)
    return BatchedTrace(g=g, lam=lam, eta=eta, b=b, hard=hard, distortion=dist, y=ys, eps=float(eps),
                        eta0=float(eta0), schedule=schedule)
