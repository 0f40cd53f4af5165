"""Imports every claim module so that its ``@register`` entries land in ``REGISTRY``.

Adding a claim = adding one ``@register(Claim(...))`` entry in the module of its family.
Modules whose optional dependencies are missing (torch, cvxpy, sympy) are skipped with a note.
"""

import importlib
from pathlib import Path

CLAIM_MODULES = {                       # module -> the claims it registers
    "verify.claims_layer": "L1-L7",     # paper A, fairness layer
    "verify.claims_online": "O1-O6",    # paper A, Algorithm 1
    "verify.claims_paperb": "N1-N4",    # paper B
    "verify.claims_proofs": "P1-P6",    # proof algebra, sympy
}
OPTIONAL = {"torch", "cvxpy", "sympy", "cvxpylayers", "fairlearn", "dask", "sklearn"}
ROOT = Path(__file__).resolve().parent.parent

SKIPPED: dict[str, str] = {}


def _raised_outside_repo(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` lies outside this repository (an installed package)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and ROOT not in Path(tb.tb_frame.f_code.co_filename).resolve().parents


for _name, _ids in CLAIM_MODULES.items():
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # missing optional dependency or module not written yet
        if exc.name == _name or (exc.name and exc.name.split(".")[0] in OPTIONAL):
            SKIPPED[_name] = f"claims {_ids} unavailable: {exc}"
        else:
            raise
    except ImportError as exc:          # an installed but broken dependency (e.g. torch's CUDA libraries)
        if not _raised_outside_repo(exc):
            raise
        SKIPPED[_name] = f"claims {_ids} unavailable: a dependency failed to import: {exc}"
