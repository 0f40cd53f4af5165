"""The claims registry on CUDA: the checks that run the layer under test or a torch engine on the device
(L1-L7: ``layers.project`` on CUDA; O3: ``layers.online`` batched over seeds; N2: paper B's network) pass
with ``Context(backend="cuda")``, the branch that ``python -m verify --backend cuda`` takes.

cuda-marked (tests/conftest.py skips them without a GPU; tox -e torch-cuda runs them) and slow-marked
(~1 min: ``bench/gpu_session.sh`` runs the fast CUDA tests in its first part and this checklist through
``--verify``). Without cvxpy the L2 second-reference cases are INCONCLUSIVE, not FAIL.
"""

import pytest

pytest.importorskip("torch")

import verify.claims  # noqa: E402,F401  (registers every claim)
from verify.registry import REGISTRY, Context, Verdict  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.torch, pytest.mark.slow]

CUDA_CLAIMS = [("L1", {}), ("L2", {}), ("L3", {}), ("L4", {}), ("L5", {}), ("L6", {}), ("L7", {}),
               ("O3", {"T": 3000, "seeds": 8}), ("N2", {})]


@pytest.mark.parametrize("cid,options", CUDA_CLAIMS, ids=[c for c, _ in CUDA_CLAIMS])
def test_claim_passes_on_cuda(cid, options):
    results = REGISTRY[cid].run(Context(backend="cuda", options=options))
    assert results
    failed = [f"{r.id}: {r.figure} {r.relation} {r.bound} ({r.detail})" for r in results
              if r.verdict == Verdict.FAIL]
    assert not failed, "\n".join(failed)


def test_planted_fault_caught_on_cuda():
    """The CUDA branch can fail: L3's wrong-sign backward FAILs there too."""
    results = REGISTRY["L3"].run(Context(backend="cuda", fault="wrong-sign"))
    assert any(r.verdict == Verdict.FAIL for r in results)
