"""Imports every claim module so that its ``@register`` entries land in ``REGISTRY``.

Adding a claim = adding one ``@register(Claim(...))`` entry in the module of its family.
Modules whose optional dependencies are missing (torch, cvxpy, sympy) are skipped with a note.
"""

import importlib

CLAIM_MODULES = (
    "verify.claims_layer",      # L1-L7   (paper A, fairness layer)
    "verify.claims_online",     # O1-O6   (paper A, Algorithm 1)
    "verify.claims_paperb",     # N1-N4   (paper B)
    "verify.claims_proofs",     # P*      (proof algebra, sympy)
)

SKIPPED: dict[str, str] = {}

for _name in CLAIM_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # missing optional dependency or module not written yet
        if exc.name == _name or (exc.name and exc.name.split(".")[0] in {"torch", "cvxpy", "sympy",
                                                                           "cvxpylayers", "fairlearn",
                                                                           "dask", "sklearn"}):
            SKIPPED[_name] = str(exc)
        else:
            raise
