"""fairverify layers: exact, batched, differentiable torch fairness layers (CPU and CUDA).

    layers.project(z, groups, *, metric, eps, bounds=None, targets=None, empty="raise") -> y (..., b)
    layers.FairnessLayer(metric, eps, bounds=None)          nn.Module: forward(z, groups, targets=None)
    layers.penalized_step(z, groups, *, lam, bounds, metric="dp", targets=None, empty="drop") -> y
    layers.cvxpy_layer(z, groups, *, metric, eps, bounds=None, targets=None, solver=None, solver_args=None)
    layers.CvxpyFairnessLayer(groups, *, metric, bounds=None, targets=None, ...)(z, eps, targets=None)
            the authors' cvxpylayers layer, rebuilt per call / built once (CPU only; cvxpy imported lazily)

Note: the name ``layers.cvxpy_layer`` is the function; its module is ``sys.modules["layers.cvxpy_layer"]``.
"""

from layers.cvxpy_layer import CvxpyFairnessLayer, cvxpy_layer  # imports cvxpy lazily
from layers.projection import FairnessLayer, penalized_step, project

__all__ = ["CvxpyFairnessLayer", "FairnessLayer", "cvxpy_layer", "penalized_step", "project"]
