"""fairverify: proofs_numeric - the proofs' algebra checked exactly with sympy (claims P1-P6).

* ``projection``: L7's closed forms from the KKT system (P1), L3's Jacobian (P2), L5's eps-sensitivity (P3).
* ``online``: sum 1/sqrt(t) <= 2 sqrt(T) - 1 (P4), the Abel summation of O1 (P5), the OGD step of N1 (P6).
* ``exact``: the shared helpers (Finding, exact residuals, rationals).

Depends on sympy (and its mpmath) and numpy only; registered in verify/claims_proofs.py.
"""
