"""Proof algebra of the online guarantees: sum 1/sqrt(t) (P4), Abel summation of O1 (P5), OGD step (P6).

All identities are proven by sympy (residual exactly 0); finite checks use exact rationals or
rigorous interval arithmetic (mpmath.iv, outward rounding), so every tolerance is exactly 0.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import sympy as sp
from mpmath.ctx_iv import MPIntervalContext

from proofs_numeric.exact import Finding, residual, worst

P4_FAULTS = ("wrong-constant",)
P5_FAULTS = ("increasing-step", "no-projection")
P6_FAULTS = ("wrong-step",)


def _check_fault(fault: str | None, known: tuple[str, ...]) -> None:
    if fault is not None and fault not in known:
        raise ValueError(f"unknown fault {fault!r}; known: {known}")


# ---------------------------------------------------------------------------------------------
# P4: sum_{t<=T} 1/sqrt(t) <= 2 sqrt(T) - 1
# ---------------------------------------------------------------------------------------------

def p4_bound(T, fault: str | None = None, sqrt=sp.sqrt):
    """The claimed bound B(T) = 2 sqrt(T) - 1 (fault ``wrong-constant``: 2 sqrt(T) - 2); ``sqrt``: sympy's,
    or an interval one (the rigorous check evaluates this same expression in interval arithmetic)."""
    return 2 * sqrt(T) - (2 if fault == "wrong-constant" else 1)


def p4_sum_bound(n_max: int, fault: str | None = None) -> list[Finding]:
    """Proof by induction, each step checked by sympy, then a rigorous check for T = 1..n_max.

    integral: int_{t-1}^t s^{-1/2} ds = 2 sqrt(t) - 2 sqrt(t-1)  (t >= 1);
    pointwise: 1/sqrt(t) <= that integral  <=>  2t - 1 >= 2 sqrt(t(t-1))  <=>  (2t-1)^2 - 4t(t-1) = 1 >= 0;
    base: 1/sqrt(1) <= B(1); step: B(T) - B(T-1) = the integral over [T-1, T] (telescoping).
    """
    _check_fault(fault, P4_FAULTS)
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    u = sp.Symbol("u", nonnegative=True)             # t = u + 1 >= 1
    s = sp.Symbol("s", positive=True)
    t = u + 1
    integral = sp.integrate(s ** sp.Rational(-1, 2), (s, t - 1, t))
    closed = 2 * sp.sqrt(t) - 2 * sp.sqrt(t - 1)
    squared = sp.expand((2 * t - 1) ** 2 - 4 * t * (t - 1))
    out = [
        Finding("integral", residual(integral - closed), 0.0,
                detail=f"int_(t-1)^t s^(-1/2) ds = {integral}: residual against 2 sqrt t - 2 sqrt(t-1)"),
        Finding("pointwise", residual(squared - 1), 0.0,
                detail=f"(2t-1)^2 - 4t(t-1) = {squared} (> 0, so 1/sqrt t <= the integral for t >= 1)"),
        Finding("base", float(1 - p4_bound(1, fault)), 0.0,
                detail=f"T=1: 1 - B(1) = {1 - p4_bound(1, fault)} must be <= 0"),
        Finding("telescoping", residual(p4_bound(t + 1, fault) - p4_bound(t, fault) - closed.subs(u, u + 1)),
                0.0, detail="B(T) - B(T-1) - int_(T-1)^T s^(-1/2) ds, T = u + 2"),
    ]
    # Rigorous enclosure of slack(T) = B(T) - sum_{t<=T} 1/sqrt(t): the check needs its lower end >= 0.
    iv = MPIntervalContext()                          # private context: 40 digits, outward rounding
    iv.dps = 40
    acc, lows = iv.mpf(0), []
    for T in range(1, n_max + 1):
        acc += 1 / iv.sqrt(T)
        lows.append((p4_bound(T, fault, sqrt=iv.sqrt) - acc).a)
    k_min = min(range(n_max), key=lambda k: lows[k])
    tail = float(lows[-1])
    after_one = float(min(lows[1:])) if n_max > 1 else float("nan")
    figure = float(lows[k_min])
    out.append(Finding(
        "exact", figure, 0.0, relation=">=",
        detail=f"min over T=1..{n_max} of slack B(T) - sum 1/sqrt(t) (interval lower ends) = {figure:.6g} "
               f"at T={k_min + 1}; min over T>=2: {after_one:.6g}; slack at T={n_max}: {tail:.6g}",
        evidence={"n_max": n_max, "argmin_T": k_min + 1, "min_slack_T>=2": after_one,
                  "slack_at_n_max": tail}))
    return out


# ---------------------------------------------------------------------------------------------
# P5: the Abel-summation step of O1
# ---------------------------------------------------------------------------------------------

def abel_sides(T: int):
    """(lhs, rhs) of sum_{t=1}^T (lam_{t+1} - lam_t)/eta_t = lam_{T+1}/eta_T - lam_1/eta_1
    + sum_{t=2}^T lam_t (1/eta_{t-1} - 1/eta_t), with indexed symbols lam_1..lam_{T+1}, eta_1..eta_T."""
    lam = sp.symbols(f"lam1:{T + 2}", real=True)
    eta = sp.symbols(f"eta1:{T + 1}", positive=True)
    lhs = sum((lam[t + 1] - lam[t]) / eta[t] for t in range(T))
    rhs = (lam[T] / eta[T - 1] - lam[0] / eta[0]
           + sum(lam[t] * (1 / eta[t - 1] - 1 / eta[t]) for t in range(1, T)))
    return lhs, rhs


def dropped_terms(T: int, fault: str | None = None):
    """sum_{t=2}^T lam_t (1/eta_{t-1} - 1/eta_t) under lam_t >= 0 and 1/eta_t = w_t nondecreasing,
    w_t = w_1 + delta_2 + ... + delta_t with delta >= 0 (fault ``increasing-step``: w_t nonincreasing,
    w_t = w_1 - delta_2 - ... - delta_t)."""
    lam = sp.symbols(f"lam2:{T + 1}", nonnegative=True)
    delta = sp.symbols(f"delta2:{T + 1}", nonnegative=True)
    w1 = sp.Symbol("w1", positive=True)
    sgn = -1 if fault == "increasing-step" else 1
    w = [w1]
    for d in delta:
        w.append(w[-1] + sgn * d)
    return sp.expand(sum(lam[k] * (w[k] - w[k + 1]) for k in range(T - 1)))


def simulate_o1(T: int, seed: int, fault: str | None = None, eta0=Fraction(1, 2), eps=Fraction(1, 20),
                period: int = 40, gaps_first: bool = True) -> tuple[list[Fraction], int]:
    """Exact (Fraction) run of lam_{t+1} = max(0, lam_t + eta_t b_t (g_t - eps)) on a seeded stream.

    eta_t = eta0 / ceil(sqrt t): rational, positive, 1/eta_t nondecreasing, as O1 assumes (the package's
    eta0/sqrt t is irrational; O1's proof uses only these two properties). Gaps g_t in [1/4, 1/2] for the
    first (``gaps_first``) or last 10 of every ``period`` steps, else 0; b_t in 1..5. Gaps first, period
    40: lambda keeps growing, the projection max(0, .) never binds; gaps last: the opening zero-gap run
    holds lambda at 0 by the projection (it binds at every step of it). Faults: ``increasing-step``:
    eta_t = eta0 ceil(sqrt t); ``no-projection``: lam_{t+1} = lam_t + eta_t b_t (g_t - eps), unprojected
    (a negative lambda makes the bound fail on a zero-gap run: its slack falls below 0 once eta decays).
    Returns (the slacks eps + lam_{T+1}/(eta_T N_T) - (1/N_T) sum b_t g_t for T = 1..T, the number of
    steps at which the projection bound: lam_t + eta_t v_t < 0).
    """
    rng = random.Random(seed)
    lam, n, sbg, slacks, clamped = Fraction(0), 0, Fraction(0), [], 0
    for t in range(1, T + 1):
        c = math.isqrt(t - 1) + 1                     # ceil(sqrt(t))
        eta = eta0 * c if fault == "increasing-step" else eta0 / c
        b = rng.randint(1, 5)
        on = (t - 1) % period < 10 if gaps_first else (t - 1) % period >= period - 10
        g = Fraction(rng.randint(5, 10), 20) if on else Fraction(0)
        x = lam + eta * b * (g - eps)
        clamped += x < 0
        lam = x if fault == "no-projection" else max(Fraction(0), x)
        n += b
        sbg += b * g
        slacks.append(eps + lam / (eta * n) - sbg / n)
    return slacks, clamped


def p5_abel(t_max: int, stream_len: int, seed: int, fault: str | None = None) -> list[Finding]:
    """O1's proof: the update gives v_t <= (lam_{t+1} - lam_t)/eta_t, Abel summation (identity,
    T = 1..t_max), the dropped terms are <= 0 (lam >= 0, lam_1 = 0, 1/eta_t nondecreasing), and
    v_t = b_t (g_t - eps) turns sum v_t <= lam_{T+1}/eta_T into the bound; finally an exact stream."""
    _check_fault(fault, P5_FAULTS)
    out = []
    # 1. lam' = max(0, lam + eta v) => (lam' - lam)/eta - v = (max(0, x) - x)/eta >= 0, x = lam + eta v.
    lam, eta = sp.Symbol("lam", nonnegative=True), sp.Symbol("eta", positive=True)
    uncertified = 0
    for x in (sp.Symbol("x", positive=True), sp.Symbol("x", negative=True), sp.Integer(0)):
        v = (x - lam) / eta
        gap = sp.simplify((sp.Max(0, lam + eta * v) - lam) / eta - v)
        uncertified += gap.is_nonnegative is not True
    out.append(Finding("update-step", float(uncertified), 0.0,
                       detail="(lam_{t+1} - lam_t)/eta_t - v_t >= 0 certified by sympy in the cases "
                              f"x > 0, x < 0, x = 0 (x = lam_t + eta_t v_t): {3 - uncertified}/3"))
    # 2. Abel summation identity.
    abel = worst(*(residual(lhs - rhs) for lhs, rhs in map(abel_sides, range(1, t_max + 1))))
    out.append(Finding("abel-identity", abel, 0.0,
                       detail=f"max over T=1..{t_max} of the simplified residual lhs - rhs = {abel:.3g}"))
    # 3. Dropped terms are <= 0 (with lam_1 = 0 the term -lam_1/eta_1 vanishes).
    bad = [T for T in range(2, t_max + 1) if dropped_terms(T, fault).is_nonpositive is not True]
    out.append(Finding("dropped-terms", float(len(bad)), 0.0,
                       detail=f"sum_(t=2)^T lam_t (1/eta_(t-1) - 1/eta_t) <= 0 certified for T=2..{t_max} "
                              f"except T in {bad}" + (" (1/eta_t nonincreasing)" if fault else ""),
                       evidence={"uncertified_T": bad, "example": str(dropped_terms(2, fault))}))
    # 4. Normalisation: (1/N) sum b g = eps + (1/N) sum v with v = b (g - eps), N = sum b.
    T = t_max
    b, g = sp.symbols(f"b1:{T + 1}", positive=True), sp.symbols(f"g1:{T + 1}", nonnegative=True)
    e = sp.Symbol("eps", nonnegative=True)
    N = sum(b)
    norm = residual(sum(bi * gi for bi, gi in zip(b, g, strict=True)) / N
                    - e - sum(bi * (gi - e) for bi, gi in zip(b, g, strict=True)) / N)
    out.append(Finding("normalisation", norm, 0.0,
                       detail=f"(1/N_T) sum b_t g_t - eps - (1/N_T) sum v_t, T={T}: residual {norm:.3g}"))
    # 5. The bound on exact streams: lambda growing; lambda held at 0 by the projection, then growing.
    for case, gaps_first in (("stream", True), ("stream-projected", False)):
        slacks, clamped = simulate_o1(stream_len, seed, fault, gaps_first=gaps_first)
        k = min(range(stream_len), key=lambda i: slacks[i])
        out.append(Finding(case, float(slacks[k]), 0.0, relation=">=",
                           detail=f"min over T=1..{stream_len} of eps + lam_(T+1)/(eta_T N_T) "
                                  f"- (1/N_T) sum b_t g_t = {float(slacks[k]):.6g} at T={k + 1} (exact; gaps "
                                  f"on the {'first' if gaps_first else 'last'} 10 of every 40 steps, "
                                  f"max(0, .) binding at {clamped} steps)",
                           evidence={"seed": seed, "T": stream_len, "argmin_T": k + 1,
                                     "gaps_first": gaps_first, "projection_binds": clamped,
                                     "slack_at_end": float(slacks[-1])}))
    return out


# ---------------------------------------------------------------------------------------------
# P6: the OGD step size of paper B
# ---------------------------------------------------------------------------------------------

def p6_ogd_step(fault: str | None = None) -> list[Finding]:
    """f(eta) = R^2/(2 eta) + eta G^2 T/2 (R, G, T > 0) has its minimum R G sqrt T at eta* = R/(G sqrt T).

    The claimed minimiser (fault ``wrong-step``: R/(G T)) must be the unique root of f' and attain the
    value; f(eta) - R G sqrt T = (R - eta G sqrt T)^2/(2 eta) >= 0 shows it is the global minimum.
    """
    _check_fault(fault, P6_FAULTS)
    R, G, T, eta = sp.symbols("R G T eta", positive=True)
    f = R**2 / (2 * eta) + eta * G**2 * T / 2
    claimed = R / (G * T) if fault == "wrong-step" else R / (G * sp.sqrt(T))
    roots = sp.solve(sp.diff(f, eta), eta)
    if len(roots) != 1:
        raise RuntimeError(f"f'(eta) = 0 has {len(roots)} positive roots, expected 1: {roots}")
    curvature = sp.diff(f, eta, 2)
    return [
        Finding("stationary", residual(roots[0] - claimed), 0.0,
                detail=f"root of f'(eta): {roots[0]}; claimed minimiser {claimed}"),
        Finding("value", residual(f.subs(eta, claimed) - R * G * sp.sqrt(T)), 0.0,
                detail=f"f(claimed) = {sp.simplify(f.subs(eta, claimed))} vs R G sqrt(T)"),
        Finding("global-min", residual(f - R * G * sp.sqrt(T) - (R - eta * G * sp.sqrt(T)) ** 2 / (2 * eta))
                + (0.0 if curvature.is_positive else float("inf")), 0.0,
                detail=f"f - R G sqrt T = (R - eta G sqrt T)^2/(2 eta); f'' = {curvature} > 0"),
    ]
