"""Shared pytest configuration: hypothesis profiles and clean skipping of CUDA tests.

Profiles: ``ci`` (derandomised, no deadline: reproducible in CI) is selected by HYPOTHESIS_PROFILE=ci
(.ci/run sets it); ``dev`` (default) is randomised with the same example counts.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="CUDA not available (CUDA tests run on a GPU machine: tox -e torch-cuda)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
