"""Registry entries P1-P6: the algebra of the proofs behind L3, L5, L7, O1 and N1, checked with sympy.

Each check is exact: a residual is either proven identically 0 by sympy (figure 0.0) or measured at a
sample point (figure > 0, FAIL); finite checks use exact rationals or rigorous interval arithmetic.
The code lives in proofs_numeric/ (sympy and numpy only: no torch, no cvxpy).
"""

from __future__ import annotations

from proofs_numeric import online, projection
from proofs_numeric.exact import Finding
from verify.registry import CheckResult, Claim, Context, register

EXACT = ("exact: residuals are sympy-simplified to identically 0 (bound 0; a residual not proven 0 is "
         "evaluated at a rational sample point and FAILs); no floating point, so no round-off allowance")


def _results(cid: str, findings: list[Finding]) -> list[CheckResult]:
    return [CheckResult.compare(f"{cid}-{f.case}", f.figure, f.bound, f.relation, detail=f.detail,
                                evidence=dict(f.evidence)) for f in findings]


@register(Claim(
    id="P1", paper="A", provenance="proof algebra",
    statement="L7's closed forms solve the KKT system: DP, one attribute, no box: "
              "y_i = z_i - s delta n1/(n0+n1) on S0, z_i + s delta n0/(n0+n1) on S1 "
              "(symbolic n0, n1); with a box y = clip(z - nu a) is a KKT point at exact rational instances",
    tolerance=EXACT + "; box case: exact rational KKT violation = 0",
    faults=projection.P1_FAULTS))
def check_p1(ctx: Context) -> list[CheckResult]:
    return _results("P1", projection.p1_closed_forms(full=ctx.full, fault=ctx.fault))


@register(Claim(
    id="P2", paper="A", provenance="proof algebra",
    statement="L3's Jacobian J = I - A_F^T (A_F A_F^T)^{-1} A_F on the free coordinates "
              "(0 on box-active ones) is symmetric, idempotent, of rank #free - #active rows, and equals "
              "dy/dz of the KKT solution on a fixed active set (DP, pairwise DP, EO, MR rows; "
              "one fully symbolic row)",
    tolerance=EXACT + "; ranks are exact (rational matrices)",
    faults=projection.P2_FAULTS))
def check_p2(ctx: Context) -> list[CheckResult]:
    return _results("P2", projection.p2_jacobian(full=ctx.full, fault=ctx.fault))


@register(Claim(
    id="P3", paper="A", provenance="proof algebra",
    statement="L5's eps-sensitivity: ||dy/d eps|| = 1/||a|| = sqrt(n0 n1/(n0+n1)) for one DP attribute, "
              "no box, |d| > eps (from the closed form, symbolic n0, n1, and from the KKT solution)",
    tolerance=EXACT,
    faults=projection.P3_FAULTS))
def check_p3(ctx: Context) -> list[CheckResult]:
    return _results("P3", projection.p3_sensitivity(full=ctx.full, fault=ctx.fault))


@register(Claim(
    id="P4", paper="A", provenance="proof algebra",
    statement="sum_{t<=T} 1/sqrt(t) <= 2 sqrt(T) - 1 for every T >= 1 (induction with the integral bound, "
              "symbolic; and for T = 1..N with rigorous interval arithmetic)",
    tolerance=EXACT + "; finite T: mpmath interval arithmetic (40 digits, outward rounding), the lower "
                      "end of the slack interval must be >= 0 (equality at T = 1)",
    faults=online.P4_FAULTS))
def check_p4(ctx: Context) -> list[CheckResult]:
    return _results("P4", online.p4_sum_bound(20000 if ctx.full else 200, fault=ctx.fault))


@register(Claim(
    id="P5", paper="A", provenance="proof algebra",
    statement="O1's proof: v_t <= (lam_{t+1} - lam_t)/eta_t, Abel summation (identity for T = 1..8), "
              "dropped terms <= 0 when lam >= 0, lam_1 = 0 and 1/eta_t nondecreasing, hence "
              "(1/N_T) sum b_t g_t <= eps + lam_{T+1}/(eta_T N_T); checked exactly on two seeded streams "
              "(lambda growing; lambda first held at 0 by the projection max(0, .))",
    tolerance=EXACT + "; stream: exact rationals (Fraction), slack must be >= 0",
    faults=online.P5_FAULTS))
def check_p5(ctx: Context) -> list[CheckResult]:
    t_max, stream = (12, 2000) if ctx.full else (8, 200)
    return _results("P5", online.p5_abel(t_max, stream, seed=ctx.seed, fault=ctx.fault))


@register(Claim(
    id="P6", paper="B", provenance="proof algebra",
    statement="the OGD bound R^2/(2 eta) + eta G^2 T/2 is minimised at eta = R/(G sqrt T) "
              "with value R G sqrt T",
    tolerance=EXACT,
    faults=online.P6_FAULTS))
def check_p6(ctx: Context) -> list[CheckResult]:
    return _results("P6", online.p6_ogd_step(fault=ctx.fault))
