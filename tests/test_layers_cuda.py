"""layers on CUDA: agreement with the CPU layer and the reference, float32 tolerance, gradcheck, no syncs.

Skipped cleanly without a GPU: tests/conftest.py skips each cuda-marked test. Tolerances as in
tests/test_layers.py:
* CUDA vs CPU, float64: both are exact up to round-off (same formulas; the sums may be reduced in a
  different order): max |dy| <= 1e-12 * (1 + max|z|).
* CUDA float32 vs the float64 reference on the float32-rounded input: (4 b + 4) u32 scale kappa for
  separable rows (two b-term sums of size <= 2 scale, one rounding each for z - s and the clip; kappa the
  free-set amplification read off the reference), u32 |y| + 1e-12 scale for coupled rows (solved in
  float64, rounded once).
* gradcheck in float64 at non-kink points (the stencil stays on one affine piece).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import layers  # noqa: E402
import layers._rows  # noqa: E402
import reference  # noqa: E402

# Without a GPU every test here is reported skipped by tests/conftest.py (they are all cuda-marked).
sys.path.insert(0, str(Path(__file__).parent))
from test_layers import (  # noqa: E402
    BOUNDS,
    COUPLED,
    EPSS,
    SEPARABLE,
    U32,
    _grad_funcs,
    _kappa,
    _non_kink,
    make,
)

pytestmark = [pytest.mark.cuda, pytest.mark.torch]
CUDA = torch.device("cuda")


def run(inst, device, dtype=torch.float64, **kw):
    t = lambda x: torch.as_tensor(x, dtype=dtype, device=device)
    return layers.project(t(inst["z"]), torch.as_tensor(inst["groups"], device=device), metric=inst["metric"],
                          eps=inst["eps"], bounds=inst["bounds"], targets=t(inst["targets"]),
                          empty=inst["empty"], **kw)


@pytest.mark.parametrize("metric,k", SEPARABLE + COUPLED)
def test_cuda_matches_cpu_float64(metric, k):
    for seed in range(20):
        inst = make(seed, metric, k, 5 + 3 * seed, EPSS[seed % 5], BOUNDS[seed % 4], ties=seed % 2 == 0)
        y_cpu = run(inst, "cpu")
        y_gpu = run(inst, CUDA)
        assert y_gpu.device.type == "cuda"
        assert torch.abs(y_gpu.cpu() - y_cpu).max() <= 1e-12 * (1 + np.abs(inst["z"]).max())


@pytest.mark.parametrize("metric", ["dp", "mr", "eo"])
def test_cuda_batched_large(metric):
    """4096 problems x b = 256 with per-problem groups, eps and targets, CUDA vs CPU."""
    rng = np.random.default_rng(0)
    P, b = 4096, 256
    G = rng.integers(0, 2, (P, b))
    Z = rng.normal(0.5, 0.3, (P, b)) + 0.2 * G
    T = rng.uniform(0, 1, (P, b))
    E = rng.uniform(0, 0.1, P)
    kw = dict(metric=metric, bounds=(0, 1), empty="drop")
    y_cpu = layers.project(torch.tensor(Z), torch.tensor(G), eps=torch.tensor(E), targets=torch.tensor(T),
                           **kw)
    y_gpu = layers.project(torch.tensor(Z, device=CUDA), torch.tensor(G, device=CUDA),
                           eps=torch.tensor(E, device=CUDA), targets=torch.tensor(T, device=CUDA), **kw)
    assert torch.abs(y_gpu.cpu() - y_cpu).max() <= 1e-12 * (1 + np.abs(Z).max())


@pytest.mark.parametrize("metric,k", SEPARABLE + [("dp_pairwise", 2), ("mr", 2)])
def test_cuda_float32_within_derived_tolerance(metric, k):
    for seed in range(30):
        inst = make(seed, metric, k, 8 + 2 * seed, EPSS[seed % 5], BOUNDS[seed % 4])
        inst["z"] = inst["z"].astype(np.float32).astype(np.float64)
        inst["targets"] = inst["targets"].astype(np.float32).astype(np.float64)
        y_ref = reference.project(**inst)
        y = run(inst, CUDA, dtype=torch.float32)
        assert y.dtype == torch.float32
        b, scale = inst["z"].size, 1 + np.abs(inst["z"]).max()
        if (metric, k) in SEPARABLE:
            tol = (4 * b + 4) * U32 * scale * _kappa(inst, y_ref)
        else:
            tol = U32 * np.abs(y_ref).max() + 1e-12 * scale
        assert np.abs(y.cpu().double().numpy() - y_ref).max() <= tol


@pytest.mark.parametrize("metric,k,bounds", [("dp", 1, (-1.0, 1.5)), ("mr", 1, None), ("eo", 1, (-1.0, 1.5)),
                                             ("dp", 2, (-1.0, 1.5)), ("dp_pairwise", 3, None)])
def test_cuda_gradcheck(metric, k, bounds):
    inst = _non_kink(metric, k, bounds, 100)
    f, (z, e) = _grad_funcs(inst)
    g = torch.as_tensor(inst["groups"], device=CUDA)
    t = torch.as_tensor(inst["targets"], device=CUDA)
    fc = lambda zz, ee: layers.project(zz, g, metric=metric, eps=ee, bounds=bounds, targets=t, empty="drop")
    args = (z.detach().to(CUDA).requires_grad_(True), e.detach().to(CUDA).requires_grad_(True))
    assert torch.autograd.gradcheck(fc, args, eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradgradcheck(fc, args, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_cuda_penalized_step_matches_cpu():
    rng = np.random.default_rng(1)
    S, b = 1024, 16
    G = rng.integers(0, 2, (S, b))
    Z = rng.normal(0.5, 1, (S, b)) + G
    lam = rng.uniform(0, 4, S)
    y_cpu = layers.penalized_step(torch.tensor(Z), torch.tensor(G), lam=torch.tensor(lam), bounds=(0, 1))
    y_gpu = layers.penalized_step(torch.tensor(Z, device=CUDA), torch.tensor(G, device=CUDA),
                                  lam=torch.tensor(lam, device=CUDA), bounds=(0, 1))
    assert torch.abs(y_gpu.cpu() - y_cpu).max() <= 1e-12 * (1 + np.abs(Z).max())


def test_separable_hot_path_has_no_host_sync():
    """check=False skips the validation sync; the breakpoint search itself never synchronises."""
    rng = np.random.default_rng(2)
    z = torch.tensor(rng.normal(0.5, 0.3, (64, 256)), device=CUDA, requires_grad=True)
    g = torch.tensor(rng.integers(0, 2, (64, 256)), device=CUDA)
    eps = torch.full((), 0.05, dtype=torch.float64, device=CUDA)
    v = torch.randn(64, 256, dtype=torch.float64, device=CUDA)
    layers.project(z, g, metric="dp", eps=eps, bounds=(0.0, 1.0), check=False).backward(v)   # warm caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        layers.project(z, g, metric="dp", eps=eps, bounds=(0.0, 1.0), check=False).backward(v)
        layers.penalized_step(z.detach(), g, lam=eps, bounds=(0.0, 1.0), check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("metric", ["dp", "mr", "eo"])
def test_cuda_sort_free_large_b_matches_reference(metric):
    """b = 2e5 (sort-free bracketing: layers._rows.SORT_FREE_MIN_B <= b): CUDA float64 vs the reference."""
    assert 200_000 >= layers._rows.SORT_FREE_MIN_B
    inst = make(11, metric, 1, 200_000, 0.05, (-1.0, 2.0))
    y_ref = reference.project(**inst)
    y = run(inst, CUDA)
    assert np.abs(y.cpu().numpy() - y_ref).max() <= 1e-12 * (1 + np.abs(inst["z"]).max())


def test_sort_free_root_syncs_once():
    """The sort-free search: FIXED_PASSES passes without host sync, then one check (a single sync)."""
    import warnings

    from layers._rows import row_root
    rng = np.random.default_rng(3)
    b = 1 << 16
    z = torch.tensor(rng.normal(0.5, 0.3, (4, b)), device=CUDA)
    a = torch.where(torch.tensor(rng.integers(0, 2, (4, b)), device=CUDA) == 1, -2.0 / b, 2.0 / b).double()
    t = torch.full((4,), 0.05, dtype=torch.float64, device=CUDA)
    row_root(z, a, t, (0.0, 1.0), dense=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            row_root(z, a, t, (0.0, 1.0), dense=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [x for x in w if "synchroniz" in str(x.message)]
    assert len(syncs) <= 1, [str(x.message) for x in syncs]


def test_mismatched_devices_raise():
    with pytest.raises(ValueError, match="device mismatch"):
        layers.project(torch.zeros(4, dtype=torch.float64, device=CUDA), torch.tensor([0, 1, 0, 1]),
                       metric="dp", eps=0.1)


@pytest.mark.parametrize("shape,per_problem", [((3_000_000,), False), ((3, 400_000), True)])
def test_cuda_fused_large_b_matches_eager(shape, per_problem):
    """layers.project(fused=True) (Triton kernels, compiled: not the interpreter that CI runs) against the
    eager CUDA layer at sizes that take several evaluation passes and a real gather. float64: both exact,
    1e-12 (1 + max|z|); float32: against the eager float64 layer on the rounded input, 12 u32 scale (the
    fused path's b-independent bound, derived in tests/test_fused.py)."""
    rng = np.random.default_rng(1)
    G = rng.integers(0, 2, shape if per_problem else shape[-1:])
    Z = rng.normal(0.5, 0.5, shape) + 0.3 * G
    g = torch.tensor(G, device=CUDA)
    kw = dict(metric="dp", eps=0.02, bounds=(0.0, 1.0), check=False)
    z64 = torch.tensor(Z, device=CUDA)
    y_eager = layers.project(z64, g, **kw)
    y64 = layers.project(z64, g, fused=True, **kw)
    assert torch.abs(y64 - y_eager).max() <= 1e-12 * (1 + np.abs(Z).max())
    z32 = z64.float()
    y_ref = layers.project(z32.double(), g, **kw)
    y32 = layers.project(z32, g, fused=True, **kw)
    assert y32.dtype == torch.float32
    assert torch.abs(y32.double() - y_ref).max() <= 12 * U32 * (1 + np.abs(Z).max())
