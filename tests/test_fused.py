"""layers.project(..., fused=True): the Triton forward of the dp layer (layers/_fused.py).

Runs on CUDA where there is a GPU, else in Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported): the same kernels, the same bracketing and the same exact
finish, so CI checks the algorithm; speed is measured on a GPU only (bench/bench_layers.py --fused).

Tolerances (as tests/test_layers.py and tests/test_layers_cuda.py): float64 against the reference and the
eager layer, both exact up to round-off: max |dy| <= 1e-12 (1 + max |z|). float32 against the float64
reference on the rounded input: 12 u32 scale, scale = 1 + max |z|, independent of b -- tighter than the eager
layer's (4 b + 4) u32 scale kappa, because the fused path solves nu in float64 (float32 inputs are exact in
float64; its sums are float64) and rounds only the row a = +-1/n (relative u32: y moves by <= u32 |nu a|,
to first order) and, at the end, nu to float32, the product nu a and z - nu a (u32 |nu a| three times, u32
|y| once), with |nu a| = |z - y| <= 2 scale on free coordinates: <= 7 u32 scale + float64 round-off; 12 leaves
room for the first-order term (measured: <= 0.54 u32 scale on 180 instances).
``capacity`` (breakpoints allowed inside the bracket before the gather) is forced down to 1-4 so that small
instances take several evaluation passes, as b = 1e8 does with the default 2^16.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import layers  # noqa: E402
import layers._fused as fused  # noqa: E402
import reference  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_layers import BOUNDS, EPSS, U32, _non_kink, make  # noqa: E402

pytestmark = pytest.mark.torch
DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(inst, dtype=torch.float64, **kw):
    z = torch.as_tensor(inst["z"], dtype=dtype, device=DEV)
    g = torch.as_tensor(inst["groups"], device=DEV)
    return layers.project(z, g, metric=inst["metric"], eps=inst["eps"], bounds=inst["bounds"],
                          empty=inst["empty"], **kw)


def tol64(inst) -> float:
    return 1e-12 * (1 + np.abs(inst["z"]).max())


@pytest.fixture(params=[None, 1, 4], ids=["default-capacity", "capacity-1", "capacity-4"])
def capacity(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(fused, "CAPACITY", request.param)
    return request.param


def test_fused_matches_reference_float64(capacity):
    for seed in range(24):
        inst = make(seed, "dp", 1, 5 + 7 * seed, EPSS[seed % 5], BOUNDS[seed % 4], ties=seed % 3 == 0)
        y = run(inst, fused=True)
        assert y.device == DEV and y.dtype == torch.float64
        assert np.abs(y.cpu().numpy() - reference.project(**inst)).max() <= tol64(inst), seed


def test_fused_float32_within_derived_tolerance(capacity):
    for seed in range(24):
        inst = make(seed, "dp", 1, 8 + 5 * seed, EPSS[seed % 5], BOUNDS[seed % 4])
        inst["z"] = inst["z"].astype(np.float32).astype(np.float64)
        y_ref = reference.project(**inst)
        y = run(inst, dtype=torch.float32, fused=True)
        assert y.dtype == torch.float32
        scale = 1 + np.abs(inst["z"]).max()
        assert np.abs(y.cpu().double().numpy() - y_ref).max() <= 12 * U32 * scale


@pytest.mark.parametrize("shared", [True, False], ids=["shared-groups", "per-problem-groups"])
def test_fused_batched_matches_eager(shared, capacity):
    """(2, 3) problems with per-problem eps (one of them inactive) and an empty group (dropped)."""
    rng = np.random.default_rng(5)
    b = 300
    G = rng.integers(0, 2, (b,) if shared else (2, 3, b))
    if not shared:
        G[1, 2] = 0                                                    # group 1 empty: row dropped
    Z = torch.tensor(rng.normal(0.5, 0.4, (2, 3, b)) + 0.3 * G, device=DEV)
    E = torch.tensor([[0.0, 0.01, 0.05], [0.1, 2.0, 0.02]], dtype=torch.float64, device=DEV)
    kw = dict(metric="dp", eps=E, bounds=(0.0, 1.0), empty="drop")
    g = torch.as_tensor(G, device=DEV)
    y = layers.project(Z, g, fused=True, **kw)
    assert torch.abs(y - layers.project(Z, g, **kw)).max() <= 1e-12 * (1 + Z.abs().max())
    assert torch.equal(y[1, 1], Z[1, 1].clamp(0, 1))                   # eps = 2: inside the band


def test_fused_hypothesis(monkeypatch):
    """Random dp instances (sizes, spreads, ties, box, eps, capacity): fused == the reference, float64."""
    @settings(max_examples=40)
    @given(st.integers(2, 400), st.sampled_from(["normal", "ties", "wide", "logit"]), st.sampled_from(EPSS),
           st.sampled_from(BOUNDS), st.sampled_from([1, 3, fused.CAPACITY]), st.integers(0, 2**31 - 1))
    def check(b, kind, eps, bounds, capacity, seed):
        monkeypatch.setattr(fused, "CAPACITY", capacity)
        rng = np.random.default_rng(seed)
        g = rng.integers(0, 2, b)
        spread, shift = {"normal": (0.3, 0.2), "ties": (0.3, 0.2), "wide": (1, 0.5), "logit": (3, 1)}[kind]
        z = rng.normal(0.5, spread, b) + shift * g
        if kind == "ties":
            z = np.round(z, 1)
        inst = dict(z=z, groups=g, metric="dp", eps=eps, bounds=bounds, targets=None, empty="drop")
        assert np.abs(run(inst, fused=True).cpu().numpy() - reference.project(**inst)).max() <= tol64(inst)

    check()


def test_fused_flat_at_the_target_stops(monkeypatch):
    """eps = 0 and phi = 0 = t on a whole interval (every coordinate at lb = 0): no pass can tell points
    there from the root, so the passes stop on a count that did not drop (they once ran to MAX_PASSES)."""
    inst = dict(z=np.array([-2.0187952518463135, 1.6544631719589233]), groups=np.array([1, 0]), metric="dp",
                eps=0.0, bounds=(0.0, 3.5), targets=None, empty="drop")
    for dtype in (torch.float32, torch.float64):
        for capacity in (1, 3):
            monkeypatch.setattr(fused, "CAPACITY", capacity)
            y = run(inst, dtype=dtype, fused=True)
            assert np.abs(y.cpu().double().numpy() - reference.project(**inst)).max() <= 1e-7


def test_fused_without_box_is_the_closed_form():
    inst = make(3, "dp", 1, 200, 0.05, None)
    assert np.abs(run(inst, fused=True).cpu().numpy() - reference.project(**inst)).max() <= tol64(inst)


def test_fused_many_ties_terminate(monkeypatch):
    """Half of the coordinates share one value: many breakpoints coincide, more than the capacity. The
    passes stop once no float lies strictly inside (L, R) (the count #{L <= e < R} alone would not end)."""
    monkeypatch.setattr(fused, "CAPACITY", 1)
    rng = np.random.default_rng(0)
    g = rng.integers(0, 2, 400)
    z = np.where(rng.random(400) < 0.5, 0.75, rng.normal(0.5, 0.3, 400)) + 0.2 * g
    inst = dict(z=z, groups=g, metric="dp", eps=0.01, bounds=(0.0, 1.0), targets=None, empty="drop")
    assert np.abs(run(inst, fused=True).cpu().numpy() - reference.project(**inst)).max() <= tol64(inst)


def _breakpoints(z, g, b, lb, ub):
    n1 = g.sum()
    n0 = b - n1
    r = np.where(g == 1, -float(n1), float(n0))
    hi, lo = np.where(g == 1, lb, ub), np.where(g == 1, ub, lb)
    return np.concatenate([(z - hi) * r, (z - lo) * r]), np.where(g == 1, -1.0 / n1, 1.0 / n0)


@pytest.mark.parametrize("cap", [1, 3, 50])
def test_fused_bracket_invariants(cap):
    """After the evaluation passes: phi(L) > t >= phi(R) (phi evaluated here in float64), and the count
    that sizes the gather bounds the breakpoints strictly inside (L, R) (here <= capacity: no flat stretch)
    -- the facts the exact finish relies on."""
    rng = np.random.default_rng(cap)
    b, eps, (lb, ub) = 2000, 0.02, (0.0, 1.0)
    g = rng.integers(0, 2, b)
    z = rng.normal(0.5, 0.3, b) + 0.2 * g
    e, a = _breakpoints(z, g, b, lb, ub)
    phi = lambda nu: float(np.sum(a * np.clip(z - nu * a, lb, ub)))
    assert phi(0.0) < -eps                                     # the instance is active (lower side)
    zt = torch.tensor(z, device=DEV)[None]
    lab = torch.tensor(g, dtype=torch.uint8, device=DEV)[None]
    tab_np, valid = fused._table(np.array([g.sum()]), b, (lb, ub), np.float64)
    zext = np.array([[z[g == 0].min(), z[g == 0].max(), z[g == 1].min(), z[g == 1].max()]])
    consts = torch.tensor([lb, ub, float("inf")], dtype=torch.float64, device=DEV)
    scale = (np.abs(z).max() * np.ones(1), np.abs(tab_np[:, :2]).max(1), np.ones(1))
    L0, R0 = fused._initial_bracket(tab_np, zext)
    L, R, inside = fused._bracket(zt, lab, 0, consts, torch.as_tensor(tab_np, device=DEV), np.array([-eps]),
                                  valid, ~valid, np.array([np.nan]), scale, L0, R0, cap)
    L, R = float(L[0]), float(R[0])
    assert phi(L) > -eps >= phi(R)
    assert np.sum((e > L) & (e < R)) <= inside[0] <= cap


def test_fused_gradients_match_eager():
    inst = _non_kink("dp", 1, (-1.0, 1.5), 100)
    g = torch.as_tensor(inst["groups"], device=DEV)
    grads = []
    for f in (False, True):
        z = torch.tensor(inst["z"], device=DEV, requires_grad=True)
        e = torch.tensor(inst["eps"], dtype=torch.float64, device=DEV, requires_grad=True)
        y = layers.project(z, g, metric="dp", eps=e, bounds=inst["bounds"], fused=f)
        grads.append(torch.autograd.grad(y, (z, e), torch.linspace(-1, 2, y.numel(), device=DEV,
                                                                    dtype=torch.float64)))
    for a, b in zip(*grads, strict=True):
        assert torch.abs(a - b).max() <= 1e-12
    z = torch.tensor(inst["z"], device=DEV, requires_grad=True)
    e = torch.tensor(inst["eps"], dtype=torch.float64, device=DEV, requires_grad=True)
    f = lambda z, e: layers.project(z, g, metric="dp", eps=e, bounds=inst["bounds"], fused=True)
    assert torch.autograd.gradcheck(f, (z, e), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-groups", "per-problem-groups"])
def test_fused_batched_gradients_non_contiguous(shared):
    """(2, 3) problems, z a non-contiguous view, per-problem eps: y and both gradients equal the eager
    layer's."""
    rng = np.random.default_rng(3)
    b = 200
    G = torch.as_tensor(rng.integers(0, 2, (b,) if shared else (2, 3, b)), device=DEV)
    shift = 0.3 * (G if shared else G.transpose(0, 1))
    base = torch.tensor(rng.normal(0.5, 0.4, (3, 2, b)), device=DEV) + shift
    E = torch.tensor([[0.0, 0.01, 0.05], [0.1, 2.0, 0.02]], dtype=torch.float64, device=DEV,
                     requires_grad=True)
    results = []
    for f in (False, True):
        z = base.transpose(0, 1).detach().requires_grad_(True)           # (2, 3, b), not contiguous
        assert not z.is_contiguous()
        y = layers.project(z, G, metric="dp", eps=E, bounds=(0.0, 1.0), empty="drop", fused=f)
        v = torch.linspace(-1, 1, y.numel(), dtype=torch.float64, device=DEV).reshape(y.shape)
        results.append((y, *torch.autograd.grad(y, (z, E), v)))
    for a, c in zip(*results, strict=True):
        assert torch.abs(a - c).max() <= 1e-12


def test_fairness_layer_fused():
    inst = make(4, "dp", 1, 300, 0.05, (0.0, 1.0))
    z, g = torch.tensor(inst["z"], device=DEV), torch.as_tensor(inst["groups"], device=DEV)
    layer = layers.FairnessLayer("dp", 0.05, (0.0, 1.0), fused=True)
    assert "fused=True" in repr(layer)
    assert torch.abs(layer(z, g) - layers.FairnessLayer("dp", 0.05, (0.0, 1.0))(z, g)).max() <= tol64(inst)


def test_fused_errors():
    inst = make(0, "dp", 1, 20, 0.05, (0.0, 1.0))
    with pytest.raises(ValueError, match="fused=True supports metric 'dp'"):
        run(dict(inst, metric="mr"), fused=True)
    with pytest.raises(ValueError, match="one attribute"):
        run(make(0, "dp", 2, 20, 0.05, (0.0, 1.0)), fused=True)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        run(dict(inst, eps=-0.1), fused=True)
    g = np.zeros(20, dtype=int)
    with pytest.raises(ValueError, match="empty group"):
        run(dict(inst, groups=g, empty="raise"), fused=True)
    z = np.array(inst["z"])
    z[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run(dict(inst, z=z), fused=True)


def test_fused_refuses_cpu_without_the_interpreter(monkeypatch):
    monkeypatch.setattr(fused, "interpreting", lambda: False)
    inst = make(0, "dp", 1, 20, 0.05, (0.0, 1.0))
    with pytest.raises(ValueError, match="runs Triton kernels on CUDA; z is on cpu"):
        layers.project(torch.tensor(inst["z"]), torch.tensor(inst["groups"]), metric="dp", eps=0.05,
                       bounds=(0.0, 1.0), fused=True)


def test_fused_passes_at_the_benchmark_ratio():
    """bench/fused_passes.py (the host logic with NumPy stand-ins for the kernels) at 2 b / capacity = 8e4
    (b = 1e8 with the default 2048: 9.8e4): every distribution takes <= 2 evaluation passes (measured: 2,
    and 1 for uniform and narrow-gap; 1e5 / 2 and 1e6 / 20 the same) and every root is exact for its row.
    A pin of the pass count, each pass costing ~0.6 copies of z on a GPU."""
    from bench.fused_passes import run

    rows = run(40_000, 1, seeds=1)
    assert max(r["rel_error"] for r in rows) <= 1e-12
    assert all(r["passes"] <= 2 for r in rows)


def test_planted_fault_first_pass_without_newton_breaks_the_pass_pin(monkeypatch):
    """The first pass spread evenly (no Newton step): 3 passes on every distribution, so the pin fails."""
    from bench.fused_passes import run

    bracket = fused._bracket
    monkeypatch.setattr(fused, "_bracket", lambda *args: bracket(*args[:8], args[8] * np.nan, *args[9:]))
    assert max(r["passes"] for r in run(40_000, 1, seeds=1)) > 2


# Planted faults: the agreement check above must catch a fused solve that is wrong in either half.

def _worst_error(n_seeds=12) -> float:
    """Largest error over the tolerance on a few instances; inf when the fused solve raises (its own
    fresh-sum check of the bracket caught the fault first)."""
    worst = 0.0
    for seed in range(n_seeds):
        inst = make(seed, "dp", 1, 40 + 9 * seed, 0.05, (0.0, 3.5))
        try:
            y = run(inst, fused=True)
        except RuntimeError:
            return float("inf")
        err = np.abs(y.cpu().numpy() - reference.project(**inst)).max()
        worst = max(worst, err / tol64(inst))
    return worst


def test_planted_fault_dropped_linear_part_is_caught(monkeypatch):
    """The exact finish forgets the coordinates left out of the gather (C = S = 0)."""
    finish = fused._finish
    monkeypatch.setattr(fused, "_finish",
                        lambda *args: finish(*args[:8], 0 * args[8], 0 * args[9], *args[10:]))
    monkeypatch.setattr(fused, "CAPACITY", 4)
    assert _worst_error() > 1.0


def test_planted_fault_box_sides_of_the_negative_group_are_caught(monkeypatch):
    """Group 1 (a < 0) gets group 0's box sides (hi = ub, lo = lb): wrong breakpoints and states."""
    table = fused._table

    def swapped(n1, b, bounds, dt):
        tab, valid = table(n1, b, bounds, dt)
        return tab[:, [0, 1, 2, 3, 4, 4, 6, 6]], valid
    monkeypatch.setattr(fused, "_table", swapped)
    assert _worst_error() > 1.0


def test_planted_fault_lost_root_raises(monkeypatch):
    """A bracket that misses the root (shifted right by its width) is caught by the fresh-sum check of the
    exact finish, not clamped into a wrong answer."""
    bracket = fused._bracket

    def shifted(*args):
        L, R, inside = bracket(*args)
        return R, R + (R - L), inside
    monkeypatch.setattr(fused, "_bracket", shifted)
    inst = make(2, "dp", 1, 300, 0.05, (0.0, 3.5))
    with pytest.raises(RuntimeError, match="does not hold the root"):
        run(inst, fused=True)


# Compiled for the GPU (no GPU needed): bench/compile_fused.py builds every kernel for sm_90 (H100/H200)
# with Triton's CUDA backend and bundled ptxas, in a subprocess without the interpreter (whose patched
# builder cannot compile). The interpreter above accepts code that does not compile; this does not.

def _compile(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "bench.compile_fused", *args], capture_output=True,
                          text=True, env=env, cwd=Path(fused.__file__).parents[1])


def test_kernels_compile_for_hopper_without_spills():
    """Every kernel, float32 and float64, at the default sizes: a cubin for sm_90, no register spills."""
    pytest.importorskip("triton.backends.nvidia")
    done = _compile()
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    kernels = ("stats", "evaluate", "gather", "output")
    assert {(r["kernel"], r["dtype"]) for r in rows} == {(k, d) for k in kernels for d in ("fp32", "fp64")}
    assert all(r["spill_bytes"] == 0 for r in rows), rows


def test_planted_fault_hopper_compile_catches_spills_and_bad_code():
    """The compile check can fail: a (K, SUB) = (16, 1024) evaluation tile spills in float64, and z passed
    as an integer (a pointer expected) does not compile."""
    pytest.importorskip("triton.backends.nvidia")
    done = _compile("--K", "16", "--sub", "1024")
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(r["spill_bytes"] > 0 for r in json.loads(done.stdout) if r["kernel"] == "evaluate")
    broken = _compile("--break-signature")
    assert broken.returncode != 0 and "CompilationError" in broken.stderr
