r"""Registry entries O1-O6: Algorithm 1 of paper A (the online primal-dual fairness algorithm).

The algorithm under test is ``reference.online.run_online`` (NumPy, exact penalised steps, one stream); its
batched torch twin ``layers.online`` matches it stream for stream to 1e-10 in float64 (tests/test_online.py).
The checks run the reference (the ground truth; the O4/O6 comparators are NumPy too), except O3, whose long
horizons run the torch twin batched over seeds on the context's device (T = 1e5 x 4 seeds quick; 1e6 x 256
seeds full on a GPU), with on-device streams of the same distribution (the NumPy engine where torch is
absent). Streams come from ``reference.data.make_stream``: z = targets + noise N(0, 1) + delta_t (1/2 - A)
(raw DP gap ~ delta_t), noise 0.5, batch size 16 unless a case says otherwise, eps = 0.05 (the synthetic
experiments' tolerance), eta_0 = 0.5 and b_tau = 64 (package defaults). O3, O4 and O6 take 15-20 s each in the
quick profile and are marked slow for the generic checklist (tests/test_online.py runs them on shorter streams
via ``ctx.options``: "T" for O3/O4, "N" for O6).

Notation: v_t = b_t (g_t - eps), N_T = sum_{t<=T} b_t, weighted gap W_T = (1/N_T) sum b_t g_t.

Round-off allowances (u = 1.1e-16): see ``OnlineTrace.roundoff`` for O1 (each computed lambda_{t+1} is off
by <= 2u (lambda_t + eta_t |v_t|), which the proof divides by eta_t; running sums add gamma_T = T u of
their absolute sum); O2: lambda after t steps carries <= 4 t u max(lambda) (t roundings of a sum and a
max), and a zero-gap step's gap (0 in exact arithmetic) evaluates to <= gamma_{b+2} (3 ||a||_1 max|y| +
4 |nu| ||a||^2) (:func:`zero_gap_allowance`: the root nu of its linear piece, the output z - nu a and the gap
a^T y are each rounded; nu = mu*/2 is large when the raw gap is, so z = y + nu a is not bounded by y).

Planted faults: O1 ``constant-step-bound`` evaluates the bound with eta_0 in place of eta_T (what a
constant-step analysis gives) while the run decays its step -- the reverse pairing (constant step in the
run, eta_0/sqrt(T) in the bound) only loosens the bound and cannot fail; ``unweighted-dual`` drops b_t from
the dual step. O2 ``no-overshoot-term`` drops eta_0 b_max (G_max - eps) from the bound;
``half-multiplier-threshold`` tests the zero-gap implication at lambda_t b_t >= mu*_t / 2 (the half-scaled
multiplier nu* of the reference's stationarity form in place of mu* = 2 nu*). O5
``pooled-as-weighted`` reports the batch-weighted average of per-batch gaps as the pooled gap (the
package's docstring says the two coincide for constant group ratios; they do not). O3 ``over-decaying-step``
runs eta_0/t; O4 ``hard-per-batch`` replaces Algorithm 1 by the hard layer on every batch (b_tau = 1); O6
``per-batch-normalisation`` divides the distortion by the number of batches instead of samples (caught by
O6-hard-grows), ``constant-step`` runs Algorithm 1 with eta_t = eta_0 at every t (caught by
O6-pd-approaches: the relative excess stalls, ~n^-0.34, and the saddle-point bound computed with the
schedule's eta_t fails).
"""

from __future__ import annotations

import functools

import numpy as np

from reference import online as ref
from reference import solve
from reference.data import Stream, StreamBatch, make_stream
from verify.harness import U64, fit_loglog
from verify.registry import REGISTRY, CheckResult, Claim, Context, Verdict, register

EPS = 0.05
ETA0 = ref.ETA0_PACKAGE
B_TAU = ref.B_TAU_PACKAGE
NOISE = 0.5

# O1 scenarios: name -> (make_stream keyword arguments, box, T factor). "singletons" splits b = 2 batches
# into b = 1 batches (no group pair: G = 0, the constraint is dropped); "two-attributes" uses the coupled
# exact step (~15 ms a step), hence a shorter stream.
SCENARIOS: dict[str, dict] = {
    "stationary": dict(bias="stationary"),
    "drifting": dict(bias="drifting"),
    "varying-ratio": dict(group_ratio="varying"),
    "switching": dict(bias="switching"),
    "sizes-2-64": dict(batch_size=(2, 64)),
    "drifting-box": dict(bias="drifting", bounds=(-2.0, 2.0)),
    "singletons": dict(batch_size=2),
    "two-attributes": dict(n_attributes=2),
}


def scenario_stream(name: str, T: int, seed: int) -> tuple[list, tuple | None]:
    """The batches of scenario ``name`` (T batches) and its box."""
    kw = dict(SCENARIOS[name])
    bounds = kw.pop("bounds", None)
    if name == "singletons":
        stream = make_stream(-(-T // 2), seed=seed, noise=NOISE, **kw)
        return singletons(stream)[:T], bounds
    return make_stream(T, seed=seed, noise=NOISE, bounds=bounds, **kw).batches, bounds


def singletons(stream: Stream) -> list[StreamBatch]:
    """Split every batch of ``stream`` into batches of one sample each (b_t = 1)."""
    return [StreamBatch(z=bt.z[i:i + 1], groups=bt.groups[i:i + 1], targets=bt.targets[i:i + 1])
            for bt in stream.batches for i in range(bt.z.size)]


def log_points(T: int, n: int = 40) -> np.ndarray:
    """About n log-spaced indices 0..T-1 (for plot series)."""
    return np.unique(np.geomspace(1, T, n).astype(int)) - 1


def _unweighted_update(lam, eta, b, g, eps):
    """Planted fault of O1: the dual step forgets the batch weight b_t."""
    return max(0.0, lam + eta * (g - eps))


# ------------------------------------------------------------------------------------------------ O1

@register(Claim(
    id="O1", paper="A", provenance="code",
    statement="aggregate violation bound (package docstring 'Theorem 2.2'): (1/N_T) sum_t b_t g_t <= eps "
              "+ lambda_{T+1}/(eta_T N_T) <= eps + max_{t<=T+1} lambda_t/(eta_T N_T) at EVERY T, for "
              "stationary, drifting, varying-ratio, switching streams, batch sizes 1..64 (b_tau = 64: "
              "size 64 takes the hard layer), with a box, two attributes; both step schedules (package "
              "eta_0/sqrt(t), experiment code eta_0/sqrt(max(1, t-1))); figure = max_T (W_T - bound_T - "
              "allowance_T) (<= 0)",
    tolerance="float64 allowance per T (OnlineTrace.roundoff): (2u sum_t (lambda_t/eta_t + |v_t|) + T u "
              "sum_t b_t g_t)/N_T + 4u bound_T, u = 1.1e-16 (rounding of each dual update, amplified by "
              "1/eta_t in the Abel summation, plus gamma_T for the running sums). The bound is attained "
              "with equality at T = 1 (W_1 = g_1 = eps + lambda_2/(eta_1 b_1)), so the allowance is "
              "needed",
    faults=("constant-step-bound", "unweighted-dual")))
def check_o1(ctx: Context) -> list[CheckResult]:
    T = 20000 if ctx.full else 1500
    seeds = range(ctx.seed, ctx.seed + (4 if ctx.full else 1))
    update = _unweighted_update if ctx.fault == "unweighted-dual" else ref.dual_update
    results = []
    for name in ctx.iterate(list(SCENARIOS), "O1 scenarios"):
        T_case = max(30, T // 50) if name == "two-attributes" else T
        for schedule in ref.SCHEDULES:
            worst, worst_max, tight, traces = -np.inf, -np.inf, np.inf, []
            for seed in seeds:
                batches, bounds = scenario_stream(name, T_case, seed)
                tr = ref.run_online(batches, eps=EPS, eta0=ETA0, schedule=schedule, bounds=bounds,
                                    b_tau=B_TAU, update=update, keep_y=False)
                W, allow = tr.weighted_gap(), tr.roundoff()
                # planted fault: the bound a constant step eta_0 would give, while the run decays its step
                eta = tr.eta0 if ctx.fault == "constant-step-bound" else None
                last, mx = tr.bound("last", eta=eta), tr.bound("max", eta=eta)
                worst = float(np.max([worst, np.max(W - last - allow)]))     # np.max: a NaN propagates
                worst_max = float(np.max([worst_max, np.max(W - mx - allow)]))
                tight = min(tight, float(np.min((last - W)[1:] / np.maximum(last - EPS, 1e-300)[1:]))
                            if tr.T > 1 else np.inf)
                traces.append(tr)
            tr = traces[0]
            ev = dict(T=T_case, seeds=list(seeds), eps=EPS, eta0=ETA0, b_tau=B_TAU, schedule=schedule,
                      excess_last=worst, excess_max=worst_max, lambda_final=float(tr.lam[-1]),
                      lambda_max=float(tr.lam.max()), hard_batches=int(tr.hard.sum()),
                      min_relative_slack_T_ge_2=tight, W_final=float(tr.weighted_gap()[-1]),
                      bound_final=float(tr.bound("last")[-1]))
            if name == "stationary" and schedule == "package":
                idx = log_points(tr.T)
                ev["series"] = {"bound_vs_T": {
                    "x": (idx + 1).tolist(), "xlabel": "T (batches)", "ylabel": "gap", "scale": "loglog",
                    "hline": EPS,
                    "y": {"weighted gap W_T": tr.weighted_gap()[idx].tolist(),
                          "eps + lam_{T+1}/(eta_T N_T)": tr.bound("last")[idx].tolist(),
                          "eps + max lam/(eta_T N_T)": tr.bound("max")[idx].tolist()}}}
            results.append(CheckResult.compare(
                f"O1-{name}-{schedule}", max(worst, worst_max), 0.0, "<=", evidence=ev,
                detail=f"max_T (W_T - bound - allowance) = {worst:.3g} (lambda_{{T+1}}), {worst_max:.3g} "
                       f"(max lambda); final W_T = {ev['W_final']:.4g} vs bound {ev['bound_final']:.4g}"))
    return results


# ------------------------------------------------------------------------------------------------ O2

O2_SCENARIOS = ("stationary", "varying-ratio", "switching", "sizes-2-64", "drifting-box", "two-attributes")


def multiplier_bound(batches, tr: ref.OnlineTrace, bounds, *,
                     overshoot: bool = True) -> tuple[np.ndarray, dict]:
    """B_t for t = 2..T+1: max_{s<t} mu*_s/b_s + eta_0 max_{s<t} b_s (max_{s<t} G_s - eps)^+, (T,).

    mu*_s = sum_k |mu_k| of the exact projection of z_s onto {G_s = 0} (reference.solve, eps = 0): once
    lambda_s b_s >= mu*_s the penalised step returns g_s = 0. G_s = G_s(clip(z_s)), the raw gap (the step's
    gap never exceeds it). Hard-layer batches (b_s >= b_tau) leave lambda alone and are skipped.
    Also returns mu* (T,) and raw gaps (T,) in a dict.
    """
    T = len(batches)
    mu, raw = np.zeros(T), np.zeros(T)
    for s, bt in enumerate(batches):
        if tr.hard[s]:
            continue
        res = solve(bt.z, bt.groups, metric="dp", eps=0.0, bounds=bounds, empty="drop")
        mu[s] = float(np.abs(res.mu).sum())
        zc = bt.z if bounds is None else np.clip(bt.z, *bounds)
        raw[s] = ref.batch_gap(zc, bt.groups)
    b = np.where(tr.hard, 0, tr.b)
    B = np.maximum.accumulate(np.where(tr.hard, 0.0, mu / np.maximum(tr.b, 1)))
    if overshoot:
        B = B + tr.eta0 * np.maximum.accumulate(b) * np.maximum(np.maximum.accumulate(raw) - tr.eps, 0.0)
    return B, dict(mu=mu, raw=raw)


def zero_gap_allowance(groups, y: np.ndarray, mu: float) -> float:
    """Round-off bound on the computed gap of a zero-gap step (one DP row a: +-1/n_g, ||a||_1 = 2).

    The step is y = clip(z - nu a) with nu = num / ||a_F||^2 solved on the root's linear piece
    (``reference.projection.row_value_root``), num = sum_F a_i z_i + sum_C a_i y_i. Rounding num and the
    division leaves |a^T y(nu_hat)| <= gamma_{b+1} (sum |a_i x_i| + |nu| ||a||^2), x = z on F, y on C,
    and sum_F |a_i z_i| <= ||a||_1 max|y| + |nu| ||a||^2 (z_i = y_i + nu a_i there); forming
    y_i = z_i - nu a_i adds u (||a||_1 max|y| + 2 |nu| ||a||^2); evaluating a^T y adds
    gamma_b ||a||_1 max|y|. In all:
    g <= gamma_{b+2} (3 ||a||_1 max|y| + 4 |nu| ||a||^2), nu = mu*/2.
    """
    counts = np.bincount(np.asarray(groups).reshape(len(y), -1)[:, 0].astype(np.int64))
    a_sq = float(np.sum(1.0 / counts[counts > 0]))
    b = len(y)
    gamma = (b + 2) * U64 / (1 - (b + 2) * U64)
    return gamma * (3 * 2.0 * float(np.max(np.abs(y))) + 4 * (mu / 2) * a_sq)


@register(Claim(
    id="O2", paper="A", provenance="reconstructed",
    statement="bounded multiplier: lambda_t <= max_{s<t} mu*_s/b_s + eta_0 b_max (G_max - eps)^+ (mu*_s: "
              "multiplier of the zero-gap projection of batch s, from the exact reference; G_max the "
              "largest raw gap), and whenever lambda_t b_t >= mu*_t the step returns g_t = 0; without a "
              "box and with growing raw gaps lambda grows with them (no uniform bound)",
    tolerance="lambda_t <= B_t + 4 t u max(lambda, B) (t roundings of the dual update, u = 1.1e-16); "
              "zero-gap steps: g_t <= gamma_{b+2} (3 ||a||_1 max|y_t| + 4 |nu_t| ||a||^2), nu_t = mu*_t/2 "
              "(rounding of the root on its linear piece, of y = z - nu a and of a^T y; zero_gap_allowance); "
              "growth case: mean lambda over t in (0.9T, T] / mean over (T/4, T/2] >= (1/2) the "
              "same ratio of raw gaps (lambda* is proportional to the raw gap for one attribute without a "
              "box; the factor 1/2 absorbs the oscillation of the drifting offset)",
    faults=("no-overshoot-term", "half-multiplier-threshold")))
def check_o2(ctx: Context) -> list[CheckResult]:
    T = 5000 if ctx.full else 800
    results = []
    zero_gap_worst, zero_gap_n = -np.inf, 0
    overshoot = ctx.fault != "no-overshoot-term"
    for name in ctx.iterate(O2_SCENARIOS, "O2 scenarios"):
        # the coupled (two-attribute) step is ~100x slower per batch than the one-row closed form
        batches, bounds = scenario_stream(name, T // 4 if name == "two-attributes" else T, ctx.seed)
        tr = ref.run_online(batches, eps=EPS, eta0=ETA0, bounds=bounds, b_tau=B_TAU, keep_y=True)
        B, info = multiplier_bound(batches, tr, bounds, overshoot=overshoot)
        lam_next = tr.lam[1:]
        t = np.arange(1, tr.T + 1)
        allow = 4 * t * U64 * np.maximum(np.maximum.accumulate(lam_next), B)
        excess = float(np.max(lam_next - B - allow))
        # zero-gap regime: lambda_t b_t >= mu*_t  =>  g_t = 0
        threshold = info["mu"] / 2 if ctx.fault == "half-multiplier-threshold" else info["mu"]
        zero = (~tr.hard) & (tr.lam[:-1] * tr.b >= threshold)
        for s in np.flatnonzero(zero):
            excess_s = tr.g[s] - zero_gap_allowance(batches[s].groups, tr.y[s], info["mu"][s])
            zero_gap_worst = float(np.max([zero_gap_worst, excess_s]))      # np.max: a NaN propagates
        zero_gap_n += int(zero.sum())
        ev = dict(T=T, seed=ctx.seed, lambda_max=float(tr.lam.max()), bound_final=float(B[-1]),
                  mu_over_b_max=float(np.max(info["mu"] / tr.b)), raw_gap_max=float(info["raw"].max()),
                  zero_gap_steps=int(zero.sum()))
        if name == "stationary":
            idx = log_points(tr.T)
            ev["series"] = {"lambda_vs_t": {
                "x": (idx + 2).tolist(), "xlabel": "t", "ylabel": "lambda_t", "scale": "loglog",
                "y": {"lambda_t": np.maximum(lam_next[idx], 1e-300).tolist(), "bound B_t": B[idx].tolist()}}}
        results.append(CheckResult.compare(
            f"O2-{name}", excess, 0.0, "<=", evidence=ev,
            detail=f"max_t (lambda_t - B_t) = {excess:.3g}; max lambda {ev['lambda_max']:.4g}, "
                   f"final bound {ev['bound_final']:.4g}"))
    results.append(CheckResult.compare(
        "O2-zero-gap", zero_gap_worst if zero_gap_n else 0.0, 0.0, "<=",
        evidence=dict(steps=zero_gap_n),
        detail=f"{zero_gap_n} steps with lambda_t b_t >= mu*_t; "
               f"max (g_t - allowance) = {zero_gap_worst:.3g}"))

    # growth: drifting offset (raw gap grows linearly), no box
    batches, _ = scenario_stream("drifting", T, ctx.seed)
    tr = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=B_TAU, keep_y=False)
    B, info = multiplier_bound(batches, tr, None, overshoot=overshoot)
    early, late = slice(T // 4, T // 2), slice(T - T // 10, T)     # windows of t, past the first overshoot
    lam_growth = float(np.mean(tr.lam[1:][late]) / np.mean(tr.lam[1:][early]))
    raw_growth = float(np.mean(info["raw"][late]) / np.mean(info["raw"][early]))
    idx = log_points(tr.T)
    excess = float(np.max(tr.lam[1:] - B - 4 * np.arange(1, tr.T + 1) * U64 * np.maximum(tr.lam[1:], B)))
    ev = dict(T=T, lambda_growth=lam_growth, raw_gap_growth=raw_growth, lambda_final=float(tr.lam[-1]),
              series={"lambda_growing_raw_gap": {
                  "x": (idx + 2).tolist(), "xlabel": "t", "ylabel": "lambda_t", "scale": "loglog",
                  "y": {"lambda_t": np.maximum(tr.lam[1:][idx], 1e-300).tolist(),
                        "bound B_t": B[idx].tolist(), "raw gap G_t": info["raw"][idx].tolist()}}})
    results.append(CheckResult.compare(
        "O2-growing-no-box-bound", excess, 0.0, "<=", evidence=dict(T=T),
        detail=f"drifting raw gap, no box: max_t (lambda_t - B_t) = {excess:.3g}"))
    results.append(CheckResult.compare(
        "O2-growing-no-box", lam_growth, raw_growth / 2, ">=", evidence=ev,
        detail=f"mean lambda grew x{lam_growth:.3g} from t in (T/4, T/2] to (0.9 T, T] while the raw gap "
               f"grew x{raw_growth:.3g}: no uniform bound without bounded raw gaps"))
    return results


# ------------------------------------------------------------------------------------------------ O5

ABLATION_T = (342, 782)     # the authors' FairFace small-batch ablation: 342-782 batches of 14-32
ABLATION_EPS = 1e-4
ABLATION_ETA0 = 0.1         # FairFace code


def composition_stream(T: int, seed: int, shift: float = 2.0) -> list[StreamBatch]:
    """Varying group ratio with a batch level that follows the composition: z_t += shift (r_t - 1/2),
    r_t the batch's group-0 share. Within a batch the shift is common (per-batch gaps unchanged); pooled,
    group 0 sits in high-level batches -- a Simpson-type pooled gap no per-batch correction removes."""
    stream = make_stream(T, seed=seed, noise=NOISE, group_ratio="varying")
    out = []
    for bt in stream.batches:
        r = float(np.mean(bt.groups[:, 0] == 0))
        out.append(StreamBatch(z=bt.z + shift * (r - 0.5), groups=bt.groups, targets=bt.targets))
    return out


def _o5_case(cid: str, batches, tr: ref.OnlineTrace, fault: str | None, note: str) -> CheckResult:
    W, bound = tr.weighted_gap(), tr.bound("last")
    holds = bool(np.all(W <= bound + tr.roundoff()))
    pooled = ref.pooled_gap(tr.y, batches)
    figure = float(W[-1]) if fault == "pooled-as-weighted" else pooled
    ev = dict(T=tr.T, N=int(tr.N[-1]), eps=tr.eps, eta0=tr.eta0, weighted_gap=float(W[-1]),
              bound=float(bound[-1]), pooled_gap=pooled, guarantee_holds=holds)
    res = CheckResult.compare(cid, figure, tr.eps, ">=", evidence=ev,
                              detail=f"{note}: pooled gap {pooled:.3g} vs eps {tr.eps:g}; weighted gap "
                                     f"{W[-1]:.3g} <= bound {bound[-1]:.3g}: {holds}")
    if not holds:
        res.verdict = Verdict.FAIL
        res.detail += " (the guarantee itself failed: see O1)"
    return res


@register(Claim(
    id="O5", paper="A", provenance="code/docs",
    statement="what is and is not guaranteed: the bound covers the batch-weighted average of per-batch "
              "gaps, not the pooled gap of all predictions, and nothing at finite T. Cases where the "
              "guarantee holds at every T while the pooled gap is >= eps: the authors' ablation sizes "
              "(eps = 1e-4, b = 16, T = 342, 782, eta_0 = 0.1), a varying-composition stream at large T "
              "(Simpson), and b = 1 (no group pair in a batch: G_t = 0, nothing is corrected); figure = "
              "pooled gap (>= eps: demonstrated)",
    tolerance="guarantee: O1's float64 allowance; pooled gap compared with eps directly (the cases' "
              "pooled gaps exceed eps by orders of magnitude, round-off ~ N u)",
    faults=("pooled-as-weighted",)))
def check_o5(ctx: Context) -> list[CheckResult]:
    results = []
    for T in ABLATION_T:
        batches = make_stream(T, seed=ctx.seed, noise=NOISE, batch_size=16).batches
        tr = ref.run_online(batches, eps=ABLATION_EPS, eta0=ABLATION_ETA0, b_tau=1024)
        results.append(_o5_case(f"O5-ablation-T{T}", batches, tr, ctx.fault,
                                f"stationary stream, b = 16, T = {T}"))
    T = 20000 if ctx.full else 2000
    batches = composition_stream(T, ctx.seed)
    tr = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=B_TAU)
    res = _o5_case("O5-composition", batches, tr, ctx.fault, f"varying composition, T = {T}")
    idx = log_points(tr.T, 12)
    pooled = [ref.pooled_gap(tr.y[:i + 1], batches[:i + 1]) for i in idx]
    res.evidence["series"] = {"pooled_vs_weighted": {
        "x": (idx + 1).tolist(), "xlabel": "T (batches)", "ylabel": "gap", "scale": "loglog", "hline": EPS,
        "y": {"pooled gap": pooled, "weighted gap W_T": tr.weighted_gap()[idx].tolist(),
              "bound": tr.bound("last")[idx].tolist()}}}
    results.append(res)
    batches, _ = scenario_stream("singletons", T, ctx.seed)
    tr = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=B_TAU)
    results.append(_o5_case("O5-singletons", batches, tr, ctx.fault, f"b = 1, T = {T}"))
    return results


# ------------------------------------------------------------------------------------------------ O3

RATE_ETA0 = 0.02    # a small step makes the approach phase visible (eta_0 = 0.5 overshoots in one step and
#                     then never violates again: slope 0, which says nothing about the rate)


def bursty_offsets(T: int, c: float = 2.0, offset: float = 1.0) -> np.ndarray:
    """Adversarial on/off raw gap delta_t, (T,): phases of length max(1, round(c sqrt(t))) alternate between
    ``offset`` (loud) and 0 (quiet), so that lambda rises in loud phases and decays in quiet ones at every
    scale of t: the positive excursions of sum_t v_t then grow like lambda*/eta_t ~ sqrt(t), the O(sqrt T)
    of the bound (a stationary stream is far easier)."""
    delta, t, loud = np.zeros(T), 0, True
    while t < T:
        L = max(1, round(c * np.sqrt(t + 1)))
        if loud:
            delta[t:t + L] = offset
        t, loud = t + L, not loud
    return delta


def bursty_stream(T: int, seed: int) -> list[StreamBatch]:
    """make_stream(offset=0) with the raw gap of :func:`bursty_offsets` added (host streams, one seed)."""
    stream = make_stream(T, seed=seed, noise=NOISE, offset=0.0)
    return [StreamBatch(z=bt.z + d * (0.5 - bt.groups[:, 0]), groups=bt.groups, targets=bt.targets)
            for bt, d in zip(stream.batches, bursty_offsets(T), strict=True)]


# scenario -> (eps, stream builder, measured curve). Stationary with eps = 0: v_t = b_t g_t >= 0, so the
# cumulative violation is positive and increasing; bursty with eps = 0.05: the running maximum of the
# positive part of sum_t v_t (the signed sum returns to ~0 after each quiet phase).
O3_SCENARIOS = {
    "stationary-eps0": (0.0, lambda T, seed: make_stream(T, seed=seed, noise=NOISE).batches, "cumulative"),
    "bursty": (EPS, bursty_stream, "envelope"),
}
O3_BATCH = 16
# (T, seeds) per profile and engine: the batched torch run (layers.online, float64) on the context's device;
# the full profile's 256 seeds x 1e6 steps need a GPU (33 GB of z in float64), on the CPU it takes 8 seeds.
O3_SIZES = {("quick", "cpu"): (100_000, 4), ("quick", "cuda"): (100_000, 4),
            ("full", "cpu"): (1_000_000, 8), ("full", "cuda"): (1_000_000, 256)}
O3_REFERENCE_SIZES = {"quick": (20_000, 4), "full": (100_000, 8)}   # NumPy engine (no torch), per stream


def o3_streams_torch(name: str, T: int, S: int, seed: int, device: str, chunk: int = 1 << 14):
    """S streams of scenario ``name`` generated on ``device`` (torch RNG, float64): b = 16 with 8 + 8 group
    members (group 0 first: projection and gap are permutation-invariant), targets ~ N(0, 1),
    z = targets + NOISE N(0, 1) + delta_t (1/2 - A) with delta_t = 1 (stationary, make_stream's offset) or
    :func:`bursty_offsets` -- the distribution of the host streams, not their numbers.
    Returns z (T, S, 16) and groups (T, S, 16) (an expanded view of one label pattern)."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    A = torch.arange(O3_BATCH, device=device) >= O3_BATCH // 2
    delta = torch.as_tensor(bursty_offsets(T) if name == "bursty" else np.ones(T), dtype=torch.float64,
                            device=device)
    z = torch.empty(T, S, O3_BATCH, dtype=torch.float64, device=device)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        shape = (t1 - t0, S, O3_BATCH)
        zc = torch.randn(shape, generator=gen, dtype=torch.float64, device=device)          # targets
        zc.add_(torch.randn(shape, generator=gen, dtype=torch.float64, device=device), alpha=NOISE)
        z[t0:t1] = zc + delta[t0:t1, None, None] * (0.5 - A.to(torch.float64))
    return z, A.to(torch.int64).expand(T, S, O3_BATCH)


def _violation_curves(name: str, T: int, S: int, seed: int, fault: str | None, engine: str, device: str,
                      idx: np.ndarray, progress=None):
    """Cumulative (or envelope) violation C, weighted average A = C / N_T and the O1 bound term
    lambda_{T+1} / eta_T of S streams at the indices ``idx`` of 0..T-1: arrays (S, len(idx)); and O1's
    inequality on the same runs at every step, as O1 checks it (:func:`o1_excess`), (S,)."""
    eps, build, kind = O3_SCENARIOS[name]
    schedule = "inverse" if fault == "over-decaying-step" else "package"
    if engine == "reference":
        C, A, B, O1 = [], [], [], []
        for s in range(S):
            tr = ref.run_online(build(T, seed + s), eps=eps, eta0=RATE_ETA0, schedule=schedule, keep_y=False)
            O1.append(o1_excess(tr))
            cv = tr.cumulative_violation()
            if kind == "envelope":
                cv = np.maximum.accumulate(np.maximum(cv, 0.0))
            C.append(cv[idx])
            A.append((cv / tr.N)[idx])
            B.append((tr.lam[1:] / tr.eta_last())[idx])
        return np.array(C), np.array(A), np.array(B), np.array(O1)
    import torch

    from layers import online as lon
    z, groups = o3_streams_torch(name, T, S, seed, device)
    tr = lon.run_online(z, groups, eps=eps, eta0=RATE_ETA0, schedule=schedule, b_tau=None, check=False,
                        progress=progress)
    O1 = np.array([o1_excess(tr.stream(s)) for s in range(S)])
    cv = torch.cumsum(O3_BATCH * (tr.g - eps), dim=0)                         # (T, S), b_t = 16
    if kind == "envelope":
        cv = torch.cummax(cv.clamp_min(0.0), dim=0).values
    sel = torch.as_tensor(idx, device=cv.device)
    N = torch.as_tensor(O3_BATCH * (idx + 1.0), dtype=cv.dtype, device=cv.device)[:, None]
    eta = torch.as_tensor(tr.eta[idx], dtype=cv.dtype, device=cv.device)[:, None]
    C = cv[sel]
    return (C.T.cpu().numpy(), (C / N).T.cpu().numpy(), (tr.lam[1:][sel] / eta).T.cpu().numpy(), O1)


def o1_excess(tr: ref.OnlineTrace) -> float:
    """O1's inequality on one trace at every T: max_T (W_T - eps - lambda_{T+1}/(eta_T N_T) - allowance),
    in gap units, with the trace's own bound and float64 allowance (``OnlineTrace.bound``, ``.roundoff``)."""
    return float(np.max(tr.weighted_gap() - tr.bound("last") - tr.roundoff()))


def _fit_case(cid, T_grid, curves, claimed, burn_in, what, extra=None) -> CheckResult:
    """PASS when the bootstrap CI of the log-log slope reaches the claimed exponent or below (rate as good
    as claimed or better): figure = CI lower end, bound = claimed."""
    fit = fit_loglog(T_grid, curves, burn_in=burn_in, seeds_axis=0, seed=0)
    ev = dict(slope=fit.slope, ci=list(fit.ci), level=fit.level, n_points=fit.n_points, n_seeds=fit.n_seeds,
              burn_in=burn_in, claimed=claimed, **(extra or {}))
    detail = (f"{what}: slope {fit.slope:.3f}, {int(fit.level * 100)}% CI [{fit.ci[0]:.3f}, "
              f"{fit.ci[1]:.3f}] vs claimed {claimed:+.1f} (or better)")
    res = CheckResult.compare(cid, fit.ci[0], claimed, "<=", evidence=ev, detail=detail)
    return res, fit


@register(Claim(
    id="O3", paper="A", provenance="reconstructed",
    statement="rate (from O1 + O2): weighted average violation (1/N_T) sum b_t (g_t - eps) = O(T^-1/2), "
              "cumulative violation O(sqrt T); log-log slopes after a burn-in of T/100 batches with a "
              "bootstrap CI over seeds, on a stationary stream (eps = 0, so the violation is the gap and "
              "positive) and an adversarial on/off stream (eps = 0.05, running maximum of the positive "
              "part); eta_0 = 0.02; figure = lower end of the slope's CI (<= claimed exponent: consistent "
              "with the rate or better). T = 1e5 steps x 4 seeds (quick), 1e6 x 256 seeds (full, cuda; 8 "
              "seeds on the CPU), layers.online in float64; on the same runs, O1's inequality at every step "
              "(case -o1: the only O check of the torch engine's own traces)",
    tolerance="statistical: 95% percentile bootstrap over seeds (verify.harness.fit_loglog, 2000 "
              "resamples of whole curves, Theil-Sen fit of the log of the mean curve, <= 60 log-spaced "
              "points); round-off is irrelevant at these magnitudes (curves >= 1e-3, u = 1.1e-16). Case "
              "-o1: O1's float64 allowance (reference.online.OnlineTrace.roundoff)",
    faults=("over-decaying-step",)))
def check_o3(ctx: Context) -> list[CheckResult]:
    try:
        import layers.online  # noqa: F401
        engine = "layers.online"
        T, S = O3_SIZES[("full" if ctx.full else "quick", ctx.backend)]
    except ImportError:
        engine = "reference"                       # no torch: the NumPy recursion, one stream at a time
        T, S = O3_REFERENCE_SIZES["full" if ctx.full else "quick"]
    T = int(ctx.options.get("T", T))
    S = int(ctx.options.get("seeds", S))
    idx = log_points(T, 400)
    T_grid = idx + 1.0
    burn_in = max(10, T // 100)
    results = []
    for name in ctx.iterate(list(O3_SCENARIOS), "O3 scenarios"):
        desc = f"O3 {name}: chunks of steps"
        C, A, B, O1 = _violation_curves(name, T, S, ctx.seed, ctx.fault,
                                        "reference" if engine == "reference" else "torch", ctx.backend, idx,
                                        progress=functools.partial(ctx.iterate, desc=desc))
        bound_fit = fit_loglog(T_grid, B, burn_in=burn_in, seeds_axis=0)
        extra = dict(T=T, seeds=S, seed=ctx.seed, engine=engine, device=ctx.backend, eta0=RATE_ETA0,
                     eps=O3_SCENARIOS[name][0], bound_slope=bound_fit.slope, bound_ci=list(bound_fit.ci))
        res_c, fit_c = _fit_case(f"O3-{name}-cumulative", T_grid, C, 0.5, burn_in,
                                 "cumulative violation", extra)
        res_a, _ = _fit_case(f"O3-{name}-average", T_grid, A, -0.5, burn_in, "weighted average violation",
                             extra)
        res_o1 = CheckResult.compare(
            f"O3-{name}-o1", float(np.max(O1)), 0.0, "<=", evidence=dict(T=T, seeds=S, seed=ctx.seed),
            detail="O1's inequality on these runs, every step: max_T (W_T - eps - lambda_{T+1}/(eta_T N_T) - "
                   f"round-off allowance) = {float(np.max(O1)):.3g}")
        for r in (res_c, res_a, res_o1):
            r.detail += f" ({engine}, T = {T}, {S} seeds)"
        pts = log_points(T, 40)
        res_c.evidence["series"] = {"violation_loglog": {
            "x": (pts + 1).tolist(), "xlabel": "T (batches)", "ylabel": "violation", "scale": "loglog",
            "y": {"cumulative (mean over seeds)": np.interp(pts + 1.0, T_grid, C.mean(0)).tolist(),
                  f"fit T^{fit_c.slope:.2f}":
                      np.exp(fit_c.intercept + fit_c.slope * np.log(pts + 1.0)).tolist(),
                  "bound lam_{T+1}/eta_T": np.interp(pts + 1.0, T_grid, B.mean(0)).tolist()}}}
        results += [res_c, res_a, res_o1]
    return results


# ------------------------------------------------------------------------------------------------ O4

def regret_curves(T: int, seeds, grid: np.ndarray, fault: str | None):
    """Distortion regret R_n = sum_{t<=n} ||y_t - z_t||^2 - OPT_n at the horizons n in ``grid`` (the
    comparators are re-solved on the first n batches: hindsight at each horizon), for the aggregate optimum
    (reference.online.aggregate_optimum) and the pooled projection; arrays (seeds, len(grid))."""
    R_agg, R_pool, W = [], [], []
    for seed in seeds:
        batches = make_stream(T, seed=seed, noise=NOISE).batches
        b_tau = 1 if fault == "hard-per-batch" else B_TAU
        tr = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=b_tau, keep_y=False)
        cum = np.cumsum(tr.distortion)
        R_agg.append([cum[n - 1] - ref.aggregate_optimum(batches[:n], eps=EPS).distortion.sum()
                      for n in grid])
        R_pool.append([cum[n - 1] - ref.pooled_projection(batches[:n], eps=EPS).distortion.sum()
                       for n in grid])
        W.append(tr.weighted_gap()[grid - 1])
    return np.array(R_agg), np.array(R_pool), np.array(W)


@register(Claim(
    id="O4", paper="A", provenance="reconstructed",
    statement="distortion regret R_T = sum_t ||y_t - z_t||^2 - min sum_t ||y_t - z_t||^2 over decisions "
              "whose aggregate constraint (1/N_T) sum_t b_t G_t(y_t) <= eps holds is O(sqrt T) (standard "
              "for online convex optimisation with long-term constraints; the paper states no regret "
              "theorem -- the design of the suite asks for it). Fitted exponent of the mean regret over "
              "seeds after a burn-in of 100 batches; figure = lower end of its CI (<= 1/2). The regret "
              "against the pooled projection (one exact projection of all predictions) is reported "
              "alongside",
    tolerance="statistical: 95% bootstrap CI over seeds (verify.harness.fit_loglog); comparators exact "
              "(aggregate optimum: regula falsi on the multiplier to |h| <= 1e-12 (1 + eps) N_T; pooled: "
              "reference.solve, KKT-certified to 1e-12); regret values >= 1 on the fitted range, "
              "round-off ~ N_T u. Power (measured, 3 seeds): the correct algorithm's regret grows like "
              "T^0.2-0.3 on [100, 1e4], so a linear-regret variant is caught only once its linear term "
              "dominates: a dual step aimed at 0.9 eps (0.062 per batch) fits 0.52 CI [0.44, 0.63] at "
              "T = 3000 (quick: PASS, not caught) and 0.61 CI [0.56, 0.70] at T = 2e4 (full: FAIL, "
              "caught); hard-per-batch (0.32 per batch, slope 0.96) is caught at both",
    faults=("hard-per-batch",)))
def check_o4(ctx: Context) -> list[CheckResult]:
    T = int(ctx.options.get("T", 20_000 if ctx.full else 3_000))
    seeds = range(ctx.seed, ctx.seed + (8 if ctx.full else 3))
    grid = np.unique(np.geomspace(10, T, 14 if ctx.full else 10).astype(int))
    R_agg, R_pool, W = regret_curves(T, seeds, grid, ctx.fault)
    burn_in = 100
    pool_fit = fit_loglog(grid.astype(float), np.maximum(R_pool, 1e-300), burn_in=burn_in, seeds_axis=0)
    extra = dict(T=T, seeds=list(seeds), grid=grid.tolist(), eps=EPS, eta0=ETA0,
                 regret_aggregate_mean=R_agg.mean(0).tolist(), regret_pooled_mean=R_pool.mean(0).tolist(),
                 pooled_slope=pool_fit.slope, pooled_ci=list(pool_fit.ci),
                 weighted_gap_minus_eps=(W.mean(0) - EPS).tolist())
    res, fit = _fit_case("O4-aggregate", grid.astype(float), R_agg, 0.5, burn_in,
                         "regret vs the aggregate-constraint optimum", extra)
    res.detail += (f"; vs the pooled projection: slope {pool_fit.slope:.2f} CI [{pool_fit.ci[0]:.2f}, "
                   f"{pool_fit.ci[1]:.2f}] (linear: per-batch penalties cannot average across batches)")
    res.evidence["series"] = {"regret_loglog": {
        "x": grid.tolist(), "xlabel": "T (batches)", "ylabel": "regret", "scale": "loglog",
        "y": {"vs aggregate optimum": np.maximum(R_agg.mean(0), 1e-12).tolist(),
              f"fit T^{fit.slope:.2f}": np.exp(fit.intercept + fit.slope * np.log(grid)).tolist(),
              "vs pooled projection": np.maximum(R_pool.mean(0), 1e-12).tolist()}}}
    return [res]


REGISTRY["O4"].slow = True


# ------------------------------------------------------------------------------------------------ O6

O6_SIZES = (1024, 256, 64, 16, 4, 2)
O6_RATE = -0.5      # relative excess over the aggregate optimum: O(sqrt n) / Theta(n) (see check_o6)
O6_ALLOW = 1e-9     # relative allowance of the exact inequalities 0 <= E_n <= B_n (see the tolerance)


def _constant_step_update(eta0: float):
    """Planted fault of O6: the dual step ignores the schedule (eta_t = eta_0 at every t)."""
    return lambda lam, eta, b, g, eps: max(0.0, lam + eta0 * b * (g - eps))


def cost_by_batch_size(N: int, sizes, seed: int, fault: str | None) -> dict:
    """Per-sample distortion (1/N) sum ||y - z||^2 of: the hard layer on every batch, Algorithm 1 (no b_tau
    switch), the aggregate-constraint optimum and the pooled projection, on a stationary stream of N
    samples cut into batches of size b, for each b in ``sizes``; plus Algorithm 1's weighted and pooled
    gaps. The planted fault "per-batch-normalisation" divides by the number of batches instead of samples."""
    out = {k: [] for k in ("hard", "primal_dual", "pooled", "aggregate", "pd_pooled_gap", "pd_weighted_gap")}
    for b in sizes:
        batches = make_stream(N // b, batch_size=b, seed=seed, noise=NOISE).batches
        norm = len(batches) if fault == "per-batch-normalisation" else N
        pd = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=None)
        out["hard"].append(ref.hard_per_batch(batches, eps=EPS).distortion.sum() / norm)
        out["primal_dual"].append(pd.distortion.sum() / norm)
        out["pooled"].append(ref.pooled_projection(batches, eps=EPS).distortion.sum() / norm)
        out["aggregate"].append(ref.aggregate_optimum(batches, eps=EPS).distortion.sum() / norm)
        out["pd_pooled_gap"].append(ref.pooled_gap(pd.y, batches))
        out["pd_weighted_gap"].append(float(pd.weighted_gap()[-1]))
    return {k: np.array(v) for k, v in out.items()}


def lagrangian_excess(batches, grid, fault: str | None) -> dict:
    r"""Algorithm 1 (no b_tau switch) against the aggregate optimum of the first n batches, n in ``grid``.

    With lambda* and y*_t the aggregate optimum of batches 1..n (``reference.online.aggregate_optimum``),
    g*_t = G_t(y*_t), D*_n = sum ||y*_t - z_t||^2 and v_t = b_t (g_t - eps):

        E_n = sum_{t<=n} ||y_t - z_t||^2 - D*_n + lambda* sum_{t<=n} b_t (g_t - g*_t)        (>= 0)
        B_n = sum_t [(lambda_t - lambda*)^2 - (lambda_{t+1} - lambda*)^2] / (2 eta_t)
              + sum_t eta_t v_t^2 / 2 + sum_t (lambda_t - lambda*) b_t (g*_t - eps)           (>= E_n)

    E_n >= 0 because y*_t minimises ||y - z_t||^2 + lambda* b_t G_t(y) (the aggregate optimum's KKT form);
    E_n <= B_n because y_t minimises the same at lambda_t (so D_n - D*_n <= sum lambda_t b_t (g*_t - g_t))
    and the projected dual step gives -(lambda_t - lambda*) v_t <= [(lambda_t - lambda*)^2 -
    (lambda_{t+1} - lambda*)^2] / (2 eta_t) + eta_t v_t^2 / 2. Returns rho = E_n / D*_n and the excesses
    (E_n - B_n) / D*_n and -E_n / D*_n (both <= 0 exactly), (len(grid),) each."""
    update = _constant_step_update(ETA0) if fault == "constant-step" else ref.dual_update
    tr = ref.run_online(batches, eps=EPS, eta0=ETA0, b_tau=None, update=update, keep_y=False)
    rho, above_b, below_0, lam_star = [], [], [], []
    for n in grid:
        agg = ref.aggregate_optimum(batches[:n], eps=EPS)
        gs = np.array([ref.batch_gap(y, bt.groups) for y, bt in zip(agg.y, batches[:n], strict=True)])
        b, g, eta, lam, ls = tr.b[:n], tr.g[:n], tr.eta[:n], tr.lam[:n + 1], agg.lam
        D = float(agg.distortion.sum())
        E = float(tr.distortion[:n].sum()) - D + ls * float(b @ (g - gs))
        v = b * (g - EPS)
        B = (np.sum(((lam[:-1] - ls) ** 2 - (lam[1:] - ls) ** 2) / (2 * eta)) + np.sum(eta * v ** 2) / 2
             + np.sum((lam[:-1] - ls) * b * (gs - EPS)))
        rho.append(E / D)
        above_b.append((E - B) / D)
        below_0.append(-E / D)
        lam_star.append(ls)
    return dict(rho=np.array(rho), above_b=np.array(above_b), below_0=np.array(below_0),
                lam_star=np.array(lam_star), pd_cost=float(tr.distortion.sum()))


@register(Claim(
    id="O6", paper="A", provenance="stated",
    statement="per-batch constraints are overly restrictive for small batches, while Algorithm 1's cost "
              "approaches the offline optimum -- the aggregate-constraint optimum min sum_t ||y_t - z_t||^2 "
              "s.t. (1/N_T) sum_t b_t G_t(y_t) <= eps (the constraint Algorithm 1 guarantees, O1, and O4's "
              "comparator). (a) hard-grows: the hard per-batch layer's excess distortion over that optimum "
              "grows as the batch shrinks (b = 1024 -> 2, N samples fixed): log-log slope vs b, CI upper end "
              "< 0. (b) pd-approaches: at the smallest b (2), Algorithm 1's relative Lagrangian excess "
              "rho_n = E_n / D*_n over the optimum of the first n batches shrinks at the rate O4's O(sqrt n) "
              "regret implies, n^-1/2 (figure = CI lower end of the fitted exponent, <= -1/2: consistent "
              "with the rate or better), and 0 <= E_n <= B_n (the saddle-point bound, exact) holds at every "
              "horizon. The pooled-projection optimum (a different constraint, which Algorithm 1 does not "
              "guarantee: O5) and PD's distance to it are reported as information. b = 1 is degenerate (no "
              "group pair in a batch: nothing is corrected) and reported in the evidence",
    tolerance="(a), (b) slopes: statistical, 95% bootstrap CI over seeds (verify.harness.fit_loglog); costs "
              "paired (same data for every method) and exact (reference solvers). The rate: E_n <= B_n (see "
              "lagrangian_excess), whose terms are O(sqrt n) for bounded lambda (O2) and v (Abel summation "
              "with 1/eta_n = sqrt(n)/eta_0, sum eta_t <= 2 eta_0 sqrt n) and a centred sum "
              "(sum_t b_t (g*_t - eps) = 0 when lambda* > 0), while D*_n grows like n: rho_n = O(n^-1/2). "
              "0 <= E_n <= B_n: "
              "allowance 1e-9 D*_n (the steps are exact to round-off, <= b u ||z||^2 each, and the sums add "
              "<= n u sum|terms|: ~1e-12 relative at n <= 2^13; E_n/D*_n >= 1e-4 on the fitted range)",
    faults=("per-batch-normalisation", "constant-step")))
def check_o6(ctx: Context) -> list[CheckResult]:
    N = int(ctx.options.get("N", 2 ** 14 if ctx.full else 2 ** 12))
    seeds = range(ctx.seed, ctx.seed + (4 if ctx.full else 2))
    sizes = [b for b in O6_SIZES if b <= N // 2]
    runs = [cost_by_batch_size(N, sizes, seed, ctx.fault) for seed in ctx.iterate(seeds, "O6 seeds")]
    mean = {k: np.mean([r[k] for r in runs], axis=0) for k in runs[0]}
    b_inc = np.array(sizes[::-1], dtype=np.float64)                 # increasing batch sizes for the fit
    excess = np.array([(r["hard"] - r["aggregate"])[::-1] for r in runs])
    fit = fit_loglog(b_inc, excess, seeds_axis=0, seed=0)
    # b = 1: one sample per batch, no group pair
    single = singletons(make_stream(N // 2, batch_size=2, seed=ctx.seed, noise=NOISE))
    pd1 = ref.run_online(single, eps=EPS, eta0=ETA0, b_tau=None)
    ev = dict(N=N, seeds=list(seeds), sizes=sizes, eps=EPS, eta0=ETA0, fit_slope=fit.slope,
              fit_ci=list(fit.ci), **{f"{k}_mean": v.tolist() for k, v in mean.items()},
              hard_excess_over_aggregate_mean=excess.mean(0)[::-1].tolist(),
              b1=dict(primal_dual_cost=float(pd1.distortion.sum() / N),
                      pooled_gap=ref.pooled_gap(pd1.y, single)))
    ev["series"] = {"cost_vs_batch_size": {
        "x": sizes, "xlabel": "batch size b", "ylabel": "distortion per sample", "scale": "semilogx",
        "y": {"hard per-batch": mean["hard"].tolist(), "primal-dual": mean["primal_dual"].tolist(),
              "aggregate optimum": mean["aggregate"].tolist(), "pooled optimum": mean["pooled"].tolist()}}}
    results = [CheckResult.compare(
        "O6-hard-grows", fit.ci[1], 0.0, "<=", evidence=ev,
        detail=f"hard layer's excess over the aggregate optimum ~ b^{fit.slope:.2f} (CI [{fit.ci[0]:.2f}, "
               f"{fit.ci[1]:.2f}]): {excess.mean(0)[-1]:.4f} per sample at b = {sizes[0]} -> "
               f"{excess.mean(0)[0]:.4f} at b = {sizes[-1]} (hard {mean['hard'][-1]:.3f}, aggregate optimum "
               f"{mean['aggregate'][-1]:.3f})")]

    # (b) Algorithm 1 against the aggregate optimum of its first n batches, at the smallest b
    b_min, T = sizes[-1], N // sizes[-1]
    grid = np.unique(np.geomspace(32, T, 10 if ctx.full else 8).astype(int))
    lag = [lagrangian_excess(make_stream(T, batch_size=b_min, seed=seed, noise=NOISE).batches, grid,
                             ctx.fault) for seed in seeds]
    rho = np.array([r["rho"] for r in lag])
    exact = max(float(np.max(r[k])) for r in lag for k in ("above_b", "below_0"))
    rfit = fit_loglog(grid.astype(float), np.maximum(rho, 1e-300), seeds_axis=0, seed=0)
    pooled_excess = float((mean["primal_dual"][-1] - mean["pooled"][-1]) / mean["pooled"][-1])
    removed = float((mean["hard"][-1] - mean["primal_dual"][-1]) / (mean["hard"][-1] - mean["pooled"][-1]))
    ev_b = dict(b=b_min, T=T, grid=grid.tolist(), seeds=list(seeds), claimed=O6_RATE, slope=rfit.slope,
                ci=list(rfit.ci), rho_mean=rho.mean(0).tolist(), max_exact_excess=exact,
                allowance=O6_ALLOW,
                lambda_star=[r["lam_star"][-1] for r in lag],
                pooled_relative_excess=pooled_excess, pooled_fraction_of_hard_excess_removed=removed,
                pd_weighted_gap=float(mean["pd_weighted_gap"][-1]),
                pd_pooled_gap=float(mean["pd_pooled_gap"][-1]),
                series={"lagrangian_excess_loglog": {
                    "x": grid.tolist(), "xlabel": f"n (batches of {b_min})", "ylabel": "E_n / D*_n",
                    "scale": "loglog",
                    "y": {"relative excess (mean over seeds)": rho.mean(0).tolist(),
                          f"fit n^{rfit.slope:.2f}":
                              np.exp(rfit.intercept + rfit.slope * np.log(grid)).tolist()}}})
    res = CheckResult.compare(
        "O6-pd-approaches", rfit.ci[0], O6_RATE, "<=", evidence=ev_b,
        detail=f"b = {b_min}: PD's relative Lagrangian excess over the aggregate optimum "
               f"{rho.mean(0)[0]:.3g} at n = {grid[0]} -> {rho.mean(0)[-1]:.3g} at n = {T} ~ "
               f"n^{rfit.slope:.2f} (CI [{rfit.ci[0]:.2f}, {rfit.ci[1]:.2f}]) vs claimed {O6_RATE:+.1f} (or "
               f"better); 0 <= E_n <= B_n: max excess {exact:.2g} (allowance {O6_ALLOW:g}); per sample PD "
               f"{mean['primal_dual'][-1]:.4f}, aggregate optimum {mean['aggregate'][-1]:.4f}, hard "
               f"{mean['hard'][-1]:.4f}. Information: "
               f"pooled optimum {mean['pooled'][-1]:.4f} (PD {100 * pooled_excess:.0f}% above it, removing "
               f"{100 * removed:.1f}% of the hard layer's excess over it: a different constraint, see O5)")
    if exact > O6_ALLOW:
        res.verdict = Verdict.FAIL
        res.detail += " (the exact bound 0 <= E_n <= B_n failed)"
    results.append(res)
    return results


REGISTRY["O6"].slow = True


# ~17 s quick (and as much for its fault): tests/test_online.py runs it at T = 4000 instead
REGISTRY["O3"].slow = True
