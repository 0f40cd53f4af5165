"""Ground truth: exact projection solvers (NumPy/SciPy), cvxpy mirrors, online algorithm, data.

Public API (see each function's docstring for the mathematics):

    reference.project(z, groups, *, metric, eps, bounds=None, targets=None, empty="raise") -> y
    reference.solve(...)                -> ProjectionResult(y, mu, constraints, ...)
    reference.penalized_step(z, groups, *, lam, bounds, metric, targets=None, empty="drop") -> y
    reference.kkt_residuals(y, z, constraints, mu) -> dict of relative residuals
    reference.build_constraints(groups, metric, *, eps, b, targets=None, bounds=None, empty="raise")
"""

from reference.constraints import METRICS, Constraints, build_constraints
from reference.projection import (
    ProjectionResult,
    kkt_residuals,
    penalized_step,
    project,
    solve,
    solve_penalized,
)

__all__ = ["METRICS", "Constraints", "ProjectionResult", "build_constraints", "kkt_residuals",
           "penalized_step", "project", "solve", "solve_penalized"]
