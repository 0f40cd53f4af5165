"""Proof algebra of the fairness layer (paper A): closed forms (L7), Jacobian (L3), eps-sensitivity (L5).

The layer is y = argmin ||y - z||^2 s.t. |a^T y| <= eps (lb <= y <= ub). With one DP attribute,
a = 1_{S0}/n0 - 1_{S1}/n1, d = a^T z = mean_0(z) - mean_1(z), ||a||^2 = 1/n0 + 1/n1. We write the
KKT system with one signed multiplier mu of the two-sided row (mu > 0: a^T y = eps active,
mu < 0: a^T y = -eps active): stationarity 2(y - z) + mu a + (alpha - beta) = 0, alpha, beta >= 0
the multipliers of y <= ub and y >= lb.

Faults (planted, see verify/claims_proofs.py) select the deliberately wrong formula under test.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from proofs_numeric.exact import Finding, clip, rational, residual, worst
from reference.constraints import build_constraints

P1_FAULTS = ("swapped-weights", "clip-after-projection", "feasibility-of-unclipped-z")
P2_FAULTS = ("no-projection", "no-inverse")
P3_FAULTS = ("wrong-constant",)

# Group sizes (n0, n1) of the concrete KKT instances; unequal sizes, so swapped weights show.
SIZES = ((1, 2), (2, 3), (3, 1))
SIZES_FULL = SIZES + ((4, 3), (2, 5))


def _check_fault(fault: str | None, known: tuple[str, ...]) -> None:
    if fault is not None and fault not in known:
        raise ValueError(f"unknown fault {fault!r}; known: {known}")


# ---------------------------------------------------------------------------------------------
# The stated closed form (L7) and the KKT solution it is compared with
# ---------------------------------------------------------------------------------------------

def stated_shift(n0, n1, d, eps, fault: str | None = None) -> tuple:
    """L7's closed form for |d| > eps: (y_i - z_i on S0, y_i - z_i on S1).

    s = sign d, delta = |d| - eps: shifts (-s delta n1/(n0+n1), +s delta n0/(n0+n1)).
    The fault ``swapped-weights`` uses n0 on S0 and n1 on S1 instead.
    """
    s = sp.sign(d)
    delta = sp.Abs(d) - eps
    w0, w1 = (n0, n1) if fault == "swapped-weights" else (n1, n0)
    return -s * delta * w0 / (n0 + n1), s * delta * w1 / (n0 + n1)


def kkt_solution(a: sp.Matrix, z: sp.Matrix, eps, side: int) -> tuple[sp.Matrix, sp.Expr]:
    """Solve the KKT equations with the row active at a^T y = side * eps (no box).

    Unknowns y (b,), mu: 2(y - z) + mu a = 0 and a^T y = side * eps, a linear system of size b + 1.
    Returns (y, mu) as expressions in z and eps.
    """
    b = a.shape[0]
    M = sp.zeros(b + 1, b + 1)
    M[:b, :b] = 2 * sp.eye(b)
    M[:b, b] = a
    M[b, :b] = a.T
    rhs = sp.Matrix.vstack(2 * z, sp.Matrix([side * eps]))
    sol = M.LUsolve(rhs)
    return sp.simplify(sol[:b, 0]), sp.simplify(sol[b, 0])


def dp_row(n0: int, n1: int) -> sp.Matrix:
    """a = 1_{S0}/n0 - 1_{S1}/n1 with S0 = the first n0 coordinates, exactly."""
    return sp.Matrix([sp.Rational(1, n0)] * n0 + [sp.Rational(-1, n1)] * n1)


def p1_closed_form_general(fault: str | None = None) -> list[Finding]:
    """KKT derivation with symbolic group sizes n0, n1 and symbolic d = a^T z = mean_0(z) - mean_1(z).

    Stationarity gives y_i = z_i - mu a_i / 2, so y - z is constant on each group and
    a^T y = d - mu ||a||^2 / 2. The active side s fixes a^T y = s eps; solve for mu and compare the
    shifts with L7. Dual feasibility: s mu = 2 delta / ||a||^2 > 0 on the region |d| > eps, sign d = s.
    """
    n0, n1 = sp.symbols("n0 n1", positive=True, integer=True)
    mu = sp.Symbol("mu", real=True)
    eps = sp.Symbol("eps", nonnegative=True)
    dl = sp.Symbol("delta", positive=True)          # |d| - eps on the active side
    a0, a1 = 1 / n0, -1 / n1
    norm2 = n0 * a0**2 + n1 * a1**2                  # ||a||^2 from the group structure
    out = []
    for side in (1, -1):
        d = side * (eps + dl)                        # |d| > eps, sign d = side
        mu_sol = sp.solve(sp.Eq(d - mu * norm2 / 2, side * eps), mu)
        if len(mu_sol) != 1:
            raise RuntimeError(f"KKT equation for mu has {len(mu_sol)} solutions, expected 1")
        mu_s = mu_sol[0]
        derived = (-mu_s * a0 / 2, -mu_s * a1 / 2)
        stated = stated_shift(n0, n1, d, eps, fault)
        r = residual(sp.Matrix([derived[0] - stated[0], derived[1] - stated[1]]))
        dual = residual(side * mu_s - 2 * dl / norm2)
        dual_ok = sp.simplify(side * mu_s).is_positive
        fig = worst(r, dual) if dual_ok else float("inf")
        out.append(Finding(
            case=f"general-{'upper' if side > 0 else 'lower'}", figure=fig, bound=0.0,
            detail=f"symbolic n0, n1, d; a^T y = {'+' if side > 0 else '-'}eps active: "
                   f"residual(KKT shift - L7 shift) = {r:.3g}, s*mu = 2 delta/||a||^2 > 0: {dual_ok}",
            evidence={"mu": str(sp.simplify(mu_s.subs(dl, sp.Abs(d) - eps))),
                      "norm2": str(sp.simplify(norm2))}))
    return out


def p1_closed_form_instances(sizes, fault: str | None = None) -> list[Finding]:
    """Full KKT linear system with one symbol per z_i for concrete group sizes (n0, n1), both sides.

    The solution is compared coordinate by coordinate with L7 evaluated at d = a^T z on the region
    of its side (d = side * (eps + delta), delta > 0, substituted for the first z of S0).
    """
    out = []
    eps = sp.Symbol("eps", nonnegative=True)
    dl = sp.Symbol("delta", positive=True)
    for n0, n1 in sizes:
        b = n0 + n1
        a = dp_row(n0, n1)
        z = sp.Matrix(sp.symbols(f"z0:{b}", real=True))
        largest = 0.0
        for side in (1, -1):
            # Put z on the region |d| > eps with sign d = side: solve a^T z = side (eps + delta) for z0.
            z0_val = sp.solve(sp.Eq((a.T * z)[0], side * (eps + dl)), z[0])[0]
            y, mu = kkt_solution(a, z, eps, side)
            y, mu = y.subs(z[0], z0_val), mu.subs(z[0], z0_val)
            zz = z.subs(z[0], z0_val)
            sh0, sh1 = stated_shift(n0, n1, side * (eps + dl), eps, fault)
            stated = sp.Matrix([zz[i] + (sh0 if i < n0 else sh1) for i in range(b)])
            r = residual(y - stated)
            if not sp.simplify(side * mu).is_positive:
                r = float("inf")
            largest = worst(largest, r)
        out.append(Finding(case=f"n{n0}-{n1}", figure=largest, bound=0.0,
                           detail=f"n0={n0}, n1={n1}, symbolic z (b={b}): max residual of the KKT "
                                  f"solution against L7 over both active sides = {largest:.3g}",
                           evidence={"n0": n0, "n1": n1}))
    return out


# Box case: exact multiplier and KKT certificate ------------------------------------------------

def box_multiplier(z: list, a: list, eps, lb, ub, feasible_if_z_is: bool = False) -> sp.Rational:
    """The root nu of h(nu) = a^T clip(z - nu a, lb, ub) at +-eps (0 when |h(0)| <= eps), exactly.

    h is nonincreasing and piecewise linear with breakpoints (z_i - lb)/a_i, (z_i - ub)/a_i, so the
    root lies on one linear piece and is found by exact interpolation. Raises if infeasible.
    ``feasible_if_z_is`` (planted fault of P1): also nu = 0 when the unclipped z satisfies |a^T z| <= eps.
    """
    h = lambda nu: sum(ai * clip(zi - nu * ai, lb, ub) for zi, ai in zip(z, a, strict=True))
    if feasible_if_z_is and abs(sum(ai * zi for ai, zi in zip(a, z, strict=True))) <= eps:
        return sp.Integer(0)
    h0 = h(0)
    if abs(h0) <= eps:
        return sp.Integer(0)
    sgn = 1 if h0 > eps else -1                      # nu > 0 lowers h; nu < 0 raises it
    target = sgn * eps
    bps = sorted({(zi - v) / ai for zi, ai in zip(z, a, strict=True) if ai != 0 for v in (lb, ub)
                  if sgn * (zi - v) / ai > 0}, key=lambda x: sgn * x)
    prev = sp.Integer(0)
    for bp in bps:
        if sgn * (h(bp) - target) <= 0:
            return prev + (h(prev) - target) * (bp - prev) / (h(prev) - h(bp))
        prev = bp
    raise ValueError(f"infeasible: a^T clip(z - nu a) never reaches {target} in the box [{lb}, {ub}]")


def kkt_violation(z: list, a: list, eps, lb, ub, y: list, mu) -> sp.Rational:
    """Largest violation of the KKT conditions of the boxed one-row projection at (y, mu), exactly.

    Primal: |a^T y| <= eps, lb <= y <= ub. Row: mu > 0 needs a^T y = eps, mu < 0 needs -eps.
    Box multipliers r = alpha - beta = -2(y - z) - mu a: r_i = 0 inside, >= 0 at ub, <= 0 at lb.
    0 means (y, mu) is a KKT point, hence (convex problem) the unique projection.
    """
    g = sum(ai * yi for ai, yi in zip(a, y, strict=True))
    v = [abs(g) - eps, sp.Integer(0)]
    v += [max(lb - yi, yi - ub) for yi in y]
    if mu != 0:
        v.append(abs(mu) * (eps - sp.sign(mu) * g))
    for zi, ai, yi in zip(z, a, y, strict=True):
        r = -2 * (yi - zi) - mu * ai
        v.append(abs(r) if lb < yi < ub else (-r if yi == ub else r))
    return max(v)


BOX_INSTANCES = (
    # (name, z, groups, eps, lb, ub): rational data, chosen so that clipping changes a^T y.
    ("upper", ["2", "4/5", "1/2", "1/5", "-1"], [0, 0, 0, 1, 1], "1/20", 0, 1),
    ("lower", ["-1", "1/10", "3/10", "6/5", "9/10", "2/5"], [0, 0, 0, 1, 1, 1], "1/10", 0, 1),
    ("clip-feasible", ["3/2", "1/2", "1", "-1/2"], [0, 0, 1, 1], "1/4", 0, 1),
    # a^T z = 0 is feasible, a^T clip(z) = -1/2 is not (a rule reading feasibility off the unclipped z
    # sets nu = 0 here) ...
    ("clip-makes-infeasible", ["2", "0", "1", "1"], [0, 0, 1, 1], "1/10", 0, 1),
    # ... and clipping flips the side: a^T z = 3/2 > 0 > a^T clip(z) = -1/2 (a side read off z fails); audit
    ("clip-flips-side", ["5", "0", "1", "1"], [0, 0, 1, 1], "1/10", 0, 1),
)


def p1_box(fault: str | None = None) -> list[Finding]:
    """L7 with a box: y = clip(z - nu a) with nu the root of a^T clip(z - nu a) = +-eps is a KKT
    point with mu = 2 nu (exact rationals). The fault ``clip-after-projection`` instead clips the
    unboxed projection z - nu0 a, nu0 = s (|d| - eps)/||a||^2; ``feasibility-of-unclipped-z`` takes nu = 0
    whenever |a^T z| <= eps, although the box can move a^T clip(z) outside [-eps, eps]."""
    out = []
    for name, z, groups, eps, lb, ub in BOX_INSTANCES:
        z = [sp.Rational(v) for v in z]
        eps = sp.Rational(eps)
        n0, n1 = groups.count(0), groups.count(1)
        a = [sp.Rational(1, n0) if g == 0 else sp.Rational(-1, n1) for g in groups]
        if fault == "clip-after-projection":
            d = sum(ai * zi for ai, zi in zip(a, z, strict=True))
            nu = sp.sign(d) * max(abs(d) - eps, 0) / sum(ai**2 for ai in a)
        else:
            nu = box_multiplier(z, a, eps, lb, ub, feasible_if_z_is=fault == "feasibility-of-unclipped-z")
        y = [clip(zi - nu * ai, lb, ub) for zi, ai in zip(z, a, strict=True)]
        viol = kkt_violation(z, a, eps, lb, ub, y, 2 * nu)
        clipped = sum(v in (lb, ub) for v in y)
        aty = sum(p * q for p, q in zip(a, y, strict=True))
        out.append(Finding(case=f"box-{name}", figure=float(viol), bound=0.0,
                           detail=f"box [{lb}, {ub}], eps={eps}: nu={nu}, y=clip(z - nu a) = "
                                  f"{[str(v) for v in y]} ({clipped} at a bound), a^T y = {aty}, "
                                  f"exact KKT violation = {viol}",
                           evidence={"z": [str(v) for v in z], "groups": groups, "nu": str(nu),
                                     "y": [str(v) for v in y], "a^T y": str(aty)}))
    return out


# ---------------------------------------------------------------------------------------------
# P2: the Jacobian of L3
# ---------------------------------------------------------------------------------------------

def jacobian_formula(A: sp.Matrix, fixed: list[int], fault: str | None = None) -> sp.Matrix:
    """L3's J: on free coordinates F, J_FF = I - A_F^T (A_F A_F^T)^{-1} A_F; 0 on fixed (box) ones.

    A: (m, b) active rows. Faults: ``no-projection`` J_FF = I; ``no-inverse`` J_FF = I - A_F^T A_F.
    """
    b = A.shape[1]
    free = [i for i in range(b) if i not in fixed]
    AF = A[:, free]
    if fault == "no-projection":
        JF = sp.eye(len(free))
    elif fault == "no-inverse":
        JF = sp.eye(len(free)) - AF.T * AF
    else:
        JF = sp.eye(len(free)) - AF.T * (AF * AF.T).inv() * AF
    J = sp.zeros(b, b)
    for p, i in enumerate(free):
        for q, k in enumerate(free):
            J[i, k] = JF[p, q]
    return sp.simplify(J)


def jacobian_derived(A: sp.Matrix, fixed: list[int]) -> sp.Matrix:
    """dy/dz of the projection on a fixed active set, from its KKT system (symbolic z, centers, bounds).

    y_i = u_i (a symbolic bound) for fixed i; on F: 2(y_F - z_F) + A_F^T mu = 0, A_F y_F + A_B u = c.
    """
    m, b = A.shape
    free = [i for i in range(b) if i not in fixed]
    f = len(free)
    z = sp.Matrix(sp.symbols(f"z0:{b}", real=True))
    c = sp.Matrix(sp.symbols(f"c0:{m}", real=True))
    u = sp.Matrix([sp.Symbol(f"u{i}", real=True) for i in fixed])
    AF, AB = A[:, free], A[:, fixed]
    M = sp.zeros(f + m, f + m)
    M[:f, :f] = 2 * sp.eye(f)
    M[:f, f:] = AF.T
    M[f:, :f] = AF
    rhs = sp.Matrix.vstack(2 * z[free, 0], c - (AB * u if fixed else sp.zeros(m, 1)))
    sol = M.LUsolve(rhs)
    y = sp.zeros(b, 1)
    for p, i in enumerate(free):
        y[i] = sol[p]
    for p, i in enumerate(fixed):
        y[i] = u[p]
    return sp.simplify(y.jacobian(z))


def _rows(groups, metric: str, active: list[int], targets=None) -> sp.Matrix:
    """Exact rational active rows of reference.constraints.build_constraints (rows are +-1/n_g)."""
    g = np.asarray(groups)
    b = g.shape[0]
    C = build_constraints(g, metric, eps=0.1, b=b, targets=targets)
    if max(active) >= C.m:
        raise ValueError(f"active row {max(active)} out of range: {metric} has {C.m} rows")
    return sp.Matrix([[rational(float(x), b) if x != 0 else 0 for x in C.A[k]] for k in active])


def p2_instances(full: bool = False) -> list[tuple[str, sp.Matrix, list[int], bool]]:
    """(name, active rows A (m, b), box-active coordinates, symbolic?) of the P2 cases."""
    a = sp.Matrix([sp.symbols("a0:4", real=True, nonzero=True)])
    g2 = [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [1, 1]]
    cells = [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [0, 1], [1, 0], [1, 1]]
    g_eo, y_eo = [0, 0, 1, 1, 0, 1, 0, 1], [0, 1, 0, 1, 1, 0, 0, 1]
    inst = [
        ("row-symbolic", a, [], True),
        ("dp-2attr", _rows(g2, "dp", [0, 1]), [0], False),
        ("pairwise-4cells", _rows(cells, "dp_pairwise", [0, 1, 2]), [7], False),
        ("eo-1attr", _rows(g_eo, "eo", [0, 1], targets=y_eo), [1], False),
        ("mr-1attr", _rows([0, 1, 0, 1, 1], "mr", [0, 1], targets=[0, 0, 0, 0, 0]), [], False),
    ]
    if full:
        g3 = list(itertools.product([0, 1], repeat=3)) * 2
        inst.append(("pairwise-8cells-tree", _rows(g3, "dp_pairwise", list(range(7))), [15], False))
    return inst


def p2_jacobian(full: bool = False, fault: str | None = None) -> list[Finding]:
    """J of L3 is symmetric, idempotent, of rank #free - #active rows, and equals dy/dz on the piece."""
    _check_fault(fault, P2_FAULTS)
    out = []
    for name, A, fixed, symbolic in p2_instances(full):
        m, b = A.shape
        free = [i for i in range(b) if i not in fixed]
        if not symbolic and A[:, free].rank() != m:
            raise ValueError(f"instance {name}: active rows are not independent on the free coordinates")
        J = jacobian_formula(A, fixed, fault)
        expect = len(free) - m
        parts = {
            "symmetric": residual(J - J.T),
            "idempotent": residual(J * J - J),
            # rank of a symmetric idempotent matrix = its trace (exact; also valid for symbolic rows)
            "rank": residual(J.trace() - expect) if symbolic else float(abs(J.rank() - expect)),
            "derivative": residual(J - jacobian_derived(A, fixed)),
        }
        out.append(Finding(case=name, figure=worst(*parts.values()), bound=0.0,
                           detail=f"{m} active rows, b={b}, box-active {fixed}, expected rank {expect}: "
                                  + ", ".join(f"{k} residual {v:.3g}" for k, v in parts.items()),
                           evidence={"b": b, "active_rows": m, "fixed": fixed, **parts}))
    return out


# ---------------------------------------------------------------------------------------------
# P3: the eps-sensitivity of L5
# ---------------------------------------------------------------------------------------------

def p3_sensitivity(full: bool = False, fault: str | None = None) -> list[Finding]:
    """||dy/d eps|| = 1/||a|| = sqrt(n0 n1/(n0 + n1)) (one DP attribute, no box, |d| > eps).

    General case: differentiate L7's closed form (symbolic n0, n1; verified against KKT by P1).
    Instances: differentiate the KKT solution (symbolic z) for concrete sizes. The fault
    ``wrong-constant`` compares with ||a|| instead of 1/||a||.
    """
    _check_fault(fault, P3_FAULTS)
    eps = sp.Symbol("eps", nonnegative=True)
    out = []

    def claimed(n0, n1):
        n0, n1 = sp.sympify(n0), sp.sympify(n1)
        return sp.sqrt(1 / n0 + 1 / n1) if fault == "wrong-constant" else sp.sqrt(n0 * n1 / (n0 + n1))

    n0, n1 = sp.symbols("n0 n1", positive=True, integer=True)
    absd = sp.Symbol("D", positive=True)            # |d| = eps + delta, independent of eps (z fixed)
    largest = 0.0
    for side in (1, -1):
        d = side * absd
        sh0, sh1 = stated_shift(n0, n1, d, eps)
        g0, g1 = sp.diff(sh0, eps), sp.diff(sh1, eps)     # z does not depend on eps
        norm = sp.sqrt(n0 * g0**2 + n1 * g1**2)
        largest = worst(largest, residual(norm - claimed(n0, n1)))
    out.append(Finding(case="general", figure=largest, bound=0.0,
                       detail=f"symbolic n0, n1: residual of ||dy/deps|| - {claimed(n0, n1)} = "
                              f"{largest:.3g}"))
    ident = residual(1 / (n0 * (1 / n0) ** 2 + n1 * (1 / n1) ** 2) - n0 * n1 / (n0 + n1))
    out.append(Finding(case="inverse-norm", figure=ident, bound=0.0,
                       detail=f"1/||a||^2 = n0 n1/(n0 + n1) for a = 1_S0/n0 - 1_S1/n1: residual {ident:.3g}"))
    for n0, n1 in SIZES_FULL if full else SIZES:
        b = n0 + n1
        a = dp_row(n0, n1)
        z = sp.Matrix(sp.symbols(f"z0:{b}", real=True))
        largest = 0.0
        for side in (1, -1):
            y, _ = kkt_solution(a, z, eps, side)
            norm = sp.sqrt(sum(v**2 for v in sp.diff(y, eps)))
            largest = worst(largest, residual(norm - claimed(n0, n1)))
        out.append(Finding(case=f"n{n0}-{n1}", figure=largest, bound=0.0,
                           detail=f"n0={n0}, n1={n1}: ||dy/deps|| from the KKT solution vs "
                                  f"{claimed(n0, n1)}: residual {largest:.3g}",
                           evidence={"n0": n0, "n1": n1, "sensitivity": str(claimed(n0, n1))}))
    return out


def p1_closed_forms(full: bool = False, fault: str | None = None) -> list[Finding]:
    """P1: L7's closed forms follow from the KKT system (general, instances) and the box case."""
    _check_fault(fault, P1_FAULTS)
    sizes = SIZES_FULL if full else SIZES
    return p1_closed_form_general(fault) + p1_closed_form_instances(sizes, fault) + p1_box(fault)
