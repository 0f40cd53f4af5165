"""Command line: ``python -m figures [--out DIR] [--profile quick|full] [--seed N] [--only a,b] [--list]``.

Runs the claims behind the figures (never reads committed data) and writes one PNG per figure into
``--out``. A figure whose claim module is not importable, whose claim raised or whose series is missing
is skipped with a note, and the exit status is 1: every requested figure must be written. With
``--allow-missing`` (an environment without an optional dependency, e.g. torch) only a claim that raised
gives exit status 1.
"""

import argparse
import sys

from figures.plots import FIGURES, generate
from verify.registry import PROFILES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="figures/out", help="output folder (default figures/out)")
    p.add_argument("--profile", choices=PROFILES, default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated figure names (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the figures and their claims, then exit")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit 0 when figures are skipped for a missing module or series (not when a claim "
                        "raised)")
    args = p.parse_args(argv)
    if args.list:
        for f in FIGURES:
            print(f"{f.name:26s} {f.claim:3s} {f.caption}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or None
    try:
        done = generate(args.out, profile=args.profile, seed=args.seed, names=names)
    except ValueError as exc:
        p.error(str(exc))
    written = [n for n, v in done.items() if not isinstance(v, str)]
    skipped = {n: v for n, v in done.items() if isinstance(v, str)}
    print(f"{len(written)} figure(s) written to {args.out}, {len(skipped)} skipped")
    for n, why in skipped.items():
        print(f"  missing {n}: {why}", file=sys.stderr)
    if any(" raised " in v for v in skipped.values()):
        return 1
    return 1 if skipped and not args.allow_missing else 0


if __name__ == "__main__":
    sys.exit(main())
