"""P1-P6: the proof algebra (sympy) passes, and every planted fault FAILs. Needs sympy + numpy only."""

import pytest

pytest.importorskip("sympy")

from proofs_numeric import online, projection  # noqa: E402
from proofs_numeric.exact import rational, residual  # noqa: E402
from verify.claims_proofs import check_p1  # noqa: E402,F401  (registers P1-P6)
from verify.registry import REGISTRY, Context, Verdict  # noqa: E402

PROOF_IDS = ["P1", "P2", "P3", "P4", "P5", "P6"]
FAULT_CASES = [(cid, f) for cid in PROOF_IDS for f in REGISTRY[cid].faults]


def _run(cid, **kw):
    results = REGISTRY[cid].run(Context(**kw))
    assert results, f"{cid} returned no result"
    return results


@pytest.mark.parametrize("cid", PROOF_IDS)
def test_proof(cid):
    claim = REGISTRY[cid]
    assert claim.provenance == "proof algebra" and claim.paper == ("B" if cid == "P6" else "A")
    assert claim.faults, f"{cid} has no planted fault"
    for r in _run(cid):
        assert r.verdict == Verdict.PASS, f"{r.id}: {r.figure} {r.relation} {r.bound}: {r.detail}"
        assert r.id.startswith(f"{cid}-")


@pytest.mark.fault
@pytest.mark.parametrize("cid,fault", FAULT_CASES, ids=[f"{c}-{f}" for c, f in FAULT_CASES])
def test_proof_fault(cid, fault):
    failed = [r.id for r in _run(cid, fault=fault) if r.verdict == Verdict.FAIL]
    assert failed, f"planted fault {fault!r} of {cid} was not detected"


@pytest.mark.slow
@pytest.mark.parametrize("cid", PROOF_IDS)
def test_proof_full(cid):
    for r in _run(cid, profile="full"):
        assert r.verdict == Verdict.PASS, f"{r.id}: {r.detail}"


def test_p5_deterministic_and_seeded():
    a = [r.figure for r in _run("P5", seed=3)]
    assert a == [r.figure for r in _run("P5", seed=3)]


def test_p4_rigorous_case_evaluates_the_claimed_bound(monkeypatch):
    """The interval case checks the same B(T) as the symbolic steps: a false bound sqrt(T) fails it
    (it used to evaluate its own copy of 2 sqrt(T) - 1; audit)."""
    import sympy as sp

    monkeypatch.setattr(online, "p4_bound", lambda T, fault=None, sqrt=sp.sqrt: sqrt(T))
    exact = {f.case: f for f in online.p4_sum_bound(50)}["exact"]
    assert exact.figure < exact.bound


UNPROVEN = [("P1", projection, 1), ("P1", projection, 3), ("P2", projection, 3), ("P3", projection, 1),
            ("P5", online, 2)]


@pytest.mark.parametrize("cid,module,call", UNPROVEN)
def test_an_unproven_residual_fails_its_case(monkeypatch, cid, module, call):
    """residual() returns NaN for an identity sympy cannot prove; a case combining several residuals must
    FAIL when any one is NaN (Python's max(0.0, nan) is 0.0: an audit showed the NaN dropped, and a wrong
    P3 constant passing, at each of these calls -- the call-th residual of the check made NaN here)."""
    calls = []

    def flaky(expr):
        calls.append(expr)
        return float("nan") if len(calls) == call + 1 else residual(expr)

    monkeypatch.setattr(module, "residual", flaky)
    failed = [r.id for r in _run(cid) if r.verdict == Verdict.FAIL]
    assert len(calls) > call and failed, (cid, call, len(calls))


def test_residual_is_strict():
    import sympy as sp

    x = sp.Symbol("x", positive=True)
    assert residual((x + 1) ** 2 - x**2 - 2 * x - 1) == 0.0
    assert residual(sp.sqrt(x) ** 2 - x) == 0.0
    assert residual(x / (x + 1) - 1) > 0                    # false identity: positive witness
    assert residual(sp.Rational(1, 10**30)) > 0             # tiny is not zero


def test_closed_form_matches_box_multiplier_without_active_box():
    """With a box that never binds, the exact box root nu equals L7's s (|d| - eps)/||a||^2."""
    import sympy as sp

    z = [sp.Rational(v) for v in ("3/5", "1/2", "2/5", "1/5", "1/10")]
    a = list(projection.dp_row(2, 3))
    eps = sp.Rational(1, 20)
    d = sum(p * q for p, q in zip(a, z, strict=True))
    nu = projection.box_multiplier(z, a, eps, -10, 10)
    assert nu == (abs(d) - eps) / sum(v**2 for v in a)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown fault"):
        projection.p2_jacobian(fault="nope")
    with pytest.raises(ValueError, match="no planted fault"):
        REGISTRY["P4"].run(Context(fault="no-projection"))
    with pytest.raises(ValueError, match="n_max"):
        online.p4_sum_bound(0)
    with pytest.raises(ValueError, match="infeasible"):
        projection.box_multiplier([3, 3], [1, 1], 0, 1, 2)      # a^T y >= 2 on the box
    with pytest.raises(ValueError, match="denominator"):
        rational(0.1234567, 8)


def test_no_torch_or_cvxpy_needed():
    """The proof checks import neither torch nor cvxpy (they must run in a numpy + sympy environment)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, verify.claims_proofs; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'cvxpy', 'cvxpylayers'}); "
            "assert not bad, bad")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=root)
