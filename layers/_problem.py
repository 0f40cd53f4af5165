"""Input validation and the constraint rows of a batch of problems, in *cell* form (torch).

Every metric of ``reference.constraints`` has rows that are constant on *cells*: the coordinates
sharing the same attribute values (and, for ``eo``, the same label class). With ``cell[p, i]`` the cell
of coordinate i in problem p and ``n[p, c]`` the cell sizes, row k of problem p is

    a_k(i) = W[p, k, cell[p, i]],      so   A y = W @ cellsum(y),   A^T nu = (W^T nu)[cell].

W is (P, m, C) with m, C small (m <= 2 k rows, C <= 2^k or 2^(k+1) cells), so every solver step costs
one pass over the b coordinates plus O(m C) work. Rows are ordered as in the reference.
A row whose group is empty is zeroed (``valid`` False) when ``empty="drop"`` and raises otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np
import torch

from reference.constraints import METRICS

FLOATS = (torch.float32, torch.float64)


@dataclasses.dataclass
class Problem:
    """P independent problems of size b, flattened from the caller's leading dims ``batch_shape``.

    z: (P, b); cell: (P, b) int64 (an expanded view when groups are shared); W: (P|1, m, C);
    center: (P|1, m) (W and center in z's dtype for separable rows, float64 for coupled ones);
    valid: (P|1, m) bool; eps: (P,) (may carry autograd); bounds: (lb, ub) or None;
    rowof: (C,) row of each cell when the rows have disjoint supports (separable), else None;
    metric_rows: the metric whose rows were built (dp_pairwise with one attribute is dp).
    """

    z: torch.Tensor
    batch_shape: tuple
    cell: torch.Tensor
    W: torch.Tensor
    center: torch.Tensor
    valid: torch.Tensor
    eps: torch.Tensor
    bounds: tuple | None
    rowof: torch.Tensor | None
    metric_rows: str = ""

    @property
    def P(self) -> int:
        return self.z.shape[0]

    @property
    def b(self) -> int:
        return self.z.shape[1]

    @property
    def m(self) -> int:
        return self.W.shape[1]

    @property
    def C(self) -> int:
        return self.W.shape[2]


def resolve_device(device) -> torch.device | None:
    """``device`` argument -> torch.device; "cuda" without CUDA raises ValueError naming it."""
    if device is None:
        return None
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available "
                         "(torch.cuda.is_available() is False)")
    return dev


def as_z(z, device) -> torch.Tensor:
    """z as a floating tensor (numpy input -> float64) on ``device`` (if given), at least 1-d."""
    if not isinstance(z, torch.Tensor):
        z = torch.as_tensor(np.asarray(z, dtype=np.float64))
    if device is not None:
        z = z.to(device)
    if z.dtype not in FLOATS:
        raise ValueError(f"z must be float32 or float64, got {z.dtype}")
    if z.ndim == 0:
        raise ValueError("z must have shape (..., b), got a scalar")
    if z.shape[-1] == 0:
        raise ValueError("z is empty (b = 0)")
    return z


def _aux_tensor(x, name: str, z: torch.Tensor, *, floating: bool) -> torch.Tensor:
    """groups/targets/eps/lam -> tensor on z's device; a tensor on another device (or, for floating
    inputs, of another float dtype) raises instead of being moved silently."""
    if isinstance(x, torch.Tensor):
        if x.device != z.device:
            raise ValueError(f"device mismatch: {name} is on {x.device}, z on {z.device}")
        if floating and x.is_floating_point() and x.dtype != z.dtype:
            raise ValueError(f"dtype mismatch: {name} is {x.dtype}, z is {z.dtype}")
        return x.to(z.dtype) if floating else x
    arr = np.asarray(x)
    if floating:
        return torch.as_tensor(arr.astype(np.float64), device=z.device).to(z.dtype)
    return torch.as_tensor(arr, device=z.device)


def scalar_or_batch(x, name: str, z: torch.Tensor, batch_shape: tuple, P: int) -> torch.Tensor:
    """eps / lam: a number or a tensor of shape () or ``batch_shape`` -> (P,) in z's dtype; finite, >= 0."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):   # a fill kernel, no host->device copy
        return torch.full((P,), float(x), dtype=z.dtype, device=z.device)
    if isinstance(x, (bool, np.bool_, str, bytes)) or isinstance(x, torch.Tensor) and x.dtype == torch.bool:
        raise ValueError(f"{name} must be a real number or tensor, got {x!r}")
    t = _aux_tensor(x, name, z, floating=True)
    if t.shape not in ((), tuple(batch_shape)):
        raise ValueError(f"shape mismatch: {name} must be a scalar or have shape {tuple(batch_shape)}, "
                         f"got {tuple(t.shape)}")
    return t.reshape(-1).expand(P) if t.ndim == 0 else t.reshape(P)


def check_bounds(bounds) -> tuple[float, float] | None:
    from reference.constraints import check_bounds as ref_check
    if isinstance(bounds, (tuple, list)):
        bounds = tuple(float(v.item()) if isinstance(v, torch.Tensor) else v for v in bounds)
    return ref_check(bounds)


def _split_groups(g: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """groups -> (G, b, k) with G in {1, P}; the shape rule (z is (..., b)):

    (b,) shared, one attribute; (b, k) shared, k attributes (when z is 1-d, or when the shape is not
    z's shape); z.shape per problem, one attribute; z.shape + (k,) per problem, k attributes.
    """
    b, bs = z.shape[-1], tuple(z.shape[:-1])
    P = int(np.prod(bs)) if bs else 1
    shape = tuple(g.shape)
    if g.ndim == 1 and shape[0] == b:
        return g.reshape(1, b, 1), True
    if z.ndim > 1 and shape == tuple(z.shape):
        return g.reshape(P, b, 1), False
    if z.ndim > 1 and shape[:-1] == tuple(z.shape):
        return g.reshape(P, b, shape[-1]), False
    if g.ndim == 2 and shape[0] == b:
        return g.reshape(1, b, shape[1]), True
    raise ValueError(f"shape mismatch: groups must have shape ({b},), ({b}, k), {tuple(z.shape)} or "
                     f"{tuple(z.shape)} + (k,) for z of shape {tuple(z.shape)}; got {shape}")


def _one_hot(code: torch.Tensor, n: int) -> torch.Tensor:
    """(G, b) codes in [0, n) -> (G, b, n) bool. Per-cell counts and sums are taken from it by reductions
    (integer, or float64): a ``scatter_add_`` of float32 ones stops counting at 2^24 (16777216 + 1 rounds
    back to 16777216, so a group of 5e7 was counted as 16777216 and the output violated the constraint),
    and on the GPU its atomics all contend for the few cell addresses."""
    return code[..., None] == torch.arange(n, device=code.device)


def cell_sums(x: torch.Tensor, cell: torch.Tensor, C: int) -> torch.Tensor:
    """Per-cell sums of x: (P, b) values, (P, b) cells in [0, C) -> (P, C), so that A x = W @ cell_sums(x).
    Accumulated in x's dtype: pass float64 for many float32 terms (a float32 sum of > 2^24 ones stalls)."""
    return torch.zeros(x.shape[0], C, dtype=x.dtype, device=x.device).scatter_add_(1, cell, x)


def _inv(n: torch.Tensor) -> torch.Tensor:
    return torch.where(n > 0, 1.0 / n.clamp_min(1), torch.zeros_like(n))


def build_problem(z, groups, *, metric: str, eps, bounds=None, targets=None, empty: str = "raise",
                  device=None, check: bool = True, eps_name: str = "eps") -> Problem:
    """Validate the inputs (same errors as the reference) and build the cell-form rows.

    ``check=False`` skips the value checks that need a device->host sync (NaN, binary groups, empty
    groups, eps >= 0, MR feasibility); shapes, dtypes and devices are always checked.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if empty not in ("raise", "drop"):
        raise ValueError(f"empty must be 'raise' or 'drop', got {empty!r}")
    z = as_z(z, resolve_device(device))
    bounds = check_bounds(bounds)
    b, batch_shape = z.shape[-1], tuple(z.shape[:-1])
    P = int(np.prod(batch_shape)) if batch_shape else 1
    zf = z.reshape(P, b)
    g = _aux_tensor(groups, "groups", z, floating=False)
    g, shared = _split_groups(g, z)
    if g.shape[2] == 0:
        raise ValueError("groups has no attribute column")
    k = g.shape[2]
    eps_t = scalar_or_batch(eps, eps_name, z, batch_shape, P)
    tg = None
    if metric in ("mr", "eo"):
        if targets is None:
            raise ValueError(f"metric {metric!r} needs targets (y_true), got None")
        tg = _aux_tensor(targets, "targets", z, floating=True)
        if tuple(tg.shape) == (b,):
            tg = tg.reshape(1, b)
        elif tuple(tg.shape) == tuple(z.shape):
            tg = tg.reshape(P, b)
        else:
            raise ValueError(f"shape mismatch: targets has shape {tuple(tg.shape)}, expected ({b},) "
                             f"or {tuple(z.shape)}")
    g_in, g = g, (g != 0).to(torch.int64)                         # safe codes; non-binary raises below
    # dp_pairwise with one attribute: two cells, one pair = the single dp row (same sign, same order)
    metric_rows = "dp" if metric == "dp_pairwise" and k == 1 else metric
    separable = metric_rows in ("dp", "mr", "eo") and k == 1
    if metric_rows == "eo":
        label_of = (tg > 0.5).to(torch.int64)
    n_attr = 2 ** k
    n_full = 2 * n_attr if metric_rows == "eo" else n_attr
    code = g[..., 0] if k == 1 else (g * _weights(k, z.device)).sum(-1)   # (G, b) attribute bits, MSB first
    if metric_rows == "eo":
        code = code + n_attr * label_of                           # (P|1, b)
    if separable:
        cells = tuple(range(n_full))                              # no compaction: no host sync
        cell = code
    else:
        present = _one_hot(code, n_full).any(-2)                  # (P|1, n_full)
        cells = tuple(torch.nonzero(present.any(0)).reshape(-1).tolist())
        lut = torch.full((n_full,), -1, dtype=torch.int64, device=z.device)
        lut[list(cells)] = torch.arange(len(cells), device=z.device)
        cell = lut[code]
    C = len(cells)
    # Row data in z's dtype for separable rows (solved in that dtype); in float64 for coupled rows, which
    # the coupled solver solves in float64: rows built from float32 1/n and means are no longer exactly
    # dependent (mr, several attributes: the groups of every attribute partition the batch), and at
    # eps = 0 the rounded system is inconsistent, so no pattern certifies (found by an audit).
    wdtype = z.dtype if separable else torch.float64
    in_cell = _one_hot(cell, C)                                   # (P|1, b, C)
    counts = in_cell.sum(-2).to(wdtype)                           # exact integer sums (see _one_hot)
    sel0, sel1, rowof, names = _structure(metric_rows, k, cells, wdtype, z.device)

    n0 = counts @ sel0.T                                          # (P|1, m)
    if sel1 is None:                                              # mr: a = 1_S / n_S, c = mean_S(targets)
        empty0 = n0 == 0                                          # rows (j, a), a fastest
        empty1 = torch.zeros_like(empty0)
        # an attribute with an empty group is dropped whole (both rows), as the authors do
        valid = ~empty0.unflatten(-1, (-1, 2)).any(-1).repeat_interleave(2, -1)
        W = sel0[None] * (_inv(n0) * valid)[..., None]
        tsum = torch.where(in_cell, tg.to(torch.float64)[..., None], 0.0).sum(-2).to(wdtype)  # float64 sums
        center = (tsum @ sel0.T) * _inv(n0) * valid
        if tsum.shape[0] != W.shape[0]:                           # shared groups, per-problem targets
            W = W.expand(tsum.shape[0], -1, -1)
            valid = valid.expand(tsum.shape[0], -1)
    else:
        n1 = counts @ sel1.T
        empty0, empty1 = n0 == 0, n1 == 0
        valid = ~(empty0 | empty1)
        # a = 1_S0 / n_S0 - 1_S1 / n_S1 where both groups are present, else 0
        W = (sel0 / n0.clamp_min(1)[..., None] - sel1 / n1.clamp_min(1)[..., None]) * valid[..., None]
        center = torch.zeros(valid.shape, dtype=wdtype, device=z.device)
    if check:
        _validate(zf, g_in, eps_t, eps_name, tg, metric_rows, empty, counts, valid, empty0, empty1, names,
                  W, center, bounds)
    return Problem(z=zf, batch_shape=batch_shape, cell=cell.expand(P, b) if cell.shape[0] == 1 else cell,
                   W=W, center=center, valid=valid, eps=eps_t, bounds=bounds,
                   rowof=rowof if separable else None, metric_rows=metric_rows)


@functools.lru_cache(maxsize=64)
def _weights(k: int, device) -> torch.Tensor:
    return 2 ** torch.arange(k - 1, -1, -1, device=device)


@functools.lru_cache(maxsize=256)
def _structure(metric: str, k: int, cells: tuple, dtype, device):
    """Row patterns on the cells (cached: they depend only on the metric, k and the present cells).

    Returns sel0 (m, C), sel1 (m, C) or None (mr), rowof (C,) the row of each cell when every cell is
    in exactly one row (else None), and the names of the (row, side) groups for error messages.
    """
    C = len(cells)
    n_attr = 2 ** k
    bits = torch.tensor([[(c >> (k - 1 - j)) & 1 for j in range(k)] for c in cells], dtype=dtype,
                        device=device).reshape(C, k)
    label = torch.tensor([c // n_attr for c in cells], dtype=dtype, device=device)
    if metric == "dp":
        sel0, sel1 = (1 - bits).T.contiguous(), bits.T.contiguous()               # (k, C)
        names = [f"attribute {j} group {a}" for j in range(k) for a in (0, 1)]
    elif metric == "eo":
        sel0 = torch.stack([(label == y) * (1 - bits[:, j]) for y in (0, 1) for j in range(k)])
        sel1 = torch.stack([(label == y) * bits[:, j] for y in (0, 1) for j in range(k)])
        names = [f"attribute {j} group {a} in class y={y}" for y in (0, 1) for j in range(k) for a in (0, 1)]
    elif metric == "mr":
        sel0 = torch.stack([(bits[:, j] == a).to(dtype) for j in range(k) for a in (0, 1)])
        sel1 = None
        names = [f"attribute {j} group {a}" for j in range(k) for a in (0, 1)]
    else:  # dp_pairwise over the present cells
        pairs = list(itertools.combinations(range(C), 2))
        eye = torch.eye(C, dtype=dtype, device=device)
        sel0 = eye[[p for p, _ in pairs]].reshape(len(pairs), C)
        sel1 = eye[[q for _, q in pairs]].reshape(len(pairs), C)
        names = []
    support = (sel0 != 0) if sel1 is None else ((sel0 != 0) | (sel1 != 0))      # (m, C)
    rowof = support.to(torch.int64).argmax(0) if bool((support.sum(0) == 1).all()) else None
    return sel0, sel1, rowof, names


def _validate(zf, groups, eps_t, eps_name, tg, metric, empty, counts, valid, empty0, empty1, names,
              W, center, bounds) -> None:
    """All value checks of the inputs with one device->host sync; raises ValueError naming the problem."""
    dev = zf.device
    no = torch.zeros((), dtype=torch.bool, device=dev)
    if bounds is not None and metric == "mr":                     # feasibility of each row over the box
        lb, ub = bounds
        Wn = W * counts[:, None, :]                               # a_k summed per cell
        lo_reach = torch.where(Wn > 0, Wn * lb, Wn * ub).sum(-1)
        hi_reach = torch.where(Wn > 0, Wn * ub, Wn * lb).sum(-1)
        e = eps_t.detach()[:, None]
        infeasible = (valid & ((center + e < lo_reach - 1e-12) | (center - e > hi_reach + 1e-12))).any()
    else:
        infeasible = no
    too_few_cells = (counts > 0).sum(1).min() < 2 if metric == "dp_pairwise" else no
    bad_groups = ((groups != 0) & (groups != 1)).any()
    flags = torch.stack([~torch.isfinite(zf).all(), bad_groups, ~torch.isfinite(eps_t).all(),
                         (eps_t < 0).any(), no if tg is None else ~torch.isfinite(tg).all(),
                         too_few_cells, (~valid).any() if metric != "dp_pairwise" else no,
                         infeasible]).tolist()
    if flags[0]:
        raise ValueError("z contains NaN or inf")
    if flags[1]:
        raise ValueError("groups must be binary (0/1) labels; got a value outside {0, 1}")
    if flags[2]:
        raise ValueError(f"{eps_name} must be finite")
    if flags[3]:
        raise ValueError(f"{eps_name} must be >= 0, got {eps_t.min().item()}")
    if flags[4]:
        raise ValueError("targets contains NaN or inf")
    if empty == "raise" and flags[5]:
        raise ValueError("empty group: dp_pairwise needs at least two non-empty cells")
    if empty == "raise" and flags[6]:
        e = torch.stack([empty0.any(0), empty1.any(0)], -1).reshape(-1).tolist()   # (row, side)
        what = names[(e[::2] if metric == "mr" else e).index(True)]
        raise ValueError(f"empty group: {what} has no sample in this batch "
                         "(pass empty='drop' to drop its constraint, as the authors' layer does)")
    if flags[7]:
        lb, ub = bounds
        raise ValueError(f"infeasible: a mean-residual constraint needs a group mean outside the box "
                         f"[{lb}, {ub}] (targets outside the box?)")
