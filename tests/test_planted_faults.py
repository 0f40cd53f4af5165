"""Generic checklist over the whole registry: every claim passes its quick check, and every planted
fault of every claim is caught (at least one case FAILs). A check that cannot fail is a defect.

Test ids read as claims: ``test_claim[L3]``, ``test_fault[L3-wrong-sign]``. Claims whose quick check
takes more than ~20 s on 2 cores are marked ``slow`` here (``SLOW``), or by the claim module through
``Claim.slow = True`` if the registry grows that field; their ids still appear in the checklist.
"""

import pytest

from verify.registry import Context, Verdict, all_claims

# Claims whose quick check takes more than ~10 s on 2 cores (measured: N1 15 s, N3 16 s, O1 11 s; each
# fault run costs as much again) and whose own test file (test_paperb.py, test_online.py) already runs
# that quick check and its planted faults in the fast suite: generic copies only with `-m slow`.
# Claims the modules mark themselves (``claim.slow = True``: O3, O4, O6) are slow here too.
SLOW: set[str] = {"N1", "N3", "O1"}

CLAIMS = all_claims()


# Planted faults that run the authors' cvxpylayers layer: skipped without cvxpy (tests/conftest.py).
NEEDS_CVXPY: set[str] = {"default-tolerance-solver"}


def _marks(claim, fault=None):
    marks = [pytest.mark.slow] if claim.id in SLOW or getattr(claim, "slow", False) else []
    return marks + ([pytest.mark.cvxpy] if fault in NEEDS_CVXPY else [])


def _target(claim):
    """The default target when the claim supports it, else the first one it supports."""
    return "ours" if "ours" in claim.targets else claim.targets[0]


def _run(claim, fault=None):
    results = claim.run(Context(target=_target(claim), fault=fault))
    assert results, f"{claim.id} returned no result"
    return results


@pytest.mark.parametrize("claim", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CLAIMS])
def test_claim(claim):
    """The claim's quick check has no FAIL, every case id belongs to the claim, verdicts are Verdicts."""
    results = _run(claim)
    for r in results:
        assert isinstance(r.verdict, Verdict)
        assert r.id == claim.id or r.id.startswith(f"{claim.id}-"), f"case id {r.id!r} not under {claim.id}"
    failed = [f"{r.id}: {r.figure} {r.relation} {r.bound} ({r.detail})" for r in results
              if r.verdict == Verdict.FAIL]
    assert not failed, "\n".join(failed)


FAULTS = [pytest.param(c, f, id=f"{c.id}-{f}", marks=[pytest.mark.fault, *_marks(c, f)])
          for c in CLAIMS for f in c.faults]


@pytest.mark.parametrize("claim,fault", FAULTS)
def test_fault(claim, fault):
    """With the planted fault, at least one case FAILs."""
    results = _run(claim, fault)
    assert any(r.verdict == Verdict.FAIL for r in results), (
        f"planted fault {fault!r} of {claim.id} was not detected: "
        + "; ".join(f"{r.id}={r.verdict.value} ({r.figure} {r.relation} {r.bound})" for r in results))


@pytest.mark.parametrize("claim", [pytest.param(c, id=c.id) for c in CLAIMS])
def test_claim_metadata(claim):
    """Every claim names at least one planted fault, a tolerance, and targets the suite knows."""
    assert claim.faults, f"{claim.id} has no planted fault: its check cannot be shown to fail"
    assert claim.tolerance.strip(), f"{claim.id} states no tolerance"
    assert claim.targets and set(claim.targets) <= {"ours", "paper", "package"}


def test_unknown_fault_raises():
    claim = CLAIMS[0]
    with pytest.raises(ValueError, match="no planted fault"):
        claim.run(Context(fault="no-such-fault"))
