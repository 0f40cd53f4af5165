"""Shared pytest configuration: hypothesis profiles, and clean skipping where a backend is missing.

Profiles: ``ci`` (derandomised, no deadline: reproducible in CI) is selected by HYPOTHESIS_PROFILE=ci
(.ci/run sets it); ``dev`` (default) is randomised with the same example counts.

Backends: a test marked ``cvxpy`` or ``torch`` is skipped when that package is not installed (modules that
need it at import time skip themselves with pytest.importorskip), a ``cuda`` test when CUDA is not
available; without a GPU, Triton kernels (layers._fused) run in Triton's interpreter. So every environment
(tox.ini) collects the whole suite and reports what it could not run.
"""

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_available() -> bool:
    if not _installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


# layers._fused's Triton kernels run in Triton's interpreter (on CPU tensors) where there is no GPU; the
# switch is read when triton is imported, so it is set here, before any test module imports it.
if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    missing = {m: pytest.mark.skip(reason=f"{m} not installed")
               for m in ("cvxpy", "torch") if not _installed(m)}
    if not _cuda_available():
        missing["cuda"] = pytest.mark.skip(
            reason="CUDA not available (CUDA tests run on a GPU machine: tox -e torch-cuda)")
    for item in items:
        for marker, skip in missing.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
                break
