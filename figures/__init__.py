"""fairverify figures: the theory figures, regenerated from a fresh run of the registry checks.

``python -m figures [--out DIR] [--profile quick|full] [--seed N] [--only NAME,...] [--list]``;
in Python: ``figures.generate(out, profile=..., seed=...)``. See figures/plots.py and docs/FIGURES.md.
Needs matplotlib.
"""

from figures.plots import FIGURES, MissingData, figure_names, generate

__all__ = ["FIGURES", "MissingData", "figure_names", "generate"]
