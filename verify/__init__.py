"""fairverify's claims registry, harness and command line (``python -m verify``)."""

from verify.registry import REGISTRY, CheckResult, Claim, Context, Verdict, all_claims, register, select

__all__ = ["REGISTRY", "CheckResult", "Claim", "Context", "Verdict", "all_claims", "register", "select"]
