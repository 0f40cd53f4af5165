"""fairverify layers: exact, batched, differentiable torch fairness layers (CPU and CUDA).

    layers.project(z, groups, *, metric, eps, bounds=None, targets=None, empty="raise") -> y (..., b)
    layers.FairnessLayer(metric, eps, bounds=None)          nn.Module: forward(z, groups, targets=None)
    layers.penalized_step(z, groups, *, lam, bounds, metric="dp", targets=None, empty="drop") -> y
    layers.cvxpy_layer(z, groups, *, metric, eps, bounds=None, targets=None, ...)   the authors' layer
                                                            (cvxpylayers, CPU only; cvxpy imported lazily)
"""

from layers.projection import FairnessLayer, penalized_step, project

__all__ = ["FairnessLayer", "penalized_step", "project"]
