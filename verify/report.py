r"""The report of a run: ``report.json`` (a stable interface), ``report.md`` and figures.

``report.json`` (schema 1)::

    {"schema": 1,
     "claims":  [ {"id": "L3-dp-box", "claim": "L3", "verdict": "PASS" | "FAIL" | "INCONCLUSIVE",
                   "figure": number | null, "bound": number | [lo, hi] | null, "relation": "<=" | ">=" | "in",
                   "provenance": ..., "paper": "A" | "B" | "-", "statement": ..., "tolerance": ...,
                   "target": ..., "backend": ..., "seed": int, "profile": ..., "detail": str,
                   "evidence": {...}, "figures": [paths relative to the report], "seconds": float,
                   "error": str (only when the check or its figure raised)} , ... ],
     "summary": [ {"claim": "L3", "verdict": ..., "cases": n, "failed": [ids], "provenance": ...,
                   "statement": ..., "seconds": float}, ... ],
     "metadata": {"complete": bool (false in the partial report written after each claim but the last),
                  "profile", "target", "backend", "seed", "options", "claims", "started", "seconds",
                  "versions": {python, numpy, scipy, torch, cvxpy, ...}, "platform", "skipped_modules"}}

A *number* is a JSON number, or one of the strings "nan", "inf", "-inf" for a non-finite value (JSON has no
NaN; a NaN figure is a FAIL). One record per case (``CheckResult``); a claim's summary verdict is FAIL if
any case FAILs, PASS if all PASS, INCONCLUSIVE otherwise. ``evidence["series"]`` (optional) maps a name to
``{"x": [...], "y": [...], "xlabel", "ylabel", "scale": "linear" | "loglog" | "semilogy" | "semilogx"}``
(``"y"`` may also be a dict label -> list for several curves; optional ``"extra"``: dict label -> list of
reference curves on the same x, ``"hline"`` / ``"vline"``: a reference level); each series becomes one PNG.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from verify.registry import CheckResult, Claim, Context, Verdict

SCHEMA = 1
VERSION_DISTRIBUTIONS = ("numpy", "scipy", "torch", "triton", "cvxpy", "cvxpylayers", "clarabel", "scs",
                         "osqp", "ecos", "sympy", "fairlearn", "fairness-training")


def _jsonable(x: Any) -> Any:
    """Numpy scalars/arrays, tuples, paths and enums -> plain JSON values; NaN/inf -> strings."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Verdict):
        return x.value
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (int, str)):
        return x
    return repr(x)


def record(claim: Claim, result: CheckResult, ctx: Context, seconds: float, error: str | None = None) -> dict:
    """One report.json record for one case."""
    rec = {
        "id": result.id, "claim": claim.id, "verdict": result.verdict.value,
        "figure": result.figure, "bound": result.bound, "relation": result.relation,
        "provenance": claim.provenance, "paper": claim.paper, "statement": claim.statement,
        "tolerance": claim.tolerance, "target": ctx.target, "backend": ctx.backend, "seed": ctx.seed,
        "profile": ctx.profile, "detail": result.detail, "evidence": result.evidence,
        "figures": list(result.figures), "seconds": round(seconds, 3),
    }
    if error is not None:
        rec["error"] = error
    return _jsonable(rec)


def claim_verdict(verdicts: list[str]) -> str:
    """FAIL if any case FAILs, PASS if all PASS (and there is at least one), INCONCLUSIVE otherwise."""
    if "FAIL" in verdicts:
        return "FAIL"
    if verdicts and all(v == "PASS" for v in verdicts):
        return "PASS"
    return "INCONCLUSIVE"


def summarize(claims: list[Claim], records: list[dict]) -> list[dict]:
    out = []
    for c in claims:
        recs = [r for r in records if r["claim"] == c.id]
        out.append({"claim": c.id, "verdict": claim_verdict([r["verdict"] for r in recs]),
                    "cases": len(recs), "failed": [r["id"] for r in recs if r["verdict"] == "FAIL"],
                    "provenance": c.provenance, "paper": c.paper, "statement": c.statement,
                    "seconds": round(sum(r["seconds"] for r in recs), 3)})
    return out


def versions() -> dict[str, str | None]:
    """Python, the installed distributions that a check may use (None: not installed; read from the package
    metadata, nothing is imported) and the git commit of this checkout (None outside a git checkout)."""
    v: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSION_DISTRIBUTIONS:
        try:
            v[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v[name] = None
    try:
        v["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                     capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        v["commit"] = None
    return v


def metadata(ctx: Context, claim_ids: list[str], started: datetime.datetime, seconds: float,
             skipped: dict[str, str]) -> dict:
    return {"profile": ctx.profile, "target": ctx.target, "backend": ctx.backend, "seed": ctx.seed,
            "options": dict(ctx.options), "claims": claim_ids,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 2), "versions": versions(), "platform": platform.platform(),
            "skipped_modules": dict(skipped)}


# ------------------------------------------------------------------------------------------- formatting

def fmt_num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt_num(v) for v in x) + "]"
    if isinstance(x, str):
        return x
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


def figure_vs_bound(rec: dict) -> str:
    if rec["figure"] is None and rec["bound"] is None:
        return "-"
    return f"{fmt_num(rec['figure'])} {rec['relation']} {fmt_num(rec['bound'])}"


def table_lines(summary: list[dict], records: list[dict], *, cases: bool = True) -> list[str]:
    """The console checklist: one line per claim, then (indented) one per case."""
    w = max([len(r["id"]) + 2 for r in records] + [len(s["claim"]) for s in summary] + [12])
    lines = [f"{'claim':{w}s} {'provenance':18s} {'verdict':13s} figure vs bound", "-" * (w + 60)]
    for s in summary:
        lines.append(f"{s['claim']:{w}s} {s['provenance']:18s} {s['verdict']:13s} "
                     f"{s['cases']} case(s), {len(s['failed'])} failed, {s['seconds']:.1f} s")
        if not cases:
            continue
        for r in (r for r in records if r["claim"] == s["claim"]):
            note = f"   ({r['error']})" if "error" in r else ""
            lines.append(f"  {r['id']:{w - 2}s} {'':18s} {r['verdict']:13s} {figure_vs_bound(r)}{note}")
    return lines


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown(summary: list[dict], records: list[dict], meta: dict) -> str:
    out = ["# fairverify report", "",
           f"Profile `{meta['profile']}`, target `{meta['target']}`, backend `{meta['backend']}`, "
           f"seed {meta['seed']}, started {meta['started']}, {meta['seconds']} s.", ""]
    if meta.get("skipped_modules"):
        out += ["Claim modules not loaded: " + "; ".join(f"`{k}` ({v})" for k, v in
                                                          meta["skipped_modules"].items()), ""]
    out += ["## Checklist", "", "| claim | paper | provenance | verdict | cases | failed | statement |",
            "|---|---|---|---|---|---|---|"]
    for s in summary:
        out.append(f"| {s['claim']} | {s['paper']} | {s['provenance']} | **{s['verdict']}** | {s['cases']} | "
                   f"{', '.join(s['failed']) or '-'} | {_md_escape(s['statement'])} |")
    out += ["", "## Cases", "", "| case | verdict | figure | relation | bound | detail |",
            "|---|---|---|---|---|---|"]
    for r in records:
        detail = r["detail"] + (f" ERROR: {r['error']}" if "error" in r else "")
        out.append(f"| {r['id']} | {r['verdict']} | {fmt_num(r['figure'])} | {r['relation']} | "
                   f"{fmt_num(r['bound'])} | {_md_escape(detail)} |")
    figs = [(r["id"], f) for r in records for f in r["figures"]]
    if figs:
        out += ["", "## Figures", ""]
        out += [f"![{cid}]({f})" for cid, f in figs]
    out += ["", "## Tolerances", ""]
    seen = set()
    for r in records:
        if r["claim"] not in seen:
            seen.add(r["claim"])
            out.append(f"- **{r['claim']}**: {_md_escape(r['tolerance'])}")
    out += ["", "## Versions", "", "```", json.dumps(meta["versions"], indent=1), "```", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- figures

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_series(result: CheckResult, out: Path) -> list[str]:
    """One PNG per entry of ``result.evidence["series"]`` in ``out/figures``; returns paths relative to out.
    Needs matplotlib (Agg backend); returns [] without it."""
    series = result.evidence.get("series") if isinstance(result.evidence, dict) else None
    if not series:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return []
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, s in series.items():
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ys = dict(s["y"]) if isinstance(s["y"], dict) else {s.get("ylabel", name): s["y"]}
        ys.update(s.get("extra", {}))
        for label, y in ys.items():
            x = s.get("x", list(range(len(y))))
            ax.plot(x, y, marker=".", label=str(label))
        scale = s.get("scale", "linear")
        if scale in ("loglog", "semilogx"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if scale in ("loglog", "semilogy"):
            ax.set_yscale("log")
        for key, style in (("hline", "--"), ("vline", ":")):
            if key in s:
                (ax.axhline if key == "hline" else ax.axvline)(s[key], color="k", ls=style, lw=0.8)
        ax.set_xlabel(s.get("xlabel", "x"))
        ax.set_ylabel(s.get("ylabel", "y"))
        ax.set_title(f"{result.id}: {name}", fontsize=9)
        if len(ys) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = figdir / f"{_safe(result.id)}__{_safe(name)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(str(path.relative_to(out)))
    return paths


def write(out: Path, records: list[dict], summary: list[dict], meta: dict) -> tuple[Path, Path]:
    """Write report.json and report.md into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / "report.json", out / "report.md"
    doc = {"schema": SCHEMA, "claims": records, "summary": summary, "metadata": _jsonable(meta)}
    jpath.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    mpath.write_text(markdown(summary, records, meta))
    return jpath, mpath
