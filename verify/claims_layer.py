r"""Registry entries L1-L7: the fairness layer of paper A, checked numerically on the layer under test.

The layer is g(z) = argmin_{y in C} ||y - z||^2, C = {|A y - c| <= eps, lb <= y <= ub} (CLAIMS.md).
Targets: ``ours`` = ``layers.project`` (exact, differentiable torch layer), ``paper`` =
``layers.cvxpy_layer`` (the authors' cvxpylayers formulation, solver tolerance), ``package`` = the
published ``fairness-training`` 0.1.0 layer (``FairModel``; INCONCLUSIVE with a note when it is not installed,
and per case for a metric it does not have: pairwise).

Cases: every metric -- ``dp`` (one attribute), ``dp2`` (dp, two marginal attributes), ``pairwise``
(dp_pairwise, 2 attributes = 4 cells, 6 rows), ``mr`` (two attributes, 4 rows), ``eo`` (one attribute,
2 rows), ``eo2`` (eo, two attributes, 4 rows) -- with and without the box [-1, 1]; eps = 0.05;
z ~ N(0, 1) plus group offsets so that rows are active. Case ids read ``L3-pairwise-box-fd``.

Tolerances (u = unit round-off, 1.1e-16 in float64, 6.0e-8 in float32; scale = max(1, ||z||_inf)):

* forward error of an exact layer, per coordinate: delta = 4 b u scale kappa -- each y_i = clip(z_i -
  (A^T nu)_i) with nu from O(b)-term sums (gamma_b = b u / (1 - b u) each, a few of them), kappa = the
  condition number of the Gram matrix of the active rows on the free coordinates (coupled rows are
  solved through it; kappa = 1 for one row);
* a row value a^T y evaluated by us: error <= gamma_b ||a||_1 ||y||_inf;
* central differences: O(h^2) truncation (exactly 0 for the piecewise-affine g until x +- h u reaches a
  kink) plus round-off (2 delta + u scale) / (2 h); h is picked at the bottom of the V-curve;
* Jacobian entries from autograd: 10 b u kappa (a Gram solve and two products);
* solvers with a tolerance (target paper): their stopping criterion, see :func:`solver_feasibility_tol`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

import reference
from reference.constraints import Constraints, build_constraints
from reference.projection import kkt_tolerance
from verify.harness import (
    U32,
    U64,
    active_set,
    adversarial_ratio,
    fd_jacobian,
    fd_sweep,
    pair_ratios,
    projector_jacobian,
)
from verify.registry import CheckResult, Claim, Context, Verdict, register

try:
    import torch
except ImportError as exc:  # pragma: no cover - verify.claims skips this module without torch
    raise ModuleNotFoundError(f"verify.claims_layer needs torch ({exc})", name="torch") from exc

EPS = 0.05
BOX = (-1.0, 1.0)
CASES: dict[str, tuple[str, int]] = {   # case -> (metric, number of attributes)
    "dp": ("dp", 1), "dp2": ("dp", 2), "pairwise": ("dp_pairwise", 2), "mr": ("mr", 2), "eo": ("eo", 1),
    "eo2": ("eo", 2)}
ALL_TARGETS = ("ours", "paper", "package")
BRENTQ_RTOL = 4 * float(np.finfo(np.float64).eps)     # the smallest rtol scipy's brentq accepts


# ------------------------------------------------------------------------------------------- instances

@dataclasses.dataclass(frozen=True)
class Instance:
    """One projection problem: z (b,), groups (b, k) 0/1, targets (b,) or None, metric, eps, bounds."""

    case: str
    z: np.ndarray
    groups: np.ndarray
    targets: np.ndarray | None
    metric: str
    eps: float
    bounds: tuple[float, float] | None

    @property
    def b(self) -> int:
        return self.z.size

    @property
    def name(self) -> str:
        return self.case + ("-box" if self.bounds is not None else "")

    def constraints(self, eps: float | None = None) -> Constraints:
        return build_constraints(self.groups, self.metric, eps=self.eps if eps is None else eps, b=self.b,
                                 targets=self.targets, bounds=self.bounds)

    def with_z(self, z: np.ndarray) -> Instance:
        return dataclasses.replace(self, z=np.asarray(z, dtype=np.float64))


def make_instance(case: str, box: bool, b: int, rng: np.random.Generator, eps: float = EPS) -> Instance:
    """A random instance of ``case`` with at least one active fairness row: group offsets 0.8 (attribute
    0) and -0.5 (attribute 1) on z ~ N(0, 1); mr/eo targets ~ U(-0.5, 1) (inside the box). Redraws until
    every group of the metric is non-empty and clip(z) violates a row (else the projection is clip(z),
    no row is active and a Jacobian check would only see the box)."""
    metric, k = CASES[case]
    bounds = BOX if box else None
    for _ in range(100):
        groups = rng.integers(0, 2, (b, k))
        targets = rng.uniform(-0.5, 1.0, b) if metric in ("mr", "eo") else None
        try:
            C = build_constraints(groups, metric, eps=eps, b=b, targets=targets, bounds=bounds)
        except ValueError:
            continue
        z = rng.normal(0.0, 1.0, b) + groups @ np.array([0.8, -0.5][:k])
        zc = z if bounds is None else np.clip(z, *bounds)
        if np.max(np.abs(C.gaps(zc)) - eps) <= 0:
            continue
        return Instance(case, z, groups, targets, metric, eps, bounds)
    raise RuntimeError(f"could not draw non-empty groups with an active row for case {case} with b={b}")


def all_cases() -> list[tuple[str, bool]]:
    return [(c, box) for c in CASES for box in (False, True)]


def case_label(case: str, box: bool) -> str:
    return case + ("-box" if box else "")


# -------------------------------------------------------------------------------------------- targets

class Unavailable(RuntimeError):
    """The target cannot run here (package not installed, layer not written); reported INCONCLUSIVE."""


@dataclasses.dataclass
class Layer:
    """The layer under test: ``fn(z, inst, eps) -> y`` with z a torch tensor (b,) on ``device``.

    exact: True for an exact projection (tolerances from round-off), False for a solver with a
    tolerance (``solver_opts`` give it). note: what was wrapped (faults say so).
    """

    name: str
    fn: Callable
    device: str
    exact: bool = True
    solver_opts: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    def __call__(self, z: torch.Tensor, inst: Instance, eps=None) -> torch.Tensor:
        return self.fn(z, inst, inst.eps if eps is None else eps)

    def tensor(self, x: np.ndarray, dtype=torch.float64, requires_grad: bool = False) -> torch.Tensor:
        return torch.tensor(np.asarray(x), dtype=dtype, device=self.device, requires_grad=requires_grad)

    def numpy(self, inst: Instance, eps=None, dtype=torch.float64) -> Callable[[np.ndarray], np.ndarray]:
        """z (..., b) numpy -> g(z) (..., b) numpy float64 (leading dims: independent problems with the
        same groups, solved in one batched call), for finite differences and Lipschitz probes."""
        def g(z: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = self(self.tensor(z, dtype), inst, eps)
            return y.detach().cpu().numpy().astype(np.float64)
        return g

    def jacobian(self, inst: Instance) -> np.ndarray:
        """dy/dz (b, b) by reverse-mode autograd through the layer's backward (vectorised for our layer;
        one backward per row for a solver layer, whose autograd Function does not support vmap)."""
        z = self.tensor(inst.z)
        J = torch.autograd.functional.jacobian(lambda v: self(v, inst), z, vectorize=self.exact)
        return J.detach().cpu().numpy()

    def eps_derivative(self, inst: Instance) -> np.ndarray:
        """dy/d eps (b,) by autograd (eps passed as a 0-d tensor)."""
        e = self.tensor(inst.eps)
        z = self.tensor(inst.z)
        d = torch.autograd.functional.jacobian(lambda t: self(z, inst, t), e, vectorize=True)
        return d.detach().cpu().numpy().reshape(-1)


def _torch_inputs(z: torch.Tensor, inst: Instance):
    groups = torch.as_tensor(inst.groups, device=z.device)
    targets = None if inst.targets is None else torch.as_tensor(inst.targets, dtype=z.dtype, device=z.device)
    return groups, targets


def _ours(device: str) -> Layer:
    try:
        from layers import project
    except ImportError as exc:
        raise Unavailable(f"layers.project is not importable ({exc})") from None

    def fn(z, inst, eps):
        groups, targets = _torch_inputs(z, inst)
        return project(z, groups, metric=inst.metric, eps=eps, bounds=inst.bounds, targets=targets)

    return Layer("ours", fn, device, note="layers.project")


def _paper(device: str) -> Layer:
    if device != "cpu":
        raise Unavailable("target paper (cvxpylayers) runs on the CPU only")
    try:
        from layers import cvxpy_layer
    except ImportError as exc:
        raise Unavailable(f"layers.cvxpy_layer is not importable ({exc})") from None

    def fn(z, inst, eps):
        groups, targets = _torch_inputs(z, inst)
        return cvxpy_layer(z, groups, metric=inst.metric, eps=eps, bounds=inst.bounds, targets=targets)

    opts = dict(getattr(cvxpy_layer, "DEFAULT_SOLVER_ARGS", {}))
    return Layer("paper", fn, device, exact=False, solver_opts=opts,
                 note="layers.cvxpy_layer at its default solver settings")


PACKAGE_METRICS = {"dp": "mean_pred", "mr": "mean_residual", "eo": "equalized_odds"}   # no pairwise metric
PACKAGE_OPEN_BOX = (-100.0, 100.0)  # the package always boxes; for unboxed cases a box that never binds here


def _package(device: str) -> Layer:
    """The published fairness-training 0.1.0 layer: ``FairModel`` in training mode (hard per-batch
    constraints, cvxpylayers at its defaults) on inputs x = [A_1 .. A_k, z] with a "network" that returns z,
    so that its projection receives z exactly. Per call a model is built with
    ``fairness_tolerance = eps`` (the package takes eps as a constructor float: no eps-derivative)."""
    if device != "cpu":
        raise Unavailable("target package (cvxpylayers) runs on the CPU only")
    try:
        from fairness_training import FairModel
    except ImportError:
        raise Unavailable("the fairness-training 0.1.0 package is not installed "
                          "(pip install --no-deps fairness-training==0.1.0)") from None

    class Scores(torch.nn.Module):
        """The "network": returns the raw scores z (carrying autograd; x itself must not: the package
        reads the protected columns with .numpy())."""

        def __init__(self, z):
            super().__init__()
            self.z = z

        def forward(self, x):
            return self.z[:, None]

    def fn(z, inst, eps):
        case_metric = inst.metric if inst.metric != "dp_pairwise" else None
        if case_metric not in PACKAGE_METRICS:
            raise Unavailable(f"fairness-training 0.1.0 has no {inst.metric!r} metric")
        if z.ndim > 1:
            return torch.stack([fn(zi, inst, eps) for zi in z.reshape(-1, z.shape[-1])]).reshape(z.shape)
        k = inst.groups.shape[1]
        model = FairModel(input_dim=k + 1, protected_attr_idx=list(range(k)),
                          prediction_bounds=inst.bounds or PACKAGE_OPEN_BOX, fairness_tolerance=float(eps),
                          fairness_metric=PACKAGE_METRICS[case_metric], custom_network=Scores(z))
        x = torch.cat([torch.as_tensor(inst.groups, dtype=z.dtype), z.detach()[:, None]], dim=1)
        targets = None if inst.targets is None else torch.as_tensor(inst.targets, dtype=z.dtype)
        return model(x, y=targets)[:, 0]

    return Layer("package", fn, device, exact=False, solver_opts={},
                 note="fairness-training 0.1.0 FairModel (hard constraints, cvxpylayers defaults)")


def get_layer(ctx: Context) -> Layer:
    """The target's layer, wrapped with ``ctx.fault`` when one is set. Raises Unavailable."""
    device = "cuda" if ctx.backend == "cuda" else "cpu"
    layer = {"ours": _ours, "paper": _paper, "package": _package}[ctx.target](device)
    return apply_fault(layer, ctx.fault) if ctx.fault else layer


# ---------------------------------------------------------------------------------------------- faults

FAULT_DOC = {
    "skip-box": "forward ignores the box (projects onto the fairness rows only)",
    "eps-misapplied": "forward uses 1.5 eps instead of eps",
    "eps-halved": "forward uses eps / 2: feasible but not the nearest point",
    "swapped-weights": "dp closed form with n0 and n1 swapped in the group shifts (no box)",
    "wrong-sign": "backward: Jacobian with the wrong sign on the active rows, 2 D_F - J",
    "box-ignored-backward": "backward: Jacobian ignores the active box coordinates",
    "half-precision-backward": "backward: in float32 the vector-Jacobian product is taken in float16 "
                               "(float64 untouched)",
    "batch-shared-active-set": "backward: every problem of a batch z (P, b) uses the active set of the "
                               "first problem (one problem: untouched)",
    "over-relaxed": "forward z + 1.5 (g(z) - z): nonexpansive but not firmly nonexpansive",
    "default-tolerance-solver": "forward by the authors' cvxpylayers layer at its default SCS settings, "
                                "held to the exact layer's tolerances",
}


def apply_fault(layer: Layer, fault: str) -> Layer:
    """The deliberately wrong variant of ``layer`` named by ``fault`` (see :data:`FAULT_DOC`)."""
    if fault not in FAULT_DOC:
        raise ValueError(f"unknown planted fault {fault!r}; known: {sorted(FAULT_DOC)}")
    base = layer.fn

    if fault == "skip-box":
        def fn(z, inst, eps):
            return base(z, dataclasses.replace(inst, bounds=None), eps)
    elif fault == "eps-misapplied":
        def fn(z, inst, eps):
            return base(z, inst, 1.5 * eps)
    elif fault == "eps-halved":
        def fn(z, inst, eps):
            return base(z, inst, 0.5 * eps)
    elif fault == "default-tolerance-solver":
        try:
            fn = _paper("cpu").fn
        except Unavailable as exc:
            raise RuntimeError(f"planted fault {fault!r} needs the paper target: {exc}") from None
    elif fault == "over-relaxed":
        def fn(z, inst, eps):
            return z + 1.5 * (base(z, inst, eps) - z)
    elif fault == "swapped-weights":
        def fn(z, inst, eps):
            y = base(z, inst, eps)
            if inst.metric != "dp" or inst.groups.shape[1] != 1 or inst.bounds is not None:
                return y
            s1 = torch.as_tensor(inst.groups[:, 0] == 1, device=z.device)
            n1 = float(s1.sum())
            n0 = inst.b - n1
            factor = torch.where(s1, torch.tensor(n1 / n0, dtype=z.dtype, device=z.device),
                                 torch.tensor(n0 / n1, dtype=z.dtype, device=z.device))
            return z + (y - z) * factor
    else:  # backward faults: same forward, wrong Jacobian attached straight-through
        def fn(z, inst, eps):
            y = base(z, inst, eps)
            if not z.requires_grad or (fault == "half-precision-backward" and z.dtype != torch.float32):
                return y
            C = inst.constraints(float(eps))
            Y = y.detach().cpu().numpy().astype(np.float64).reshape(-1, inst.b)
            # active set read at 1e-9 scale (float64) or 1e-4 (float32: its outputs carry ~1e-7 round-off)
            tol = (1e-9 if z.dtype == torch.float64 else 1e-4) * (1 + float(z.detach().abs().max()))
            blocks = []
            for yp in Y:                      # one (b, b) Jacobian per problem of the batch
                rows, free = active_set(C, Y[0] if fault == "batch-shared-active-set" else yp, tol=tol)
                J = projector_jacobian(C.A[rows], free)
                if fault == "wrong-sign":
                    J = 2.0 * np.diag(free.astype(np.float64)) - J
                elif fault == "box-ignored-backward":
                    J = projector_jacobian(C.A[rows], np.ones_like(free))
                blocks.append(J)
            Jt = torch.as_tensor(np.stack(blocks), dtype=z.dtype, device=z.device)
            dz = (z - z.detach()).reshape(-1, inst.b, 1)
            if fault == "half-precision-backward":
                Jt, dz = Jt.half(), dz.half()
            return y.detach() + (Jt @ dz).to(z.dtype).reshape(z.shape)
    return dataclasses.replace(layer, fn=fn, note=f"{layer.note} + planted fault {fault}: {FAULT_DOC[fault]}")


# ----------------------------------------------------------------------------------------- tolerances

def scale_of(z: np.ndarray) -> float:
    return max(1.0, float(np.max(np.abs(z))))


def gram_condition(C: Constraints, y: np.ndarray, tol: float) -> float:
    """Condition number (nonzero spectrum) of the Gram matrix of the active rows on the free coordinates."""
    rows, free = active_set(C, y, tol=tol)
    if not rows.any():
        return 1.0
    AF = C.A[rows][:, free]
    sv = np.linalg.svd(AF @ AF.T, compute_uv=False)
    sv = sv[sv > sv[0] * 1e-12] if sv.size and sv[0] > 0 else sv
    return float(sv[0] / sv[-1]) if sv.size else 1.0


def max_gram_condition(C: Constraints, Y: np.ndarray, scale: float) -> float:
    """The largest :func:`gram_condition` over the outputs Y (k, b) (active sets read at 1e-9 scale)."""
    return max(gram_condition(C, y, 1e-9 * scale) for y in np.atleast_2d(Y))


def forward_error(b: int, scale: float, u: float = U64, kappa: float = 1.0) -> float:
    """delta = 4 b u scale kappa: per-coordinate error of an exact projection (module docstring)."""
    return 4.0 * b * u * scale * kappa


def feasibility_tol(C: Constraints, z: np.ndarray, u: float = U64) -> float:
    """Exact layer: row slack <= ||a||_1 (delta_layer + gamma_b scale) with delta_layer = 4 b u scale
    (the layer's own O(b)-term sums) and gamma_b ~ b u our float64 evaluation of a^T y."""
    a1 = float(np.max(np.abs(C.A).sum(axis=1))) if C.m else 0.0
    b, s = z.size, scale_of(z)
    return a1 * (forward_error(b, s, u) + b * U64 * s) + 2 * u * s


def solver_feasibility_tol(layer: Layer, C: Constraints, z: np.ndarray) -> float:
    """A solver stopped by ||A x + s - b||_inf <= eps_abs + eps_rel max(||A x||, ||s||, ||b||) (SCS 3)
    leaves row slack up to that residual; the scale of this problem's rows is max(1, ||z||_inf, |lb|, |ub|).
    Defaults are SCS's own (eps_abs = eps_rel = 1e-4) unless the layer names other settings."""
    o = layer.solver_opts
    eps_abs = float(o.get("eps_abs", o.get("eps", 1e-4)))
    eps_rel = float(o.get("eps_rel", o.get("eps", 1e-4)))
    s = max([scale_of(z), *(abs(v) for v in (C.bounds or ()))])
    return eps_abs + eps_rel * s


def slack(C: Constraints, y: np.ndarray) -> float:
    """max over constraints of (|a_k^T y - c_k| - eps, lb - y_i, y_i - ub): <= 0 iff feasible (signed)."""
    parts = []
    if C.m:
        parts.append(float(np.max(np.abs(C.gaps(y)) - C.eps)))
    if C.bounds is not None:
        parts += [float(np.max(C.bounds[0] - y)), float(np.max(y - C.bounds[1]))]
    return max(parts)


def _seed(ctx: Context, *salt: int) -> np.random.Generator:
    return np.random.default_rng([ctx.seed, *salt])


def _unavailable(cid: str, exc: Unavailable) -> list[CheckResult]:
    return [CheckResult(id=cid, verdict=Verdict.INCONCLUSIVE, figure=None, bound=None, detail=str(exc))]


def _bool_result(cid: str, ok: bool, figure: float, bound, relation: str, **kw) -> CheckResult:
    return CheckResult(id=cid, verdict=Verdict.PASS if ok else Verdict.FAIL, figure=float(figure),
                       bound=bound, relation=relation, **kw)


# ------------------------------------------------------------------------------------------ L1 feasibility

L1_SIZES_QUICK = (256, 1024, 4096)
L1_SIZES_FULL = (256, 1024, 4096, 16384)


@register(Claim(
    id="L1", paper="A", provenance="stated",
    statement="every output of the layer satisfies every constraint of C (fairness rows and box), "
              "for every batch; figure = the slack max(|a^T y - c| - eps, lb - y, y - ub) (<= 0: feasible)",
    tolerance="exact layer (float64): slack <= ||a||_1 (4 b u + b u) scale + 2 u scale (layer's O(b)-term "
              "sums plus our evaluation of a^T y, u = 1.1e-16); float32: the same with u = 6e-8 for the "
              "layer's part; solver layer (target paper): its stopping criterion eps_abs + eps_rel * scale "
              "(SCS 3 defaults 1e-4) -- the slack it actually leaves is reported per b",
    faults=("skip-box", "eps-misapplied"),
    targets=ALL_TARGETS))
def check_l1(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L1", exc)
    out = []
    # a solver layer is rebuilt per call (~0.1-1 s): fewer instances
    n_inst = (60 if ctx.full else 8) if layer.exact else (10 if ctx.full else 2)
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), "L1 cases")):
        rng = _seed(ctx, 1, ci)
        worst, sizes = None, []
        try:
            for _ in range(n_inst):
                inst = make_instance(case, box, int(rng.integers(8, 97)), rng)
                y = layer.numpy(inst)(inst.z)
                worst = _worse(worst, (slack(inst.constraints(), y), _l1_tol(layer, inst)))
                sizes.append(inst.b)
        except Unavailable as exc:          # a case the target cannot express (package: no pairwise)
            out.extend(_unavailable(f"L1-{case_label(case, box)}", exc))
            continue
        out.append(CheckResult.compare(
            f"L1-{case_label(case, box)}", *worst,
            detail=f"largest slack over {n_inst} instances (b in 8..96), eps={EPS}; {layer.note}",
            evidence={"case": case_label(case, box), "instances": n_inst, "b": sizes, "seed": ctx.seed}))
    sizes = L1_SIZES_FULL if ctx.full else L1_SIZES_QUICK
    for case, box in (("dp", True), ("dp", False), ("pairwise", True)):
        slacks, bounds = [], []
        for b in ctx.iterate(sizes, f"L1 {case_label(case, box)} per b"):
            inst = make_instance(case, box, b, _seed(ctx, 11, b))
            C = inst.constraints()
            try:
                y = layer.numpy(inst)(inst.z)
            except Unavailable as exc:
                out.extend(_unavailable(f"L1-{case_label(case, box)}-b{b}", exc))
                continue
            s, tol = slack(C, y), _l1_tol(layer, inst)
            slacks.append(s)
            bounds.append(tol)
            row = float(np.max(np.abs(C.gaps(y)) - C.eps))
            out.append(CheckResult.compare(
                f"L1-{case_label(case, box)}-b{b}", s, tol,
                detail=f"slack at b={b} (one instance; fairness rows {row:.3g}), eps={EPS}; {layer.note}",
                evidence={"b": b, "seed": ctx.seed, "solver_opts": layer.solver_opts, "row_slack": row,
                          "roundoff_tol": feasibility_tol(C, inst.z), "max_abs_y": float(np.max(np.abs(y)))}))
        if not slacks:
            continue
        out[-1].evidence["series"] = {"slack_vs_b": {
            "x": list(sizes), "y": {"slack": [max(v, 1e-18) for v in slacks], "bound": bounds},
            "xlabel": "batch size b", "ylabel": "max(|gap| - eps, box excess)", "scale": "loglog"}}
    if layer.exact and ctx.target == "ours":
        out.extend(_l1_float32(ctx, layer))
    return out


def _l1_tol(layer: Layer, inst: Instance) -> float:
    C = inst.constraints()
    return feasibility_tol(C, inst.z) if layer.exact else solver_feasibility_tol(layer, C, inst.z)


def _l1_float32(ctx: Context, layer: Layer) -> list[CheckResult]:
    """float32 forward: the same slack with u = 6e-8 for the layer's part of the tolerance."""
    rng = _seed(ctx, 12)
    worst, worst_tol = None, 0.0
    for case, box in all_cases():
        inst = make_instance(case, box, 64, rng)
        C = inst.constraints()
        z32 = inst.z.astype(np.float32).astype(np.float64)      # the problem the float32 layer solves
        y = layer.numpy(inst.with_z(z32), dtype=torch.float32)(z32)
        s, tol = slack(inst.with_z(z32).constraints(), y), feasibility_tol(C, z32, u=U32)
        if worst is None or _nan_first(s - tol) > _nan_first(worst - worst_tol):   # slack may be < 0
            worst, worst_tol = s, tol
    return [CheckResult.compare("L1-float32", worst, worst_tol,
                                detail="largest slack of the float32 layer over every case (b=64)",
                                evidence={"b": 64, "seed": ctx.seed})]


# --------------------------------------------------------------------------------------- L2 optimality

@register(Claim(
    id="L2", paper="A", provenance="code/reconstructed",
    statement="g(z) is the unique nearest point of C: the KKT conditions hold at the layer's output "
              "(with the exact reference's multipliers: KKT pairs form a product set, so this certifies y) "
              "and independent solvers agree (reference.project; cvxpy + Clarabel at tight settings)",
    tolerance="exact layer: KKT residual <= 10 kkt_tolerance(b) (= 10 max(1e-12, 30 sqrt(b) u), the "
              "reference's own certificate); |y - y_ref|_inf / scale <= 2 * 4 b u kappa (two exact "
              "solvers); |y - y_clarabel|_inf / scale <= 1e-7 (reference.cvx.ACCURACY['CLARABEL']) + the "
              "same. Solver layer: |y - y*|_2 <= sqrt(eps_abs + eps_rel |f*|) from the strong convexity "
              "of ||y - z||^2 (modulus 2) and the solver's duality-gap tolerance. float32 (exact layer): "
              "|y32 - y_ref(z32)|_inf / scale <= 2 * 4 b u32 kappa + u32 (the float32 layer's error, the "
              "reference's, the output's rounding)",
    faults=("eps-halved", "default-tolerance-solver"),
    targets=ALL_TARGETS))
def check_l2(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L2", exc)
    try:
        from reference import cvx
        cvx._need_cvxpy()
    except ImportError:
        cvx = None
    n_inst, b = (20, 48) if ctx.full else (3, 32)
    out = []
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), "L2 cases")):
        rng = _seed(ctx, 2, ci)
        kkt_w = ref_w = cvx_w = None            # worst (figure, bound) by figure / bound
        try:
            for _ in range(n_inst):
                inst = make_instance(case, box, b, rng)
                sol = reference.solve(inst.z, inst.groups, metric=inst.metric, eps=inst.eps,
                                      bounds=inst.bounds, targets=inst.targets)
                y = layer.numpy(inst)(inst.z)
                s = scale_of(inst.z)
                if layer.exact:
                    kappa = gram_condition(sol.constraints, sol.y, 1e-9 * s)
                    k = reference.kkt_residuals(y, inst.z, sol.constraints, sol.mu)["max"]
                    kkt_w = _worse(kkt_w, (k, 10 * kkt_tolerance(b)))
                    d_tol = 2 * forward_error(b, 1.0, kappa=kappa)
                else:
                    f_star = float(np.sum((sol.y - inst.z) ** 2))
                    d_tol = _solver_distance_tol(layer, f_star) / s
                ref_w = _worse(ref_w, (float(np.max(np.abs(y - sol.y))) / s, d_tol))
                if cvx is not None:
                    yc = cvx.solve_projection(inst.z, inst.groups, metric=inst.metric, eps=inst.eps,
                                              bounds=inst.bounds, targets=inst.targets, solver="CLARABEL",
                                              **cvx.TIGHT["CLARABEL"]).y
                    cvx_w = _worse(cvx_w, (float(np.max(np.abs(y - yc))) / s,
                                           cvx.ACCURACY["CLARABEL"] + d_tol))
        except Unavailable as exc:          # a case the target cannot express (package: no pairwise)
            out.extend(_unavailable(f"L2-{case_label(case, box)}", exc))
            continue
        lab = case_label(case, box)
        ev = {"case": lab, "instances": n_inst, "b": b, "seed": ctx.seed}
        if layer.exact:
            out.append(CheckResult.compare(f"L2-{lab}-kkt", *kkt_w, detail="max relative KKT residual of "
                                           f"(y_layer, mu_ref); {layer.note}", evidence=ev))
        out.append(CheckResult.compare(f"L2-{lab}-ref", *ref_w,
                                       detail="max |y - y_ref|_inf / scale vs reference.project",
                                       evidence=ev))
        if cvx is None:
            out.append(CheckResult(f"L2-{lab}-cvx", Verdict.INCONCLUSIVE, None, None,
                                   detail="cvxpy not installed: second reference skipped"))
        else:
            out.append(CheckResult.compare(f"L2-{lab}-cvx", *cvx_w,
                                           detail="max |y - y_clarabel|_inf / scale (Clarabel, tight)",
                                           evidence=ev))
    if layer.exact and ctx.target == "ours":
        out.append(_l2_float32(ctx, layer))
    return out


def _l2_float32(ctx: Context, layer: Layer) -> CheckResult:
    """float32 forward against the reference on the float32-rounded problem, every case (b = 32): the
    float32 layer is an exact solver with u = 6e-8 (4 b u32 kappa), the reference's share is
    negligible (4 b u64 kappa), the output is rounded once more (u32 relative). L1-float32 only shows
    feasibility: a float32 path solving the wrong problem (eps / 2, say) stays feasible."""
    worst, b = None, 32
    for ci, (case, box) in enumerate(all_cases()):
        inst = make_instance(case, box, b, _seed(ctx, 22, ci))
        inst = inst.with_z(inst.z.astype(np.float32).astype(np.float64))   # the problem it solves
        sol = reference.solve(inst.z, inst.groups, metric=inst.metric, eps=inst.eps, bounds=inst.bounds,
                              targets=inst.targets)
        y = layer.numpy(inst, dtype=torch.float32)(inst.z)
        kappa = gram_condition(sol.constraints, sol.y, 1e-9 * scale_of(inst.z))
        worst = _worse(worst, (float(np.max(np.abs(y - sol.y))) / scale_of(inst.z),
                               2 * forward_error(b, 1.0, u=U32, kappa=kappa) + U32))
    return CheckResult.compare("L2-float32", *worst, detail="max |y32 - y_ref|_inf / scale over every case "
                               f"(b={b}, the float32-rounded z)", evidence={"b": b, "seed": ctx.seed})


def _nan_first(x: float) -> float:
    """Rank key of a worst case: NaN above every number, so an undefined result is kept (and FAILs)
    instead of being outvoted by later cases."""
    return np.inf if np.isnan(x) else x


def _worse(cur: tuple[float, float] | None, new: tuple[float, float]) -> tuple[float, float]:
    """Keep the (figure, bound) pair with the larger figure / bound (None: nothing yet; NaN: see
    :func:`_nan_first`)."""
    return new if cur is None or _nan_first(new[0] / new[1]) > _nan_first(cur[0] / cur[1]) else cur


def _solver_eps(layer: Layer) -> tuple[float, float]:
    """(eps_abs, eps_rel) of a solver layer: its options, else SCS's defaults (1e-4, 1e-4)."""
    o = layer.solver_opts
    return float(o.get("eps_abs", o.get("eps", 1e-4))), float(o.get("eps_rel", o.get("eps", 1e-4)))


def _solver_distance_tol(layer: Layer, f_star: float) -> float:
    eps_abs, eps_rel = _solver_eps(layer)
    return float(np.sqrt(eps_abs + eps_rel * max(1.0, f_star)))


# ---------------------------------------------------------------------------------- L3 differentiability

def _fd_bound(b: int, scale: float, h: float, kappa: float = 1.0) -> float:
    """Round-off of a central difference of an exact layer: (2 delta + 2 u scale) / (2 h)."""
    return (2 * forward_error(b, scale, kappa=kappa) + 2 * U64 * scale) / (2 * h)


FD_STEPS = np.geomspace(1e-13, 1e1, 15)      # the V-curve of the directional FD (h = 10 crosses kinks)
# the steps the verdict may use: below 1e-8 the round-off bound (~delta / h) grows so large that a wrong J
# would pass (audit: a J off by 0.1 passed at h = 1e-13); above 1e-3 a random point is often within h of a
# kink
FD_VERDICT_STEPS = (1e-8, 1e-3)
JAC_STEPS = (1e-8, 1e-6, 1e-4)                # the full FD Jacobian (b columns each)


def _jac_tol(b: int, kappa: float, u: float = U64) -> float:
    return 10 * b * u * kappa


@register(Claim(
    id="L3", paper="A", provenance="stated",
    statement="g is piecewise affine and differentiable almost everywhere: the autograd Jacobian equals the "
              "orthogonal projector onto {v: v_i = 0 on active box coordinates, A_active v = 0} (in float64 "
              "and float32, and per problem of a batched call) and "
              "central finite differences (V-curve in h); at constructed kinks (coordinate at a bound, row "
              "at +-eps, zero multiplier) one-sided directional derivatives exist and differ; random points "
              "hit kinks with frequency 0",
    tolerance="FD at the bottom h* of the V-curve: max |FD - J u| <= (2 delta + 2 u scale) / (2 h*), "
              "delta = 4 b u scale kappa (truncation is 0 for a piecewise-affine map below the kink "
              "distance); Jacobian vs projector: 10 b u kappa; kinks: one-sided quotients at h, h/4 agree to "
              "4 delta / h, and |g'(z;u) + g'(z;-u)| exceeds 10x that round-off (it is 0 + round-off at a "
              "differentiable point of a piecewise-affine map); kink frequency: bound 0; float32 autograd "
              "Jacobian vs the projector: 10 b u32 kappa + u32 (u32 = 6e-8); one batched call of 3 problems: "
              "its (3b x 3b) Jacobian vs the block-diagonal projectors, 10 b u kappa. Solver layer "
              "(target paper): only Jacobian vs the projector of the EXACT solution's active set, bound "
              "kappa * d, d = sqrt(eps_abs + eps_rel f*) / scale the solver's distance bound of L2 (first "
              "order: on the right active set the differentiated KKT system is perturbed by the primal-dual "
              "error, amplified by at most the active rows' Gram condition kappa; a wrong active set gives "
              "O(1) errors, which is what this case exposes); at b = 4096 (16384 full) raw scores, the "
              "relative VJP error ||J^T v - P v|| / ||v|| <= sqrt(eps_abs + eps_rel) (kappa = 1, one row). "
              "FD and kink cases are not run on a solver layer (they would measure its stopping noise)",
    faults=("wrong-sign", "box-ignored-backward", "half-precision-backward", "batch-shared-active-set"),
    targets=ALL_TARGETS))
def check_l3(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L3", exc)
    if not layer.exact:
        return _l3_solver_layer(ctx, layer)
    out = []
    for lab, inst, rng in _l3_instances(ctx, "L3 Jacobians"):
        b = inst.b
        g = layer.numpy(inst)
        y = g(inst.z)
        s = scale_of(inst.z)
        C = inst.constraints()
        kappa = gram_condition(C, y, 1e-9 * s)
        J = layer.jacobian(inst)
        rows, free = active_set(C, y, tol=1e-9 * s)
        J_formula = projector_jacobian(C.A[rows], free)
        ev = {"case": lab, "b": b, "seed": ctx.seed, "active_rows": int(rows.sum()),
              "clamped": int((~free).sum()), "kappa": kappa}
        out.append(CheckResult.compare(f"L3-{lab}-projector", float(np.max(np.abs(J - J_formula))),
                                       _jac_tol(b, kappa), detail="max |J_autograd - projector(active set)|",
                                       evidence=ev))
        u = rng.normal(size=b)
        u /= np.linalg.norm(u)
        sweep = fd_sweep(g, inst.z, u, J @ u, hs=FD_STEPS, batched=True)
        bounds = np.array([_fd_bound(b, s, h, kappa) for h in sweep.hs])
        band = np.flatnonzero((sweep.hs >= FD_VERDICT_STEPS[0] * (1 - 1e-9))
                              & (sweep.hs <= FD_VERDICT_STEPS[1] * (1 + 1e-9)))
        k = band[np.argmin(sweep.errors[band] / bounds[band])]      # the most favourable step in the band
        out.append(CheckResult.compare(
            f"L3-{lab}-fd", float(sweep.errors[k]), float(bounds[k]),
            detail=f"central FD of J u vs autograd at h={sweep.hs[k]:.1e} (the step of h in "
                   f"[{FD_VERDICT_STEPS[0]:g}, {FD_VERDICT_STEPS[1]:g}] with the smallest error / bound; "
                   f"V-curve minimum at h*={sweep.h_best:.1e})",
            evidence={**ev, "h_best": sweep.h_best, "h_verdict": float(sweep.hs[k]),
                      "series": {"fd_error_vs_h": {
                **sweep.series(), "vline": sweep.h_best,
                "extra": {"round-off bound": bounds.tolist()}}}}))
        errs = [float(np.max(np.abs(fd_jacobian(g, inst.z, hj, batched=True) - J))) for hj in JAC_STEPS]
        k = int(np.argmin(errs))
        out.append(CheckResult.compare(
            f"L3-{lab}-jacobian", errs[k], _fd_bound(b, s, JAC_STEPS[k], kappa),
            detail=f"full FD Jacobian ({b}x{b}) vs autograd at the best of h in {JAC_STEPS} "
                   f"(h={JAC_STEPS[k]:g}; a larger h crosses a kink along some e_i)",
            evidence={**ev, "errors_per_h": dict(zip(map(str, JAC_STEPS), errs, strict=True))}))
    out.extend(_kinks(ctx, layer))
    out.append(_kink_frequency(ctx, layer))
    out.append(_l3_float32(ctx, layer))
    out.extend(_l3_batched(ctx, layer))
    return out


def _exact_active_set(inst: Instance):
    """(exact solution ``reference.solve``, its active rows (m,) and free coordinates (b,) read at 1e-9
    scale, the Gram condition kappa of the active rows) for ``inst``."""
    sol = reference.solve(inst.z, inst.groups, metric=inst.metric, eps=inst.eps, bounds=inst.bounds,
                          targets=inst.targets)
    tol = 1e-9 * scale_of(inst.z)
    rows, free = active_set(sol.constraints, sol.y, tol=tol)
    return sol, rows, free, gram_condition(sol.constraints, sol.y, tol)


def _exact_projector(inst: Instance) -> tuple[np.ndarray, float]:
    """(projector of the exact solution's active set (b, b), its Gram condition kappa) for ``inst``."""
    sol, rows, free, kappa = _exact_active_set(inst)
    return projector_jacobian(sol.constraints.A[rows], free), kappa


def _l3_float32(ctx: Context, layer: Layer) -> CheckResult:
    """float32 autograd Jacobian, every case (b = 12, the float32-rounded z), against the projector of the
    exact (float64 reference) solution's active set: entries within 10 b u32 kappa + u32 (the float32
    backward's Gram solve and products, and the rounding of J to float32). The active set is the same in
    both precisions: at a random point the nearest kink is O(1 / b) away, far beyond float32 round-off."""
    worst, b = None, 12
    for ci, (case, box) in enumerate(all_cases()):
        inst = make_instance(case, box, b, _seed(ctx, 34, ci))
        inst = inst.with_z(inst.z.astype(np.float32).astype(np.float64))
        P, kappa = _exact_projector(inst)
        z = layer.tensor(inst.z, dtype=torch.float32)
        J = torch.autograd.functional.jacobian(lambda v, inst=inst: layer(v, inst), z)
        err = float(np.max(np.abs(J.detach().cpu().numpy().astype(np.float64) - P)))
        worst = _worse(worst, (err, _jac_tol(b, kappa, u=U32) + U32))
    return CheckResult.compare("L3-float32", *worst,
                               detail=f"max |J32 - projector(exact active set)| over every case (b={b}, "
                                      "float32 autograd)", evidence={"b": b, "seed": ctx.seed})


def _l3_batched(ctx: Context, layer: Layer, n_problems: int = 3) -> list[CheckResult]:
    """One batched call z (P, b) -> y (P, b), P = 3 problems with the same groups and different z (so
    different active sets), every case: the autograd Jacobian (P, b, P, b) must be block diagonal with
    block p the projector of problem p's exact active set (no cross-talk between the problems of a batch,
    no shared active set). Bound 10 b u kappa as for one problem."""
    out, b = [], 12
    for ci, (case, box) in enumerate(all_cases()):
        rng = _seed(ctx, 35, ci)
        inst = make_instance(case, box, b, rng)
        Z = np.stack([inst.z] + [inst.z + rng.normal(0.0, 1.0, b) for _ in range(n_problems - 1)])
        if box:
            Z[1:, 0] = 3.0 * np.sign(Z[1:, 0] + 0.5)         # a clamped coordinate the first may not have
        want = np.zeros((n_problems, b, n_problems, b))
        kappa = 1.0
        for p in range(n_problems):
            want[p, :, p, :], k = _exact_projector(inst.with_z(Z[p]))
            kappa = max(kappa, k)
        J = torch.autograd.functional.jacobian(lambda v, inst=inst: layer(v, inst), layer.tensor(Z),
                                               vectorize=True)
        err = float(np.max(np.abs(J.detach().cpu().numpy() - want)))
        out.append(CheckResult.compare(
            f"L3-{case_label(case, box)}-batched", err, _jac_tol(b, kappa),
            detail=f"max |J - blockdiag(projectors)| of one batched call, {n_problems} problems x b={b}",
            evidence={"case": case_label(case, box), "b": b, "problems": n_problems, "kappa": kappa,
                      "seed": ctx.seed}))
    return out


def _l3_instances(ctx: Context, desc: str):
    """L3's instances, the same for every target: (case label, Instance with b = 12 (24 full), its rng)."""
    b = 24 if ctx.full else 12
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), desc)):
        rng = _seed(ctx, 3, ci)
        yield case_label(case, box), make_instance(case, box, b, rng), rng


def _l3_solver_layer(ctx: Context, layer: Layer) -> list[CheckResult]:
    """L3 for a solver layer: its autograd Jacobian against the projector of the exact solution's active
    set (reference.solve), the bound from the solver's tolerance (see the claim's tolerance text)."""
    out = []
    for lab, inst, rng in _l3_instances(ctx, "L3 Jacobians (solver layer)"):
        b, s = inst.b, scale_of(inst.z)
        sol, rows, free, kappa = _exact_active_set(inst)
        J_exact = projector_jacobian(sol.constraints.A[rows], free)
        try:
            J = layer.jacobian(inst)
        except Unavailable as exc:          # a case the target cannot express (package: no pairwise)
            out.extend(_unavailable(f"L3-{lab}-projector", exc))
            continue
        d_tol = _solver_distance_tol(layer, float(np.sum((sol.y - inst.z) ** 2))) / s
        err = float(np.max(np.abs(J - J_exact)))
        out.append(CheckResult.compare(
            f"L3-{lab}-projector", err, kappa * d_tol,
            detail=f"max |J_layer - projector(exact active set)| ({layer.note}); max |J v| error "
                   f"{float(np.max(np.abs((J - J_exact) @ rng.normal(size=b)))):.3g} for a random v",
            evidence={"case": lab, "b": b, "seed": ctx.seed, "active_rows": int(rows.sum()),
                      "clamped": int((~free).sum()), "kappa": kappa, "solver_distance_tol": d_tol}))
    out.append(_l3_solver_vjp(ctx, layer, 16384 if ctx.full else 4096))
    return out


def _l3_solver_vjp(ctx: Context, layer: Layer, b: int) -> CheckResult:
    """Large batch of raw scores (z ~ N(0, 3) + g, most coordinates clipped by the box), dp, one attribute:
    relative error of the layer's VJP J^T v against the exact projector's P v, bound kappa sqrt(eps_abs +
    eps_rel) (kappa = 1 for one row): the solver's relative accuracy, to first order. Two probes: v ~ N(0, I)
    and the free part of the active row (P v = 0; a backward that drops the row returns v, error 1, where a
    random v sees only ~1/sqrt(free) of it)."""
    rng = _seed(ctx, 33, 0)
    g = rng.integers(0, 2, (b, 1))
    inst = Instance("dp", rng.normal(0.0, 3.0, b) + g[:, 0], g, None, "dp", EPS, BOX)
    sol = reference.solve(inst.z, inst.groups, metric="dp", eps=EPS, bounds=BOX)
    rows, free = active_set(sol.constraints, sol.y, tol=1e-9 * scale_of(inst.z))
    a = sol.constraints.A[rows]                  # projector onto {w_clamped = 0, a w = 0}: P v, one row
    af = np.where(free, a[0], 0.0) if a.shape[0] else None

    def projector(v):
        pv = np.where(free, v, 0.0)
        return pv if af is None else pv - af * (af @ pv) / (af @ af)

    probes = [rng.normal(size=b)] + ([af / np.linalg.norm(af)] if af is not None else [])
    z = layer.tensor(inst.z, requires_grad=True)
    y = layer(z, inst)
    errs = []
    for k, v in enumerate(probes):
        (gz,) = torch.autograd.grad(y, z, layer.tensor(v), retain_graph=k + 1 < len(probes))
        errs.append(float(np.linalg.norm(gz.cpu().numpy() - projector(v)) / np.linalg.norm(v)))
    bound = float(np.sqrt(sum(_solver_eps(layer))))
    return CheckResult.compare(
        f"L3-dp-box-rawscores-b{b}-vjp", max(errs), bound,
        detail=f"max over v (random; the active row's free part) of ||J^T v - P v|| / ||v|| at b = {b}, "
               f"z ~ N(0, 3) + g ({int((~free).sum())} of {b} clamped), {layer.note}",
        evidence={"b": b, "seed": ctx.seed, "clamped": int((~free).sum()), "active_rows": int(rows.sum()),
                  "errors": errs})


def _kinks(ctx: Context, layer: Layer) -> list[CheckResult]:
    """z = g(z0) is feasible, so every constraint tight at z has a zero multiplier: a kink.
    Box: u = +-e_i outward at a clamped coordinate (outward quotient 0). Rows: u = s_k a_k, the outward
    normal of a tight row (outward quotient 0). Both one-sided quotients must exist (h and h/4 agree)
    and g'(z;u) + g'(z;-u) must be far from 0."""
    out = []
    metrics = list(CASES) if ctx.full else ["dp", "pairwise", "mr"]
    h = 1e-6
    for ci, case in enumerate(metrics):
        rng = _seed(ctx, 31, ci)
        for kind, box in (("box", True), ("row", False)):
            inst0 = make_instance(case, box, 16, rng)
            if box:
                inst0.z[0] = 3.0                              # at least one coordinate clamped
            g0 = layer.numpy(inst0)
            z = g0(inst0.z)                                   # feasible point: kink of every tight constraint
            inst = inst0.with_z(z)
            C = inst.constraints()
            g = layer.numpy(inst)
            gz = g(z)
            s = scale_of(z)
            if kind == "box":
                at = np.flatnonzero((z <= BOX[0] + 1e-12) | (z >= BOX[1] - 1e-12))
                i = int(at[0])
                u = np.zeros(z.size)
                u[i] = 1.0 if z[i] > 0 else -1.0
                what = f"coordinate {i} at {'ub' if z[i] > 0 else 'lb'}"
            else:
                gaps = C.gaps(z)
                k = int(np.argmax(np.abs(gaps)))
                if abs(abs(gaps[k]) - C.eps) > 1e-9:
                    raise RuntimeError(f"kink construction: no row of {case} is tight at g(z0) "
                                       f"(largest gap {gaps[k]})")
                u = np.sign(gaps[k]) * C.A[k]
                u /= np.linalg.norm(u)
                what = f"row {C.names[k]} at {'+' if gaps[k] > 0 else '-'}eps (gap {gaps[k]:.3g})"
            steps = np.array([h, h / 4, -h, -h / 4])
            G = g(z + steps[:, None] * u)                     # one batched call
            d_plus = [(G[0] - gz) / h, (G[1] - gz) / (h / 4)]
            d_minus = [(G[2] - gz) / h, (G[3] - gz) / (h / 4)]
            exist = max(float(np.max(np.abs(d_plus[0] - d_plus[1]))),
                        float(np.max(np.abs(d_minus[0] - d_minus[1]))))
            roundoff = 4 * forward_error(z.size, s, kappa=gram_condition(C, gz, 1e-9 * s)) / (h / 4)
            asym = float(np.max(np.abs(d_plus[1] + d_minus[1])))
            ev = {"seed": ctx.seed, "h": h, "where": what, "d_plus": d_plus[1], "d_minus": d_minus[1]}
            out.append(CheckResult.compare(f"L3-kink-{kind}-{case}-exists", exist, roundoff,
                                           detail=f"one-sided quotients at h and h/4 differ by this ({what})",
                                           evidence=ev))
            out.append(CheckResult.compare(f"L3-kink-{kind}-{case}-differ", asym, 10 * roundoff, ">=",
                                           detail=f"|g'(z;u) + g'(z;-u)|_inf at the kink ({what})",
                                           evidence=ev))
    return out


def _kink_frequency(ctx: Context, layer: Layer) -> CheckResult:
    """Random z of every case: a point within h of a kink shows |g'(z;u) + g'(z;-u)| above round-off
    along a random u; the count must be 0 (kinks are a null set; P(within h) = O(h))."""
    n = 200 if ctx.full else 40
    h = 1e-7
    hits, total, worst = 0, 0, 0.0
    for ci, (case, box) in enumerate(all_cases()):
        rng = _seed(ctx, 32, ci)
        inst = make_instance(case, box, 16, rng)
        Z = inst.z + rng.normal(0, 1, (n, inst.b))            # random points, this case's groups
        U = rng.normal(size=(n, inst.b))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        G = layer.numpy(inst)(np.concatenate([Z, Z + h * U, Z - h * U]))    # one batched call
        gz, gp, gm = G[:n], G[n:2 * n], G[2 * n:]
        asym = np.max(np.abs((gp - gz) / h + (gm - gz) / h), axis=1)
        for j in range(n):
            s = scale_of(Z[j])
            kappa = gram_condition(inst.constraints(), gz[j], 1e-9 * s)
            roundoff = 4 * forward_error(inst.b, s, kappa=kappa) / h
            worst = float(np.max([worst, asym[j] / roundoff]))      # np.max: a NaN propagates
            hits += bool(not asym[j] <= 10 * roundoff)             # a NaN gradient counts as a hit
            total += 1
    return CheckResult.compare("L3-kink-frequency", hits / total, 0.0,
                               detail=f"{hits} of {total} random points within h={h:g} of a kink "
                                      f"(largest asymmetry / round-off {worst:.2g})",
                               evidence={"points": total, "h": h, "seed": ctx.seed})


# --------------------------------------------------------------------------------- L4 Jacobian structure

@register(Claim(
    id="L4", paper="A", provenance="stated",
    statement="backpropagation is stable: J = dg/dz is symmetric, idempotent, with eigenvalues in {0, 1}, "
              "hence ||J^T v|| <= ||v|| (the layer never amplifies a gradient)",
    tolerance="every deviation (|J - J^T|, |J^2 - J|, distance of each eigenvalue to {0,1}, "
              "max ||J^T v|| / ||v|| - 1) <= 10 b u kappa (entries of J from a Gram solve with condition "
              "kappa of the active rows on the free coordinates)",
    faults=("wrong-sign",)))
def check_l4(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L4", exc)
    b = 32 if ctx.full else 12
    out = []
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), "L4 Jacobians")):
        rng = _seed(ctx, 4, ci)
        inst = make_instance(case, box, b, rng)
        y = layer.numpy(inst)(inst.z)
        s = scale_of(inst.z)
        kappa = gram_condition(inst.constraints(), y, 1e-9 * s)
        J = layer.jacobian(inst)
        eig = np.linalg.eigvals(J)
        eig_dev = float(np.max(np.minimum(np.abs(eig), np.abs(eig - 1))))
        V = rng.normal(size=(200, b))
        gains = np.linalg.norm(V @ J, axis=1) / np.linalg.norm(V, axis=1)   # rows: (J^T v)^T = v^T J
        devs = {"symmetry": float(np.max(np.abs(J - J.T))), "idempotence": float(np.max(np.abs(J @ J - J))),
                "eigenvalues": eig_dev, "gain": max(0.0, float(gains.max()) - 1.0),
                "spectral_norm": max(0.0, float(np.linalg.norm(J, 2)) - 1.0)}
        worst = max(devs, key=devs.get)
        re = np.sort(eig.real)
        out.append(CheckResult.compare(
            f"L4-{case_label(case, box)}", devs[worst], _jac_tol(b, kappa),
            detail="largest deviation: " + ", ".join(f"{k}={v:.2g}" for k, v in devs.items())
                   + f"; rank {int(np.sum(np.abs(eig) > 0.5))} of {b}",
            evidence={"case": case_label(case, box), "b": b, "seed": ctx.seed, "kappa": kappa, **devs,
                      "max_gain": float(gains.max()),
                      "series": {"eigenvalues": {"x": list(range(b)), "y": re.tolist(),
                                                 "xlabel": "index", "ylabel": "eigenvalue of J"}}}))
    return out


# ---------------------------------------------------------------------------------- L5 Lipschitz stability

@register(Claim(
    id="L5", paper="A", provenance="reconstructed",
    statement="g is nonexpansive and firmly nonexpansive (Monte-Carlo pairs and a Nelder-Mead search "
              "maximising the ratios); in eps (dp, one attribute, no active box, |a^T z| > eps) "
              "||dy/d eps|| = 1/||a|| = sqrt(n0 n1/(n0+n1)); autograd d/d eps matches FD for every metric",
    tolerance="ratio <= 1 + 2 sqrt(b) delta / min||z - z'|| and firm residual <= the same (forward error "
              "delta = 4 b u scale kappa in each of g(z), g(z'), kappa the largest condition number of the "
              "active Gram matrix over the points used); eps-sensitivity: relative error <= "
              "10 b u (a few O(b)-term sums); d/d eps autograd vs central FD at h = 1e-6: the FD round-off "
              "2 delta / 2h",
    faults=("over-relaxed", "eps-misapplied")))
def check_l5(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L5", exc)
    b = 24 if ctx.full else 10
    n_pairs = 200 if ctx.full else 40
    out = []
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), "L5 Monte-Carlo")):
        rng = _seed(ctx, 5, ci)
        inst = make_instance(case, box, b, rng)
        g = layer.numpy(inst)
        Z1 = inst.z + rng.normal(0, 1, (n_pairs, b))
        r = np.geomspace(1e-3, 3, n_pairs)[:, None]
        W = rng.normal(size=(n_pairs, b))
        Z2 = Z1 + r * W / np.linalg.norm(W, axis=1, keepdims=True)
        ratios, firm = pair_ratios(g, Z1, Z2, batched=True)
        s = max(scale_of(Z1), scale_of(Z2))
        kappa = max_gram_condition(inst.constraints(), g(np.concatenate([Z1, Z2])), s)
        tol = 2 * np.sqrt(b) * forward_error(b, s, kappa=kappa) / 1e-3
        lab = case_label(case, box)
        ev = {"case": lab, "b": b, "pairs": n_pairs, "seed": ctx.seed,
              "series": {"lipschitz_ratios": {
                  "x": r.ravel().tolist(), "y": {"ratio": ratios.tolist(), "firm residual": firm.tolist()},
                  "xlabel": "||z - z'||", "ylabel": "ratio", "scale": "semilogx"}}}
        out.append(CheckResult.compare(f"L5-{lab}-lipschitz", float(ratios.max()), 1 + tol,
                                       detail="max ||g(z)-g(z')|| / ||z-z'|| over Monte-Carlo pairs",
                                       evidence=ev))
        out.append(CheckResult.compare(f"L5-{lab}-firm", float(firm.max()), tol,
                                       detail="max (||dg||^2 - <dg, dz>) / ||dz||^2 over Monte-Carlo pairs",
                                       evidence={k: v for k, v in ev.items() if k != "series"}))
    out.extend(_adversarial(ctx, layer))
    out.extend(_eps_sensitivity(ctx, layer))
    return out


def _adversarial(ctx: Context, layer: Layer) -> list[CheckResult]:
    """Nelder-Mead maximisation of the ratio and of the firm residual over (z, z') (b = 6)."""
    out = []
    cases = [("dp", True), ("eo", True)] + ([("pairwise", True), ("mr", True)] if ctx.full else [])
    maxfev = 2000 if ctx.full else 300
    for ci, (case, box) in enumerate(cases):
        rng = _seed(ctx, 51, ci)
        inst = make_instance(case, box, 6, rng)
        g = layer.numpy(inst)

        def ratio(z1, z2, g=g):
            r, _ = pair_ratios(g, z1[None], z2[None], batched=True)
            return float(r[0])

        def firm(z1, z2, g=g):
            _, f = pair_ratios(g, z1[None], z2[None], batched=True)
            return float(f[0])

        z2 = inst.z + 0.5 * rng.normal(size=6)
        lab = case_label(case, box)
        for name, obj, bound1 in (("lipschitz", ratio, 1.0), ("firm", firm, 0.0)):
            best, w1, w2 = adversarial_ratio(obj, inst.z, z2, maxfev=maxfev)
            dz = float(np.linalg.norm(w1 - w2))
            s = max(scale_of(w1), scale_of(w2))
            kappa = max_gram_condition(inst.constraints(), g(np.stack([w1, w2])), s)
            delta = forward_error(6, s, kappa=kappa)
            tol = 2 * np.sqrt(6) * delta / max(dz, 1e-300)
            out.append(CheckResult.compare(f"L5-adversarial-{lab}-{name}", best, bound1 + tol,
                                           detail=f"Nelder-Mead ({maxfev} evaluations), b=6, "
                                                  f"best pair at ||z - z'|| = {dz:.3g}",
                                           evidence={"z": w1, "z_prime": w2, "seed": ctx.seed}))
    return out


def _eps_sensitivity(ctx: Context, layer: Layer) -> list[CheckResult]:
    """dp, one attribute, no box, |d| > eps: ||dy/d eps|| (autograd) against sqrt(n0 n1/(n0+n1)) for
    every composition n0 = 1..b-1; and autograd d/d eps against central FD in eps for every case."""
    b = 24 if ctx.full else 12
    rng = _seed(ctx, 52)
    measured, closed = [], []
    for n0 in range(1, b):
        groups = np.r_[np.zeros(n0, int), np.ones(b - n0, int)][:, None]
        z = rng.normal(0, 1, b) + 0.8 * groups[:, 0]      # gap ~ 0.8 >> eps
        inst = Instance("dp", z, groups, None, "dp", EPS, None)
        C = inst.constraints()
        if abs(float(C.gaps(z)[0])) <= EPS:
            continue
        measured.append(float(np.linalg.norm(layer.eps_derivative(inst))))
        closed.append(float(np.sqrt(n0 * (b - n0) / b)))
    rel = np.abs(np.array(measured) / np.array(closed) - 1)
    out = [CheckResult.compare(
        "L5-eps-closed-form", float(rel.max()), 10 * b * U64,
        detail=f"max relative error of ||dy/d eps|| vs 1/||a|| over n0 = 1..{b - 1} (dp, no box)",
        evidence={"b": b, "seed": ctx.seed, "series": {"eps_sensitivity": {
            "x": closed, "y": {"autograd ||dy/d eps||": measured, "1/||a||": closed},
            "xlabel": "1/||a|| = sqrt(n0 n1/(n0+n1))", "ylabel": "||dy/d eps||"}}})]
    h = 1e-6
    worst, const = None, {}
    for ci, (case, box) in enumerate(all_cases()):
        inst = make_instance(case, box, 12, _seed(ctx, 53, ci))
        d_ad = layer.eps_derivative(inst)
        g_plus = layer.numpy(inst, eps=inst.eps + h)(inst.z)
        g_minus = layer.numpy(inst, eps=inst.eps - h)(inst.z)
        d_fd = (g_plus - g_minus) / (2 * h)
        err = float(np.max(np.abs(d_ad - d_fd)))
        s = scale_of(inst.z)
        kappa = max_gram_condition(inst.constraints(), np.stack([g_plus, g_minus]), s)
        tol = _fd_bound(inst.b, s, h, kappa=kappa)
        worst = _worse(worst, (err, tol))
        const[case_label(case, box)] = float(np.linalg.norm(d_fd))
    out.append(CheckResult.compare("L5-eps-grad", *worst,
                                   detail="max |autograd dy/d eps - central FD| over every case (h = 1e-6); "
                                          "measured ||dy/d eps|| in evidence",
                                   evidence={"eps_lipschitz": const, "seed": ctx.seed}))
    return out


# ------------------------------------------------------------------------------- L6 per-batch -> pooled

@register(Claim(
    id="L6", paper="A", provenance="code/docs",
    statement="with the same group counts in every batch, the pooled gap over all batches is <= eps "
              "(pooled group means are averages of batch means); with varying counts a counterexample "
              "exists: every batch within eps, pooled gap > eps",
    tolerance="pooled slack <= the L1 tolerance at the pooled size T b (each batch is within eps up to its "
              "round-off; averaging adds gamma_{Tb} of our evaluation); the counterexample must exceed eps "
              "with every batch's slack within its L1 tolerance",
    faults=("eps-misapplied",)))
def check_l6(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L6", exc)
    T, b = (50, 64) if ctx.full else (10, 32)
    out = []
    for ci, (case, box) in enumerate(ctx.iterate(all_cases(), "L6 pooled")):
        rng = _seed(ctx, 6, ci)
        base = make_instance(case, box, b, rng)
        zs, gs, ts = [], [], []
        for _ in range(T):
            perm = rng.permutation(b)                   # same composition (groups and labels), new order
            groups = base.groups[perm]
            targets = None if base.targets is None else base.targets[perm]
            if base.metric == "mr":
                targets = rng.uniform(-0.5, 1.0, b)
            elif base.metric == "eo":
                label = base.targets[perm] > 0.5
                targets = np.where(label, rng.uniform(0.51, 1, b), rng.uniform(-0.5, 0.5, b))
            offsets = np.array([0.8, -0.5][:groups.shape[1]])
            zs.append(rng.normal(0, 1, b) + groups @ offsets + rng.normal(0, 0.5))   # batch-level shift
            gs.append(groups)
            ts.append(targets)
        batches = Instance(case, np.stack(zs), np.stack(gs), None if base.targets is None else np.stack(ts),
                           base.metric, EPS, base.bounds)      # T problems, one batched call
        ys = layer.numpy(batches)(batches.z)
        pooled = Instance(case, ys.reshape(-1), np.concatenate(gs),
                          None if base.targets is None else np.concatenate(ts), base.metric, EPS, base.bounds)
        C = pooled.constraints()
        out.append(CheckResult.compare(f"L6-constant-{case_label(case, box)}", slack(C, pooled.z),
                                       feasibility_tol(C, pooled.z),
                                       detail=f"pooled slack over {T} batches of b={b} with constant counts",
                                       evidence={"case": case_label(case, box), "T": T, "b": b,
                                                 "seed": ctx.seed}))
    out.append(_l6_counterexample(ctx, layer))
    return out


def _l6_counterexample(ctx: Context, layer: Layer) -> CheckResult:
    """Two batches of b = 20: batch A has 18 of group 0 and z around +1, batch B 2 of group 0 and z
    around -1 (Simpson's paradox). Each projected batch has gap <= eps; the pooled group-0 mean is pulled
    towards batch A, the group-1 mean towards batch B, so the pooled gap is ~ 1.6 >> eps."""
    rng = _seed(ctx, 61)
    b = 20
    ys, gs, batch_slack, batch_tol = [], [], [], []
    for n0, level in ((18, 1.0), (2, -1.0)):
        groups = np.r_[np.zeros(n0, int), np.ones(b - n0, int)][:, None]
        z = level + 0.3 * rng.normal(size=b)
        inst = Instance("dp", z, groups, None, "dp", EPS, None)
        y = layer.numpy(inst)(z)
        C = inst.constraints()
        batch_slack.append(slack(C, y))
        batch_tol.append(feasibility_tol(C, z))
        ys.append(y)
        gs.append(groups)
    y, groups = np.concatenate(ys), np.concatenate(gs)
    pooled_gap = float(abs(build_constraints(groups, "dp", eps=EPS, b=y.size).gaps(y)[0]))
    within = all(s <= t for s, t in zip(batch_slack, batch_tol, strict=True))
    return _bool_result("L6-varying-counterexample", within and pooled_gap > EPS, pooled_gap, EPS, ">=",
                        detail=f"pooled gap of two batches with n0 = 18 and 2 (b=20); per-batch slacks "
                               f"{[f'{s:.2g}' for s in batch_slack]} (each must be <= its L1 tolerance: "
                               f"{within})", evidence={"seed": ctx.seed, "batch_slack": batch_slack})


# ---------------------------------------------------------------------------------------- L7 closed forms

@register(Claim(
    id="L7", paper="A", provenance="reconstructed",
    statement="DP, one attribute, no box: y = z if |d| <= eps, else y_i = z_i - s delta n1/(n0+n1) on "
              "S0, z_i + s delta n0/(n0+n1) on S1 (s = sign d, delta = |d| - eps); with a box "
              "y = clip(z - nu a), nu the root of nu -> a^T clip(z - nu a) at +-eps "
              "(nu = 0 when clip(z) is feasible)",
    tolerance="no box: |y - y_closed|_inf <= 2 delta (two O(b)-sum evaluations of d, delta = 4 b u scale); "
              "box: nu by scipy brentq to |dnu| <= xtol = 4 eps_mach |nu| (its smallest rtol; the root of "
              "a piecewise-linear monotone function), so |y - y_closed| <= 2 delta + 2 xtol ||a||_inf",
    faults=("swapped-weights", "eps-misapplied")))
def check_l7(ctx: Context) -> list[CheckResult]:
    try:
        layer = get_layer(ctx)
    except Unavailable as exc:
        return _unavailable("L7", exc)
    n_inst = 40 if ctx.full else 8
    rng = _seed(ctx, 7)
    worst: dict[str, tuple[float, float] | None] = dict.fromkeys(("nobox", "inside", "box", "box-clip"))
    for _ in ctx.iterate(range(n_inst), "L7 instances"):
        b = int(rng.integers(4, 65))
        n0 = int(rng.integers(1, b))
        groups = rng.permutation(np.r_[np.zeros(n0, int), np.ones(b - n0, int)])[:, None]
        sign = rng.choice([-1.0, 1.0])
        z = rng.normal(0, 1, b) + sign * 0.8 * groups[:, 0]
        a = build_constraints(groups, "dp", eps=EPS, b=b).A[0]
        s = scale_of(z)
        delta = forward_error(b, s)
        # no box, |d| > eps (offset 0.8 makes it so; redraws that land inside are the "inside" case)
        inst = Instance("dp", z, groups, None, "dp", EPS, None)
        key = "nobox" if abs(a @ z) > EPS else "inside"
        y = layer.numpy(inst)(z)
        worst[key] = _worse(worst[key], (float(np.max(np.abs(y - closed_form_dp(z, groups[:, 0], EPS)))),
                                         2 * delta))
        # inside: shrink the gap below eps
        zi = z - (a @ z) * a / (a @ a) * (1 - 0.5 * EPS / max(abs(a @ z), EPS))
        yi = layer.numpy(inst.with_z(zi))(zi)
        worst["inside"] = _worse(worst["inside"], (float(np.max(np.abs(yi - zi))), 2 * delta))
        # box
        inst_b = Instance("dp", z, groups, None, "dp", EPS, BOX)
        yb = layer.numpy(inst_b)(z)
        yc, nu = closed_form_dp_box(z, a, EPS, BOX)
        xtol = BRENTQ_RTOL * abs(nu) + 1e-300
        key = "box" if nu != 0.0 else "box-clip"
        worst[key] = _worse(worst[key], (float(np.max(np.abs(yb - yc))),
                                         2 * delta + 2 * xtol * np.max(np.abs(a))))
    # clip(z) feasible although z is not in the box: nu = 0
    zc = np.r_[np.full(3, 2.0), np.full(3, 2.0), rng.normal(0, 0.1, 4)]
    gc = np.r_[np.zeros(3, int), np.ones(3, int), rng.integers(0, 2, 4)][:, None]
    ac = build_constraints(gc, "dp", eps=EPS, b=zc.size).A[0]
    yc, nu = closed_form_dp_box(zc, ac, EPS, BOX)
    yb = layer.numpy(Instance("dp", zc, gc, None, "dp", EPS, BOX))(zc)
    worst["box-clip"] = _worse(worst["box-clip"],
                               (float(np.max(np.abs(yb - yc))), 2 * forward_error(10, 2.0)))
    return [CheckResult.compare(f"L7-{k}", f, bnd, detail=f"max |y_layer - y_closed_form| ({k})",
                                evidence={"instances": n_inst, "seed": ctx.seed})
            for k, (f, bnd) in ((k, v) for k, v in worst.items() if v is not None)]


def closed_form_dp(z: np.ndarray, s1: np.ndarray, eps: float) -> np.ndarray:
    """L7 without a box: y = z if |d| <= eps; else z_i - s delta n1/(n0+n1) on S0 and
    z_i + s delta n0/(n0+n1) on S1."""
    s1 = np.asarray(s1).astype(bool)
    n0, n1 = int((~s1).sum()), int(s1.sum())
    d = z[~s1].mean() - z[s1].mean()
    if abs(d) <= eps:
        return z.copy()
    sgn, delta = np.sign(d), abs(d) - eps
    return np.where(s1, z + sgn * delta * n0 / (n0 + n1), z - sgn * delta * n1 / (n0 + n1))


def closed_form_dp_box(z: np.ndarray, a: np.ndarray, eps: float, bounds) -> tuple[np.ndarray, float]:
    """L7 with a box: y = clip(z - nu a), nu the root of phi(nu) = a^T clip(z - nu a) = +-eps found by
    scipy brentq (an independent method from the breakpoint search of the reference). Returns (y, nu)."""
    from scipy.optimize import brentq

    lb, ub = bounds
    phi = lambda nu: float(a @ np.clip(z - nu * a, lb, ub))   # noqa: E731 - nonincreasing in nu
    d0 = phi(0.0)
    if abs(d0) <= eps:
        return np.clip(z, lb, ub), 0.0
    target = eps if d0 > eps else -eps
    span = (ub - lb + np.max(np.abs(z))) / np.min(np.abs(a[a != 0]))   # every coordinate clamped beyond
    lo, hi = (0.0, span) if d0 > eps else (-span, 0.0)
    nu = brentq(lambda v: phi(v) - target, lo, hi, xtol=1e-300, rtol=BRENTQ_RTOL, maxiter=500)
    return np.clip(z - nu * a, lb, ub), float(nu)
