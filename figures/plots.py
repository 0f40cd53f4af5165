r"""The theory figures: one PNG per entry of :data:`FIGURES`, drawn from a fresh run of registry checks.

Each figure names the claim whose :class:`~verify.registry.CheckResult` records carry its data in
``evidence["series"]`` (the schema of ``verify.report``: ``{"x", "y" (list or label -> list), "xlabel",
"ylabel", "scale", optional "hline"}``) and a draw function ``draw(results) -> matplotlib Figure``.
A draw function raises :class:`MissingData` when the series it needs is absent; :func:`generate` then
skips that figure with a printed note instead of failing the others. Nothing is read from committed
files: :func:`generate` runs ``claim.run(Context(profile, seed))`` for every claim it needs.

Figures are ~6 x 4 in at 110 dpi (readable at README size), drawn on ``matplotlib.figure.Figure`` with
the Agg canvas (no pyplot state, no display). Every quantity of the checks is dimensionless (predictions
z, y are scores; gaps are differences of group means of scores); axis labels say so or give the unit
(batches, samples, hidden units).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator, NullFormatter

from verify.harness import U64
from verify.registry import CheckResult, Context

DPI = 110
SIZE = (6.0, 4.0)
WIDE = (9.0, 3.8)


class MissingData(LookupError):
    """The results of a claim do not contain the series a figure needs."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """name: file stem; claim: registry id to run; draw(results) -> matplotlib Figure (or MissingData)."""

    name: str
    claim: str
    caption: str
    draw: Callable[[list[CheckResult]], MplFigure]


# ---------------------------------------------------------------------------------------------- helpers

def series_of(results: Iterable[CheckResult], key: str,
              where: Callable[[str], bool] | None = None) -> list[tuple[CheckResult, dict]]:
    """Every (result, series) with ``evidence["series"][key]`` among ``results`` whose id passes ``where``;
    raises MissingData if there is none."""
    found = [(r, r.evidence["series"][key]) for r in results
             if isinstance(r.evidence, dict) and key in (r.evidence.get("series") or {})
             and (where is None or where(r.id))]
    if not found:
        raise MissingData(f"no result carries series {key!r}")
    return found


def curves(s: dict) -> dict[str, np.ndarray]:
    """label -> y values of a series (a bare list becomes one curve labelled by its ylabel)."""
    y = s["y"]
    ys = y if isinstance(y, dict) else {s.get("ylabel", "y"): y}
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in ys.items()}


def new_figure(ncols: int = 1, size: tuple[float, float] | None = None):
    """(figure, list of axes) on the Agg canvas."""
    fig = MplFigure(figsize=size or (SIZE if ncols == 1 else WIDE))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def set_scale(ax, scale: str) -> None:
    if scale in ("loglog", "semilogx"):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if scale in ("loglog", "semilogy"):
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())


def plot_series(ax, s: dict, *, xlabel: str | None = None, ylabel: str | None = None,
                styles: dict[str, dict] | None = None, positive: bool | None = None) -> None:
    """Every curve of series ``s`` on ``ax`` with its scale and ``hline``; labels default to the series'.
    On a log y axis non-positive values are dropped (``positive``; default: when the scale is log in y)."""
    x = np.asarray(s["x"], dtype=np.float64)
    scale = s.get("scale", "linear")
    positive = scale in ("loglog", "semilogy") if positive is None else positive
    for i, (label, y) in enumerate(curves(s).items()):
        st = {"marker": ".", "lw": 1.4, **((styles or {}).get(label) or {})}
        keep = y > 0 if positive else np.isfinite(y)
        ax.plot(x[keep], y[keep], label=label, color=st.pop("color", f"C{i}"), **st)
    if "hline" in s and not (positive and s["hline"] <= 0):
        label = f"eps = {s['hline']:g}" if s["hline"] else None
        ax.axhline(s["hline"], color="k", ls="--", lw=0.8, label=label)
    set_scale(ax, scale)
    if scale in ("loglog", "semilogx") and np.unique(x).size <= 8:     # few points: label each one
        ax.set_xticks(np.unique(x), [f"{v:g}" for v in np.unique(x)])
    ax.set_xlabel(xlabel or s.get("xlabel", "x"))
    ax.set_ylabel(ylabel or s.get("ylabel", "y"))
    ax.grid(True, which="major", alpha=0.3)


def verdict_of(results: Iterable[CheckResult]) -> str:
    """FAIL if any FAILs, PASS if all PASS, INCONCLUSIVE otherwise (verify.report's rule)."""
    from verify.report import claim_verdict

    return claim_verdict([r.verdict.value for r in results])


def finish(fig: MplFigure, title: str, results: Iterable[CheckResult], legend_axes=None) -> MplFigure:
    """Suptitle with the verdict of ``results``: every case that judges a quantity the figure draws (not
    only the case that carries the series: L5's firm residuals are judged by the -firm cases; O6's and
    N1-N4's figures draw the quantities of every case of their claim), small legends, tight layout."""
    fig.suptitle(f"{title}  [{verdict_of(results)}]", fontsize=11)
    for ax in (legend_axes if legend_axes is not None else fig.axes):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5, framealpha=0.85)
    fig.tight_layout()
    return fig


def fit_band(ax, s: dict, ev: dict, *, color: str = "0.5") -> None:
    """Shade the fan of power laws whose exponent spans the slope's CI ``ev["ci"]``, pivoting on the fitted
    line (the curve labelled ``fit ...``) at the geometric centre of the fitted range [burn_in, x_max]; with
    ``ev["claimed"]`` also the claimed power law through the same pivot (dotted)."""
    fit_label = next((k for k in curves(s) if k.startswith("fit")), None)
    if fit_label is None or "ci" not in ev:
        raise MissingData("series has no fitted curve or the evidence no slope CI")
    x = np.asarray(s["x"], dtype=np.float64)
    yfit = curves(s)[fit_label]
    lo, hi = (float(v) for v in ev["ci"])
    slope = float(ev.get("slope", math.log(yfit[-1] / yfit[0]) / math.log(x[-1] / x[0])))
    x0 = math.sqrt(max(float(ev.get("burn_in", x[0])), x[0]) * x[-1])
    y0 = float(yfit[-1] * (x0 / x[-1]) ** slope)
    band = np.stack([y0 * (x / x0) ** lo, y0 * (x / x0) ** hi])
    ax.fill_between(x, band.min(0), band.max(0), color=color, alpha=0.25,
                    label=f"slope 95% CI [{lo:.2f}, {hi:.2f}]")
    if "claimed" in ev:
        a = float(ev["claimed"])
        ax.plot(x, y0 * (x / x0) ** a, color="k", ls=":", lw=1, label=f"claimed rate T^{a:g} (same pivot)")


# ------------------------------------------------------------------------------------------ paper A: layer

def draw_l3_fd(results: list[CheckResult]) -> MplFigure:
    """V-curves: central-difference error of J u vs the step h, one per case, with the tolerance at h*."""
    found = series_of(results, "fd_error_vs_h", lambda i: i.endswith("-fd"))
    fig, (ax,) = new_figure()
    hs_all = []
    for k, (r, s) in enumerate(found):
        hs, err = np.asarray(s["x"], float), np.maximum(np.asarray(s["y"], float), 1e-18)
        hs_all.append(hs)
        case = r.id.removeprefix("L3-").removesuffix("-fd")
        ax.loglog(hs, err, lw=1, color=f"C{k % 10}", label=case)
        h_verdict = float(r.evidence.get("h_verdict", r.evidence.get("h_best", hs[np.argmin(err)])))
        if isinstance(r.bound, (int, float)):
            ax.plot([h_verdict], [r.bound], marker="v", color=f"C{k % 10}", ms=6)
    hs = np.unique(np.concatenate(hs_all))
    ax.loglog(hs, U64 / hs, "k:", lw=1, label="u / h (round-off slope)")
    ax.plot([], [], "kv", ls="none", label="tolerance at the verdict's h (per case)")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("finite-difference step h (units of z)")
    ax.set_ylabel("max |FD_h - J u| (dimensionless)")
    ax.grid(True, alpha=0.3)
    fig = finish(fig, "L3: FD error of the Jacobian vs step h", [r for r, _ in found], [])
    ax.legend(fontsize=6.5, ncol=2, loc="upper center", framealpha=0.85)
    return fig


def draw_l4_eigenvalues(results: list[CheckResult]) -> MplFigure:
    """Histogram of the eigenvalues of J (all cases) and of their distance to {0, 1} with the tolerance."""
    found = series_of(results, "eigenvalues")
    eig = np.concatenate([np.asarray(s["y"], float) for _, s in found])
    dist = np.minimum(np.abs(eig), np.abs(eig - 1))
    fig, (a1, a2) = new_figure(2)
    fin = eig[np.isfinite(eig)]
    lo, hi = min(float(fin.min(initial=0.0)), 0.0), max(float(fin.max(initial=1.0)), 1.0)
    step = 0.1 if hi - lo <= 3 else (hi - lo) / 30                  # every eigenvalue lands in a bin
    a1.hist(fin, bins=np.arange(lo - step / 2, hi + step, step), color="C0")
    for v in (0, 1):
        a1.axvline(v, color="k", ls="--", lw=0.8)
    a1.set_xlabel("eigenvalue of J = dg/dz (dimensionless)")
    a1.set_ylabel(f"count ({eig.size} eigenvalues, {len(found)} cases"
                  + (f", {eig.size - fin.size} not finite)" if fin.size < eig.size else ")"))
    floor = 1e-18
    a2.hist(np.log10(np.maximum(dist, floor)), bins=30, color="C1")
    bounds = [float(r.bound) for r, _ in found if isinstance(r.bound, (int, float))]
    if bounds:
        a2.axvline(math.log10(min(bounds)), color="k", ls="--", lw=1, label="smallest tolerance")
    a2.set_xlabel(f"log10 distance of eigenvalue to {{0, 1}} (0 shown at {math.log10(floor):g})")
    a2.set_ylabel("count")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
    return finish(fig, "L4: Jacobian eigenvalues lie in {0, 1}", [r for r, _ in found])


def draw_l5_lipschitz(results: list[CheckResult]) -> MplFigure:
    """Histograms of ||g(z)-g(z')||/||z-z'|| (bound 1) and of the firm residual (bound 0), all cases."""
    found = series_of(results, "lipschitz_ratios")
    if any("ratio" not in curves(s) for _, s in found):
        raise MissingData("lipschitz_ratios without a 'ratio' curve")
    ratio = np.concatenate([curves(s)["ratio"] for _, s in found])
    firm = np.concatenate([curves(s)["firm residual"] for _, s in found if "firm residual" in curves(s)])
    fig, axes = new_figure(2 if firm.size else 1)
    axes[0].hist(ratio, bins=30, color="C0")
    axes[0].axvline(1.0, color="k", ls="--", lw=1, label="bound 1 (nonexpansive)")
    axes[0].set_xlabel("||g(z) - g(z')|| / ||z - z'|| (dimensionless)")
    axes[0].set_ylabel(f"pairs ({ratio.size}, {len(found)} cases)")
    if firm.size:
        axes[1].hist(firm, bins=30, color="C1")
        axes[1].axvline(0.0, color="k", ls="--", lw=1, label="bound 0 (firmly nonexp.)")
        axes[1].set_xlabel("(||dg||^2 - <dg, dz>) / ||dz||^2 (dimensionless)")
        axes[1].set_ylabel("pairs")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    drawn = {r.id for r, _ in found} | {r.id.removesuffix("-lipschitz") + "-firm" for r, _ in found}
    return finish(fig, "L5: Lipschitz ratios of the layer (Monte-Carlo pairs)",
                  [r for r in results if r.id in drawn])          # the firm residuals are judged by -firm


def draw_l5_eps(results: list[CheckResult]) -> MplFigure:
    """||dy/d eps|| by autograd against the closed form 1/||a||, and their relative error vs tolerance."""
    (r, s), = series_of(results, "eps_sensitivity")[:1]
    c = curves(s)
    formula = np.asarray(s["x"], float)
    measured = next(v for k, v in c.items() if "autograd" in k) if any("autograd" in k for k in c) \
        else next(iter(c.values()))
    fig, (a1, a2) = new_figure(2)
    a1.plot(formula, formula, "k-", lw=1, label="closed form 1/||a||")
    a1.plot(formula, measured, "o", ms=4, mfc="none", color="C0", label="autograd ||dy/d eps||")
    a1.set_xlabel("1/||a|| = sqrt(n0 n1 / (n0 + n1)) (dimensionless)")
    a1.set_ylabel("||dy/d eps|| (dimensionless)")
    rel = np.abs(measured / formula - 1)
    floor = 1e-18
    a2.semilogy(formula, np.maximum(rel, floor), "o", ms=4, color="C1",
                label=f"relative error (0 shown at {floor:g})")
    if isinstance(r.bound, (int, float)):
        a2.axhline(r.bound, color="k", ls="--", lw=1, label="tolerance 10 b u")
    a2.set_xlabel("1/||a|| (dimensionless)")
    a2.set_ylabel("|measured / formula - 1|")
    for ax in (a1, a2):
        ax.grid(True, alpha=0.3)
    return finish(fig, "L5: eps-sensitivity of the projection vs formula", [r])


# ----------------------------------------------------------------------------------------- paper A: online

def draw_o1(results: list[CheckResult]) -> MplFigure:
    (r, s), = series_of(results, "bound_vs_T")[:1]
    fig, (ax,) = new_figure()
    plot_series(ax, s, xlabel="T (batches of 16 samples)", ylabel="gap (difference of group means)",
                styles={"weighted gap W_T": {"lw": 2.2, "marker": "o", "ms": 3}})
    return finish(fig, f"O1: weighted violation vs bound ({r.id.removeprefix('O1-')})", [r])


def draw_o2(results: list[CheckResult]) -> MplFigure:
    found = series_of(results, "lambda_vs_t")[:1] + series_of(results, "lambda_growing_raw_gap")[:1]
    fig, axes = new_figure(2)
    subs = (("stationary stream", "lambda_t, bound B_t (dimensionless)"),
            ("drifting raw gap, no box", "lambda_t, B_t, raw gap G_t (dimensionless)"))
    for ax, (r, s), (sub, yl) in zip(axes, found, subs, strict=True):
        plot_series(ax, s, xlabel="t (batches of 16 samples)", ylabel=yl)
        ax.set_title(f"{r.id}: {sub}", fontsize=9)
    return finish(fig, "O2: multiplier trajectories and their bound", [r for r, _ in found])


def _rate_panel(ax, r: CheckResult, s: dict, xlabel: str, ylabel: str) -> None:
    """Curves, fitted power law, its slope-CI band; the burn-in (not fitted) shaded, the y axis fitted to
    the points after it (earlier points far below, e.g. a regret ~ 0 at T = 10, are cut off)."""
    fit_band(ax, s, r.evidence)
    fit_style = {"ls": "--", "marker": None, "color": "0.3"}
    plot_series(ax, s, xlabel=xlabel, ylabel=ylabel,
                styles={k: fit_style for k in curves(s) if k.startswith("fit")})
    x = np.asarray(s["x"], dtype=np.float64)
    burn_in = float(r.evidence.get("burn_in", x[0]))
    if burn_in > x[0]:
        ax.axvspan(x[0], burn_in, color="0.92", zorder=0, label="burn-in (not fitted)")
    after = np.concatenate([y[(x >= burn_in) & (y > 0)] for y in curves(s).values()])
    if after.size:
        ax.set_ylim(bottom=0.3 * float(after.min()))


def draw_o3(results: list[CheckResult]) -> MplFigure:
    found = series_of(results, "violation_loglog")
    fig, axes = new_figure(len(found))
    for ax, (r, s) in zip(axes, found, strict=True):
        _rate_panel(ax, r, s, "T (batches)", "cumulative violation (samples x gap)")
        ev = r.evidence
        ax.set_title(f"{r.id.removesuffix('-cumulative')}: eps = {ev.get('eps', '?')}", fontsize=9)
    return finish(fig, "O3: violation rate, log-log fit (claimed slope 1/2)", [r for r, _ in found])


def draw_o4(results: list[CheckResult]) -> MplFigure:
    (r, s), = series_of(results, "regret_loglog")[:1]
    fig, (ax,) = new_figure()
    _rate_panel(ax, r, s, "T (batches of 16 samples)", "distortion regret (squared units of z)")
    return finish(fig, "O4: regret vs T, log-log fit (claimed slope <= 1/2)", [r])


def draw_o5(results: list[CheckResult]) -> MplFigure:
    (r, s), = series_of(results, "pooled_vs_weighted")[:1]
    fig, (ax,) = new_figure()
    plot_series(ax, s, xlabel="T (batches)", ylabel="gap (difference of group means)",
                styles={"pooled gap": {"lw": 2.2, "marker": "o", "ms": 3}})
    return finish(fig, "O5: guaranteed weighted gap vs unguaranteed pooled gap", [r])


def draw_o6(results: list[CheckResult]) -> MplFigure:
    """Cost vs batch size; with the rate case's series, PD's relative excess over the aggregate optimum vs
    the horizon n on a second panel (fit and its CI band)."""
    (r, s), = series_of(results, "cost_vs_batch_size")[:1]
    try:
        rate = series_of(results, "lagrangian_excess_loglog")[:1]
    except MissingData:
        rate = []
    fig, axes = new_figure(1 + len(rate))
    plot_series(axes[0], s, xlabel="batch size b (samples)",
                ylabel="distortion per sample (squared units of z)")
    gaps, pd = r.evidence.get("pd_weighted_gap_mean"), curves(s).get("primal-dual")
    if gaps is not None and pd is not None and len(gaps) == len(pd):   # PD's own constraint value per b
        for xb, yb, w in zip(s["x"], pd, gaps, strict=True):
            axes[0].annotate(f"W={w:.2f}", (xb, yb), textcoords="offset points", xytext=(0, 6), fontsize=6.5,
                             ha="center", color="C1")
    for (rr, rs), ax in zip(rate, axes[1:], strict=True):
        _rate_panel(ax, rr, rs, rs.get("xlabel", "n (batches)"), "relative excess over the aggregate optimum")
    return finish(fig, "O6: cost of per-batch fairness vs batch size; PD's excess vs n", results)


# ------------------------------------------------------------------------------------------------ paper B

def draw_n1(results: list[CheckResult]) -> MplFigure:
    found = series_of(results, "regret_vs_T")[:1] + series_of(results, "width_vs_m")[:1]
    fig, (a1, a2) = new_figure(2)
    plot_series(a1, found[0][1], xlabel="T (rounds, one sample each)", ylabel="regret (logistic loss)")
    a1.set_title("regret vs T", fontsize=9)
    plot_series(a2, found[1][1], xlabel="width m (hidden units)",
                ylabel=f"logistic loss, {found[1][1].get('ylabel', '')}")
    a2.set_title("width term vs m", fontsize=9)
    return finish(fig, "N1: projected OGD regret and width term", results)


def draw_n2(results: list[CheckResult]) -> MplFigure:
    (_, s), = series_of(results, "lazy_vs_m")[:1]
    fig, (ax,) = new_figure()
    plot_series(ax, s, xlabel="width m (hidden units)", ylabel="fraction / |f - f_lin| (dimensionless)")
    return finish(fig, "N2: lazy regime vs width", results)


def draw_n3_floor(results: list[CheckResult]) -> MplFigure:
    (_, s), = series_of(results, "violation_vs_m")[:1]
    fig, (ax,) = new_figure()
    plot_series(ax, s, xlabel="width m (hidden units)", ylabel=s.get("ylabel", "violation"))
    return finish(fig, "N3: violation of the mixture vs width", results)


def draw_n3_T_B(results: list[CheckResult]) -> MplFigure:
    found = series_of(results, "violation_vs_T")[:1] + series_of(results, "violation_vs_B")[:1]
    fig, axes = new_figure(2)
    for ax, (_, s), xl in zip(axes, found, ("T (game rounds)", "multiplier bound B"), strict=True):
        plot_series(ax, s, xlabel=xl)
    return finish(fig, "N3: violation of the mixture vs T and B", results)


def draw_n4(results: list[CheckResult]) -> MplFigure:
    found = series_of(results, "violation_by_form")[:1] + series_of(results, "accuracy_by_form")[:1]
    fig, axes = new_figure(2)
    names = {"mix": "mixture", "last": "last iterate", "avg": "averaged weights"}
    for ax, (_, s), xl in zip(axes, found, ("T (game rounds)", "T (game rounds)"), strict=True):
        s = {**s, "y": {names.get(k, k): v for k, v in s["y"].items()}} if isinstance(s["y"], dict) else s
        plot_series(ax, s, xlabel=xl)
    return finish(fig, "N4: mixture vs last iterate vs averaged weights", results)


FIGURES: tuple[Figure, ...] = (
    Figure("l3_fd_vcurve", "L3", "central-difference error of J u against the step h: round-off ~ u/h on the "
           "left, a flat floor at the bottom (the map is affine there), a jump where z +- h u crosses a kink",
           draw_l3_fd),
    Figure("l4_eigenvalues", "L4", "every eigenvalue of the layer's Jacobian is 0 or 1 to round-off (J is an "
           "orthogonal projector), so backpropagation never amplifies a gradient", draw_l4_eigenvalues),
    Figure("l5_lipschitz", "L5", "Lipschitz ratios of the layer never exceed 1 and the firm residual never "
           "exceeds 0 (firmly nonexpansive)", draw_l5_lipschitz),
    Figure("l5_eps_sensitivity", "L5", "the derivative of the projection in eps has norm 1/||a||, the closed "
           "form, to round-off", draw_l5_eps),
    Figure("o1_bound_vs_T", "O1", "the batch-weighted violation of Algorithm 1 stays under the bound of the "
           "package's Theorem 2.2 at every T and approaches eps", draw_o1),
    Figure("o2_lambda", "O2", "the multiplier stays below its bound B_t on a stationary stream and grows "
           "with the raw gap when the raw gap grows without a box", draw_o2),
    Figure("o3_violation_loglog", "O3", "cumulative violation against T on log-log axes with the fitted "
           "power law and the band of its slope's CI", draw_o3),
    Figure("o4_regret_loglog", "O4", "distortion regret against the aggregate-constraint optimum grows like "
           "T^a with a <= 1/2, against the pooled projection much faster (nearly linearly)", draw_o4),
    Figure("o5_pooled_vs_weighted", "O5", "the guaranteed weighted gap converges while the pooled gap of all "
           "predictions stays above eps", draw_o5),
    Figure("o6_cost_vs_batch_size", "O6", "the hard per-batch layer's distortion grows as the batch shrinks; "
           "the primal-dual algorithm (annotated with its weighted gap W) is near the aggregate-constraint "
           "optimum at small b, and its relative excess falls like n^-1/2 or faster", draw_o6),
    Figure("n1_regret", "N1", "OGD regret on the network stays under R G sqrt(T), and the width term shrinks "
           "as the network widens", draw_n1),
    Figure("n2_lazy", "N2", "the fraction of changed activation patterns and the distance to the "
           "linearisation shrink with the width", draw_n2),
    Figure("n3_violation_floor_vs_m", "N3", "the mixture's fairness violation and its floor (1 + 2 nu_T)/B "
           "against the width m", draw_n3_floor),
    Figure("n3_violation_vs_T_B", "N3", "the mixture's violation and (1 + 2 nu_T)/B against the horizon T "
           "and the multiplier bound B", draw_n3_T_B),
    Figure("n4_output_form", "N4", "the mixture meets its bound; the last iterate and the averaged weights "
           "carry no guarantee", draw_n4),
)


def figure_names() -> list[str]:
    return [f.name for f in FIGURES]


# -------------------------------------------------------------------------------------------------- runner

def save(fig: MplFigure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def generate(out: Path | str = "figures/out", *, profile: str = "quick", seed: int = 0,
             names: Iterable[str] | None = None, log: Callable[[str], None] = print,
             context: dict | None = None) -> dict[str, Path | str]:
    """Run the claims behind the figures ``names`` (default: all) once each and write ``out/<name>.png``.

    Returns name -> written Path, or -> a string saying why it was skipped (claim not registered: its
    module's optional dependency is missing; claim raised; series missing). ``context``: extra Context
    keyword arguments (target, backend, options).
    """
    from verify.registry import all_claims

    wanted = list(FIGURES) if names is None else [_by_name(n) for n in names]
    out = Path(out)
    registered = {c.id: c for c in all_claims()}
    done: dict[str, Path | str] = {}
    runs: dict[str, list[CheckResult] | str] = {}
    for spec in wanted:
        if spec.claim not in registered:
            from verify.claims import SKIPPED

            why = "; ".join(f"{k}: {v}" for k, v in SKIPPED.items()) or "not registered"
            done[spec.name] = f"claim {spec.claim} not registered ({why})"
            log(f"skip {spec.name}: {done[spec.name]}")
            continue
        if spec.claim not in runs:
            t0 = time.perf_counter()
            try:
                runs[spec.claim] = registered[spec.claim].run(Context(profile=profile, seed=seed,
                                                                      **(context or {})))
                log(f"ran {spec.claim} ({profile}, seed {seed}) in {time.perf_counter() - t0:.1f} s")
            except Exception as exc:  # noqa: BLE001 - reported, figure skipped, generate() caller decides
                runs[spec.claim] = f"claim {spec.claim} raised {type(exc).__name__}: {exc}"
                log(f"ERROR {runs[spec.claim]}")
        res = runs[spec.claim]
        if isinstance(res, str):
            done[spec.name] = res
            continue
        try:
            fig = spec.draw(res)
        except MissingData as exc:
            done[spec.name] = f"{spec.claim}: {exc}"
            log(f"skip {spec.name}: {done[spec.name]}")
            continue
        done[spec.name] = save(fig, out / f"{spec.name}.png")
        log(f"wrote {done[spec.name]}")
    return done


def _by_name(name: str) -> Figure:
    for f in FIGURES:
        if f.name == name:
            return f
    raise ValueError(f"unknown figure {name!r}; known: {figure_names()}")


__all__ = ["FIGURES", "Figure", "MissingData", "generate", "figure_names", "series_of", "plot_series"]
