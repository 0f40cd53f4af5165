"""``python -m verify``: run the registered claims, print the checklist, write the report.

    python -m verify [--profile quick|full] [--target ours|paper|package] [--backend cpu|cuda]
                     [--claims L3,O1] [--out DIR] [--seed N] [--no-figures] [--quiet] [--option KEY=VALUE]

Exit status: 0 when no case FAILs, 1 when some case FAILs, 2 on a usage error (unknown claim, CUDA
requested but absent) or when a check raised (its cases are reported INCONCLUSIVE with the error).
A claim that does not support the chosen target (``Claim.targets``) is reported INCONCLUSIVE with the
reason; it is not run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

from verify import report
from verify.registry import BACKENDS, PROFILES, TARGETS, CheckResult, Claim, Context, Verdict, select

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verify", description=(
        "Check the claims of the fairness-layer papers numerically; print a checklist and write "
        "report.md, report.json and figures."))
    p.add_argument("--profile", choices=PROFILES, default="quick",
                   help="quick (default, minutes) or full (larger sizes, more instances)")
    p.add_argument("--target", choices=TARGETS, default="ours",
                   help="layer under test: ours = layers.project, paper = the authors' cvxpylayers layer, "
                        "package = the published fairness-training package (default: ours)")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help="torch device (default: cpu)")
    p.add_argument("--claims", default="", help="comma-separated claim ids, e.g. L3,O1 (default: all)")
    p.add_argument("--out", type=Path, default=Path("report"), help="output directory (default: ./report)")
    p.add_argument("--seed", type=int, default=0, help="base seed of every random instance (default: 0)")
    p.add_argument("--no-figures", action="store_true", help="do not draw figures")
    p.add_argument("--quiet", action="store_true", help="print only the per-claim lines, no progress bar")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a size option passed to the checks (Context.options), repeatable; e.g. T=300000 and "
                        "seeds=256 for O3/O4, N=4096 for O6 (numbers are read as int or float)")
    return p


def parse_options(items: list[str]) -> dict:
    """["T=3e5", "seeds=256"] -> {"T": 300000, "seeds": 256}; ValueError naming a malformed item."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--option must read KEY=VALUE, got {item!r}")
        try:
            num = float(value)
        except ValueError:
            out[key.strip()] = value.strip()
            continue
        out[key.strip()] = int(num) if num.is_integer() else num
    return out


def check_backend(backend: str) -> None:
    """Raise ValueError with a clear message when the backend cannot run here."""
    if backend != "cuda":
        return
    try:
        import torch
    except ImportError:
        raise ValueError("--backend cuda needs torch, which is not installed") from None
    if not torch.cuda.is_available():
        raise ValueError("--backend cuda: CUDA is not available on this machine "
                         f"(torch {torch.__version__}, torch.version.cuda={torch.version.cuda}); "
                         "use --backend cpu")


def check_args(args) -> None:
    """Raise ValueError naming the problem before any claim runs: a negative seed, a --claims list with no
    id, an --out that cannot be a writable directory."""
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.claims and not any(c.strip() for c in args.claims.split(",")):
        raise ValueError(f"--claims names no claim id: {args.claims!r}")
    out = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out} cannot be created: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} is not writable")


def _progress_factory(enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None

    def progress(items, desc):
        return tqdm(items, desc=desc, leave=False, file=sys.stderr, disable=None, dynamic_ncols=True)

    return progress


def run_claim(claim: Claim, ctx: Context) -> tuple[list[tuple[CheckResult, float, str | None]], bool]:
    """Run one claim; returns [(result, seconds, error)] and whether the check raised."""
    if ctx.target not in claim.targets:
        res = CheckResult(id=claim.id, verdict=Verdict.INCONCLUSIVE, figure=None, bound=None,
                          detail=f"target {ctx.target!r} not supported by this claim "
                                 f"(supported: {', '.join(claim.targets)})")
        return [(res, 0.0, None)], False
    t0 = time.perf_counter()
    try:
        results = claim.run(ctx)
    except Exception as exc:  # noqa: BLE001 - reported, and the exit status says so
        tb = traceback.format_exc(limit=3)
        res = CheckResult(id=claim.id, verdict=Verdict.INCONCLUSIVE, figure=None, bound=None,
                          detail=f"the check raised: {type(exc).__name__}: {exc}",
                          evidence={"traceback": tb})
        return [(res, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")], True
    dt = time.perf_counter() - t0
    if not results:
        res = CheckResult(id=claim.id, verdict=Verdict.INCONCLUSIVE, figure=None, bound=None,
                          detail="the check returned no result")
        return [(res, dt, "no result")], True
    share = dt / len(results)
    return [(r, share, None) for r in results], False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from verify.claims import SKIPPED

    try:
        check_backend(args.backend)
        check_args(args)
        options = parse_options(args.option)
        claims = select(args.claims.split(",") if args.claims else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for name, why in SKIPPED.items():
            print(f"note: claim module {name} not loaded ({why})", file=sys.stderr)
        return EXIT_ERROR

    progress = _progress_factory(not args.quiet)
    ctx = Context(profile=args.profile, target=args.target, backend=args.backend, seed=args.seed,
                  out=args.out, progress=progress, options=options)
    started = datetime.datetime.now()
    t0 = time.perf_counter()
    records: list[dict] = []
    raised = False
    ids = [c.id for c in claims]
    meta = report.metadata(ctx, ids, started, 0.0, SKIPPED)     # versions read once; seconds set below
    items = progress(claims, "claims") if progress else claims
    done: list = []
    for claim in items:
        outcome, err = run_claim(claim, ctx)
        raised |= err
        for res, secs, error in outcome:
            if not args.no_figures:
                try:
                    res.figures = list(res.figures) + report.plot_series(res, args.out)
                except Exception as exc:  # noqa: BLE001 - a broken figure must not lose the run's results
                    raised = True
                    error = error or f"figure: {type(exc).__name__}: {exc}"
                    res.evidence = {**res.evidence, "figure_error": f"{type(exc).__name__}: {exc}"}
            records.append(report.record(claim, res, ctx, secs, error))
        done.append(claim)
        meta["seconds"] = round(time.perf_counter() - t0, 2)
        if len(done) < len(claims):      # partial report after each claim: a run cut short keeps its results
            report.write(args.out, records, report.summarize(done, records), {**meta, "complete": False})
        if args.quiet:
            s = report.summarize([claim], records)[0]
            print(f"{s['claim']:6s} {s['verdict']:13s} {s['cases']} case(s)", flush=True)
    summary = report.summarize(claims, records)
    meta["seconds"] = round(time.perf_counter() - t0, 2)
    jpath, mpath = report.write(args.out, records, summary, {**meta, "complete": True})
    if not args.quiet:
        print("\n".join(report.table_lines(summary, records)))
    for name, why in SKIPPED.items():
        print(f"note: claim module {name} not loaded ({why})", file=sys.stderr)
    n_fail = sum(s["verdict"] == "FAIL" for s in summary)
    n_pass = sum(s["verdict"] == "PASS" for s in summary)
    print(f"\n{len(summary)} claims: {n_pass} PASS, {n_fail} FAIL, {len(summary) - n_pass - n_fail} "
          f"INCONCLUSIVE in {meta['seconds']:.1f} s ({args.profile}, target {args.target}, {args.backend})."
          f"\nreport: {mpath}  {jpath}")
    if summary and n_pass == 0 and n_fail == 0:
        print("warning: no claim was verified (every claim INCONCLUSIVE); see the details in the report",
              file=sys.stderr)
    if raised:
        print("error: some checks raised; see the report", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FAIL if n_fail else EXIT_OK
