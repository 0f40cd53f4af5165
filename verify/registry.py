"""The claims registry: one entry per claim of CLAIMS.md drives the CLI, pytest and the figures.

A claim module (``verify/claims_*.py``) defines check functions and registers them::

    @register(Claim(id="L1", paper="A", provenance="stated",
                    statement="every output satisfies every constraint of C",
                    tolerance="exact solver: 50 * eps_mach * scale (round-off of a^T y); ...",
                    faults=("skip-box",)))
    def check_l1(ctx: Context) -> list[CheckResult]:
        ...

A check returns one :class:`CheckResult` per case (``id`` = ``"L1"`` or ``"L1-dp-box"``). It reads
``ctx.fault``: when it names one of the claim's planted faults, the check must run against the
deliberately wrong variant (wrong Jacobian sign, box ignored in backward, constant step size, ...)
and at least one case must come out FAIL. ``tests/test_planted_faults.py`` enforces that for every
(claim, fault) pair, so a check that cannot fail is caught automatically.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

PAPERS = {"A": "Troxell, Roemer, Montufar (ICML 2026)", "B": "Chen, Wang, Kolar (2020)"}
PROVENANCES = ("stated", "code", "reconstructed", "code/reconstructed", "code/docs", "proof algebra")
PROFILES = ("quick", "full")
TARGETS = ("ours", "paper", "package")
BACKENDS = ("cpu", "cuda")


class Verdict(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


@dataclasses.dataclass
class CheckResult:
    """Outcome of one case of one claim.

    ``figure`` is the measured number and ``bound`` what it was compared with; ``relation`` says how
    (``"<="``: PASS iff figure <= bound; ``">="``; ``"in"``: bound is an interval (lo, hi)).
    ``evidence`` holds what is needed to reproduce the case (sizes, seeds, instance counts).
    """

    id: str
    verdict: Verdict
    figure: float | None
    bound: float | tuple[float, float] | None
    relation: str = "<="
    detail: str = ""
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def compare(cls, id: str, figure: float, bound: float, relation: str = "<=", **kw: Any) -> CheckResult:
        """Build a result whose verdict follows from ``figure relation bound`` (NaN -> FAIL)."""
        if figure is None or (isinstance(figure, float) and math.isnan(figure)):
            ok = False
        elif relation == "<=":
            ok = figure <= bound
        elif relation == ">=":
            ok = figure >= bound
        elif relation == "in":
            lo, hi = bound
            ok = lo <= figure <= hi
        else:
            raise ValueError(f"unknown relation {relation!r}")
        return cls(id=id, verdict=Verdict.PASS if ok else Verdict.FAIL, figure=float(figure),
                   bound=bound, relation=relation, **kw)


@dataclasses.dataclass
class Context:
    """Everything a check may depend on. Checks must be deterministic given (profile, seed, target)."""

    profile: str = "quick"
    target: str = "ours"
    backend: str = "cpu"
    seed: int = 0
    out: Path | None = None
    fault: str | None = None
    progress: Callable[[Iterable, str], Iterator] | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    @property
    def full(self) -> bool:
        return self.profile == "full"

    def iterate(self, items: Iterable, desc: str) -> Iterator:
        """Wrap a long loop in the CLI's progress bar (plain iteration under pytest)."""
        return iter(self.progress(items, desc) if self.progress else items)


@dataclasses.dataclass
class Claim:
    """One claim of CLAIMS.md: metadata plus the function that checks it."""

    id: str
    paper: str
    provenance: str
    statement: str
    tolerance: str
    faults: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("ours",)
    slow: bool = False   # quick check too long for CI's generic claim/fault tests (run under -m slow)
    check: Callable[[Context], list[CheckResult]] | None = None

    def __post_init__(self) -> None:
        if self.paper not in PAPERS and self.paper != "-":
            raise ValueError(f"claim {self.id}: unknown paper {self.paper!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"claim {self.id}: provenance must be one of {PROVENANCES}")

    def run(self, ctx: Context) -> list[CheckResult]:
        if self.check is None:
            raise RuntimeError(f"claim {self.id} has no check")
        if ctx.fault is not None and ctx.fault not in self.faults:
            raise ValueError(f"claim {self.id} has no planted fault {ctx.fault!r}; known: {self.faults}")
        return list(self.check(ctx))


REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Callable[[Callable[[Context], list[CheckResult]]], Callable]:
    """Decorator: attach ``fn`` as ``claim.check`` and add the claim to :data:`REGISTRY`."""

    def deco(fn: Callable[[Context], list[CheckResult]]) -> Callable:
        if claim.id in REGISTRY:
            raise ValueError(f"claim {claim.id} registered twice")
        claim.check = fn
        REGISTRY[claim.id] = claim
        return fn

    return deco


def _claim_order(cid: str) -> tuple:
    prefix = "".join(c for c in cid if c.isalpha())
    num = "".join(c for c in cid if c.isdigit())
    order = {"L": 0, "O": 1, "N": 2, "P": 3}.get(prefix, 9)
    return (order, prefix, int(num) if num else 0)


def all_claims() -> list[Claim]:
    """Every registered claim, importing the claim modules on first use, in checklist order."""
    from verify import claims  # noqa: F401  (imports populate REGISTRY)

    return sorted(REGISTRY.values(), key=lambda c: _claim_order(c.id))


def select(ids: Iterable[str] | None = None) -> list[Claim]:
    claims = all_claims()
    if not ids:
        return claims
    wanted = [i.strip() for i in ids if i.strip()]
    known = {c.id for c in claims}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; known: {sorted(known, key=_claim_order)}")
    return [c for c in claims if c.id in wanted]
