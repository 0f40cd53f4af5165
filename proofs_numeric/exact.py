"""Exact-arithmetic helpers shared by the proof-algebra checks.

Everything here is exact (sympy rationals and symbolic simplification), so the tolerance of every
identity is exactly 0: a residual either simplifies to 0 or it does not.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import sympy as sp

# Sample points for measuring a residual that does not simplify to 0: distinct, positive, not
# integers, so that positive=True/integer assumptions of the symbols can all be honoured.
_SAMPLES = (sp.Rational(3, 2), sp.Rational(7, 3), sp.Rational(11, 4), sp.Rational(13, 5),
            sp.Rational(17, 6), sp.Rational(19, 7), sp.Rational(23, 8), sp.Rational(29, 9))
_INT_SAMPLES = (2, 3, 5, 7, 11, 13, 17, 19)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One checked step of a proof: holds iff ``figure relation bound``.

    ``case`` names the step (becomes the CheckResult id suffix); ``evidence`` holds what reproduces it.
    """

    case: str
    figure: float
    bound: float
    relation: str = "<="
    detail: str = ""
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


def is_zero(expr) -> bool:
    """True iff sympy proves ``expr`` (a scalar or a Matrix) identically 0."""
    if isinstance(expr, sp.MatrixBase):
        return all(is_zero(e) for e in expr)
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    e = sp.cancel(sp.together(expr))
    return e == 0 or sp.simplify(e) == 0


def residual(expr) -> float:
    """Size of a residual that should vanish identically.

    0.0 when sympy proves ``expr`` (scalar or Matrix) identically 0; otherwise the largest |entry| at
    a fixed sample point of its free symbols (> 0: a witness that the identity is false). A residual
    that is not proven 0 but vanishes at the sample is reported as NaN (the check then FAILs: an
    identity we cannot prove is not verified).
    """
    entries = list(expr) if isinstance(expr, sp.MatrixBase) else [sp.sympify(expr)]
    if all(is_zero(e) for e in entries):
        return 0.0
    free = sorted(set().union(*(e.free_symbols for e in entries)), key=str)
    point = {}
    for k, s in enumerate(free):
        pool = _INT_SAMPLES if s.is_integer else _SAMPLES
        point[s] = pool[k % len(pool)] + (k // len(pool))
    largest = float(max(abs(sp.N(e.subs(point), 30)) for e in entries))
    return largest if largest > 0 else float("nan")


def worst(*residuals: float) -> float:
    """The largest residual, NaN if any is NaN (an unproven identity stays unproven: Python's ``max``
    would drop it, ``max(0.0, nan) == 0.0``)."""
    vals = [float(r) for r in residuals]
    return float("nan") if any(math.isnan(v) for v in vals) else max(vals)


def rational(x: float, max_den: int) -> sp.Rational:
    """The exact rational p/q (q <= max_den) that the float ``x`` rounds; raises if there is none.

    Used to read the rows 1/n_g of reference.constraints back exactly (n_g <= batch size).
    """
    f = Fraction(x).limit_denominator(max_den)
    if float(f) != x:
        raise ValueError(f"{x!r} is not a float-rounded rational with denominator <= {max_den}")
    return sp.Rational(f.numerator, f.denominator)


def clip(x, lb, ub):
    """min(max(x, lb), ub) for exact numbers."""
    return min(max(x, lb), ub)
