"""Command line: ``python -m figures [--out DIR] [--profile quick|full] [--seed N] [--only a,b] [--list]``.

Runs the claims behind the figures (never reads committed data) and writes one PNG per figure into
``--out``. A figure whose claim module is not importable or whose series is missing is skipped with a
note; exit status 1 if a claim raised (its figures are missing), 0 otherwise.
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
    return 1 if any(" raised " in v for v in skipped.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
