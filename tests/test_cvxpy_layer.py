"""layers.cvxpy_layer: the authors' cvxpylayers layer, checked against the exact reference.

Tolerances:
* tight SCS (eps_abs = eps_rel = 1e-10): SCS stops with primal residual and duality gap <= eps (absolute
  plus relative to the data scale s = 1 + max|z|). The objective ||y - z||^2 is 2-strongly convex, so
  ||y - y*||^2 <= gap + ||mu*||_1 * residual (the multipliers price the residual), i.e.
  ||y - y*|| <= sqrt(eps (1 + ||mu*||_1)) s, with mu* from the reference.
* built once vs rebuilt per call: the same problem data and solver, so identical up to the solver's
  floating-point determinism (1e-12 s).
* gradients at tight settings: diffcp differentiates the solver's residual map at its solution; at a point
  whose active set is >= 1e-2 s away from any kink (so the solver's ~1e-6 error cannot change it) the
  derivative system is the exact one perturbed by O(solution error / margin) ~ 1e-4: tolerance 1e-4.
The default settings' accuracy is measured (not asserted) in bench/bench_layers.py and bench/RESULTS.md.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cvxpylayers")

import layers  # noqa: E402
import reference  # noqa: E402

pytestmark = [pytest.mark.cvxpy, pytest.mark.torch, pytest.mark.cpu]

TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 200_000}
CASES = [("dp", 1), ("dp", 2), ("mr", 1), ("mr", 2), ("eo", 1), ("dp_pairwise", 2)]


def make(seed, metric, k, b=30):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, (b, k))
    z = rng.normal(0, 1, b) + g[:, 0]
    t = np.clip(rng.normal(0.5, 0.5, b), 0, 1)
    return z, (g if k > 1 else g[:, 0]), t


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # diffcp "Solved/Inaccurate", numpy __array__ copy keyword
        yield


@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)])
@pytest.mark.parametrize("metric,k", CASES)
def test_tight_settings_match_exact(metric, k, bounds):
    z, g, t = make(1, metric, k)
    res = reference.solve(z, g, metric=metric, eps=0.05, bounds=bounds, targets=t)
    y = layers.cvxpy_layer(torch.tensor(z), torch.tensor(g), metric=metric, eps=0.05, bounds=bounds,
                           targets=torch.tensor(t), solver_args=TIGHT)
    scale = 1 + np.abs(z).max()
    tol = np.sqrt(1e-10 * (1 + np.abs(res.mu).sum())) * scale
    assert np.abs(y.numpy() - res.y).max() <= tol


def test_built_once_equals_rebuilt_and_batches():
    z, g, _ = make(2, "dp", 1)
    once = layers.cvxpy_layer.CvxpyFairnessLayer(torch.tensor(g), metric="dp", bounds=(0, 1))
    y1 = once(torch.tensor(z), 0.05)
    y2 = layers.cvxpy_layer(torch.tensor(z), torch.tensor(g), metric="dp", eps=0.05, bounds=(0, 1))
    assert torch.abs(y1 - y2).max() <= 1e-12 * (1 + np.abs(z).max())
    Z = torch.tensor(np.stack([z, z + 0.3]))
    Y = once(Z, 0.05)                                   # cvxpylayers batch mode: (P, b)
    assert Y.shape == Z.shape
    assert torch.abs(Y[0] - y1).max() <= 1e-12 * (1 + np.abs(z).max())


def test_default_solver_is_the_library_default():
    assert layers.cvxpy_layer.DEFAULT_SOLVER_ARGS == {}
    from layers.cvxpy_layer import DEFAULT_SOLVER
    assert DEFAULT_SOLVER is None                       # cvxpylayers -> diffcp -> SCS at its defaults


def test_gradient_matches_exact_jacobian_at_tight_settings():
    rng = np.random.default_rng(3)
    b = 20
    g = np.r_[np.zeros(10, int), np.ones(10, int)]
    z = np.r_[rng.uniform(0.2, 0.6, 10), rng.uniform(0.45, 0.85, 10)]     # interior of the box (0, 1)
    v = rng.normal(size=b)
    zt = torch.tensor(z, requires_grad=True)
    y = layers.cvxpy_layer(zt, torch.tensor(g), metric="dp", eps=0.05, bounds=(0, 1), solver_args=TIGHT)
    (y @ torch.tensor(v)).backward()
    ze = torch.tensor(z, requires_grad=True)
    ye = layers.project(ze, torch.tensor(g), metric="dp", eps=0.05, bounds=(0, 1))
    (ye @ torch.tensor(v)).backward()
    assert abs(float(np.mean(z[:10]) - np.mean(z[10:]))) > 0.05 + 1e-2     # the row is active, margin 1e-2
    assert torch.abs(zt.grad - ze.grad).max() <= 1e-4


def test_non_cpu_input_raises():
    z = torch.zeros(4, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="CPU only"):
        layers.cvxpy_layer(z, torch.tensor([0, 1, 0, 1]), metric="dp", eps=0.1)


@pytest.mark.parametrize("kw,match", [
    (dict(groups=torch.tensor([0, 2, 0, 1])), "binary"),
    (dict(metric="mr"), "needs targets"),
    (dict(eps=-1.0), "eps must be >= 0"),
    (dict(z=torch.tensor([0.0, float("nan"), 1.0, 2.0], dtype=torch.float64)), "NaN"),
    (dict(groups=torch.tensor([0, 0, 0, 0])), "no fairness row"),
    (dict(eps=float("nan")), "eps must be finite"),
    (dict(eps=float("inf")), "eps must be finite"),
    (dict(eps=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)), "shape mismatch"),
    (dict(eps=torch.tensor(0.1, dtype=torch.float32)), "dtype mismatch"),
    (dict(z=torch.tensor([0, 1, 2, 3])), "float32 or float64"),
    (dict(metric="mr", targets=torch.tensor([0.0, float("nan"), 1.0, 0.0], dtype=torch.float64)), "NaN"),
    (dict(metric="mr", targets=torch.zeros(2, 4, dtype=torch.float64)), "one-dimensional"),
    (dict(metric="mr", targets=torch.full((4,), 5.0, dtype=torch.float64), bounds=(0.0, 1.0)), "infeasible"),
    (dict(metric="eo", targets=torch.tensor([0.0, float("nan"), 1.0, 0.0], dtype=torch.float64)), "NaN"),
    (dict(groups=torch.tensor([0, 1, 0])), "shape mismatch"),
    (dict(bounds=(0.0, float("inf"))), "bounds must be finite"),
])
def test_bad_input_raises(kw, match):
    args = dict(z=torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64), groups=torch.tensor([0, 1, 0, 1]),
                metric="dp", eps=0.1)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        layers.cvxpy_layer(args.pop("z"), args.pop("groups"), **args)
