"""Data: the authors' 32 synthetic regression data sets, stratified batches, streams for the online checks.

Synthetic data (EXPERIMENTS.md; FairDL-ICML-2026 ``synthetic_experiments/data_generation.py``,
``synthetic_experiments.py``). Data set i (0..31) is the i-th element of the product of
:data:`DATASET_FACTORS`, last factor fastest. With s = 2i (the authors add the index to a random state
equal to the index):

1. A ~ Bernoulli(p), p = P(A=1) in {0.2, 0.5}, drawn from RandomState(s).
2. RandomState(s) again: 7 blocks of 21 equicorrelated N(0, 1) features (rho = 0.3, via the Cholesky
   factor L: block = N @ L^T) and 3 iid N(0, 1) columns 147..149. The authors redraw the 3 iid columns
   inside the block loop (7 draws, the last one kept); we do the same so that the random stream matches.
3. Same stream: 25 distinct columns (``choice(150, 25, replace=False)``) each get
   + sig * (2A - 1) * N(0, 0.5^2), sig = 0.3 (low-medium) or 0.7 (high) -- zero-mean noise, which does not
   actually correlate the feature with A.
4. Standardise every column (population std, as sklearn's StandardScaler).
5. RandomState(s + 1): linear score x^T beta with 10 nonzero N(0, 1) coefficients. Nonlinear:
   0.7 linear + 0.2 sum_{15 cols} c_k x_k^2 + 0.1 sum_{7 pairs} c x_i x_j, c ~ N(0, 0.4^2), drawn after the
   linear coefficients from the same RandomState(s + 1) (the authors' seed s + 2 is overwritten by the
   linear target's re-seeding before any draw, so it has no effect).
6. y = score + group bias (-B for A = 0, +B for A = 1, B = 3 or 6) + N(0, sigma^2) (same stream);
   z-score y over all samples (population std); multiply the group-0 targets by 0.85.
7. X = [A, features] (151 columns, A first). Split as sklearn's ``train_test_split(test_size=0.4,
   random_state=1)``: RandomState(1).permutation(n), the first ceil(0.4 n) indices are the held-out part,
   the rest training; the first 10,000 held-out indices are validation, the rest (6,000) test. With
   n < 40,000 the validation size is scaled to round(10,000 n / 40,000).

We use numpy's legacy ``RandomState`` (the authors call ``np.random.seed``/``np.random.*``, i.e. the
global legacy generator, whose streams RandomState reproduces draw for draw). Arrays are float64; the
authors cast X and y to float32 for training. Standardising with numpy instead of sklearn may differ in
the last bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers

import numpy as np

from reference.constraints import check_bounds

DATASET_FACTORS: dict[str, tuple[str, ...]] = {
    "group_split": ("low", "balanced"),           # P(A=1) = 0.2 / 0.5
    "predictive_power": ("low-medium", "high"),   # feature noise 0.3 / 0.7, group bias 3 / 6
    "noise_level": ("medium", "high"),            # sigma = 0.125 / 0.6
    "constraint_tightness": ("loose", "tight"),   # box [-3.5, 3.5] / [0, 3.5]
    "data_type": ("linear", "nonlinear"),
}
N_DATASETS = 32
N_FEATURES = 150
N_SAMPLES = 40_000
VAL_SIZE = 10_000        # authors' validation size at n = 40,000
TEST_FRACTION = 0.4
SPLIT_SEED = 1
GROUP0_SCALE = 0.85

_P_GROUP1 = {"low": 0.2, "balanced": 0.5}
_SIGNAL = {"low-medium": 0.3, "high": 0.7}
_BIAS = {"low-medium": 3.0, "high": 6.0}
_NOISE = {"medium": 0.125, "high": 0.6}
_BOUNDS = {"loose": (-3.5, 3.5), "tight": (0.0, 3.5)}


def _check_index(index) -> int:
    if not isinstance(index, numbers.Integral) or isinstance(index, bool) or not 0 <= index < N_DATASETS:
        raise ValueError(f"data set index must be an integer in 0..{N_DATASETS - 1}, got {index!r}")
    return int(index)


def dataset_config(index: int) -> dict:
    """The 5 factor levels of data set ``index`` (product order, last factor fastest) and their numbers."""
    index = _check_index(index)
    levels = list(itertools.product(*DATASET_FACTORS.values()))[index]
    cfg = dict(zip(DATASET_FACTORS, levels, strict=True))
    cfg.update(
        p_group1=_P_GROUP1[cfg["group_split"]],
        feature_signal=_SIGNAL[cfg["predictive_power"]],
        group_bias=_BIAS[cfg["predictive_power"]],
        noise_std=_NOISE[cfg["noise_level"]],
        bounds=_BOUNDS[cfg["constraint_tightness"]],
        name=f"dataset_{index + 1:02d}_" + "_".join(levels),
    )
    return cfg


@dataclasses.dataclass
class SyntheticDataset:
    """One synthetic data set. X: (n, 151) with column 0 = A; A: (n,) int 0/1; y: (n,) targets;
    bounds: (lb, ub) of the layer's box; config: :func:`dataset_config`; train/val/test: row indices."""

    index: int
    seed: int
    X: np.ndarray
    A: np.ndarray
    y: np.ndarray
    bounds: tuple[float, float]
    config: dict
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def name(self) -> str:
        return self.config["name"]


def _base_features(rs: np.random.RandomState, n: int) -> np.ndarray:
    """7 blocks of 21 equicorrelated (rho = 0.3) N(0, 1) columns + 3 iid ones, in the authors' draw order."""
    n_blocks = N_FEATURES // 20                  # 7
    size = N_FEATURES // n_blocks                # 21
    corr = np.full((size, size), 0.3)
    np.fill_diagonal(corr, 1.0)
    L = np.linalg.cholesky(corr)
    X = np.zeros((n, N_FEATURES))
    rest = n_blocks * size                       # 147
    for i in range(n_blocks):
        X[:, i * size:(i + 1) * size] = rs.normal(0, 1, (n, size)) @ L.T
        X[:, rest:] = rs.normal(0, 1, (n, N_FEATURES - rest))   # redrawn every block, as the authors do
    return X


def _linear_score(X: np.ndarray, seed: int) -> tuple[np.ndarray, np.random.RandomState]:
    """x^T beta, 10 nonzero N(0, 1) coefficients from RandomState(seed); returns also the stream."""
    rs = np.random.RandomState(seed)
    idx = rs.choice(N_FEATURES, min(10, N_FEATURES // 10), replace=False)
    beta = np.zeros(N_FEATURES)
    beta[idx] = rs.normal(0, 1.0, idx.size)
    return X @ beta, rs


def _split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """train/val/test indices: sklearn train_test_split(test_size=0.4, random_state=1), then val first."""
    n_test = math.ceil(TEST_FRACTION * n)
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    held, train = perm[:n_test], perm[n_test:]
    val_size = VAL_SIZE if n >= N_SAMPLES else round(VAL_SIZE * n / N_SAMPLES)
    return train, held[:val_size], held[val_size:]


def synthetic_dataset(index: int, n: int = N_SAMPLES, seed: int | None = None) -> SyntheticDataset:
    """The authors' synthetic data set ``index`` (0..31) with ``n`` samples; see the module docstring.

    seed=None uses the authors' seed 2 * index (targets: seed + 1); a given seed replaces 2 * index.
    """
    cfg = dataset_config(index)
    if not isinstance(n, numbers.Integral) or n < 20:
        raise ValueError(f"n must be an integer >= 20, got {n!r}")
    n = int(n)
    s = 2 * index if seed is None else int(seed)
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {s}")

    A = np.random.RandomState(s).binomial(1, cfg["p_group1"], size=n)
    rs = np.random.RandomState(s)
    F = _base_features(rs, n)
    for j in rs.choice(N_FEATURES, min(50, N_FEATURES // 6), replace=False):
        F[:, j] += cfg["feature_signal"] * (2 * A - 1) * rs.normal(0, 0.5, n)
    F = (F - F.mean(axis=0)) / F.std(axis=0)

    score, rs = _linear_score(F, s + 1)
    if cfg["data_type"] == "nonlinear":
        poly_idx = rs.choice(N_FEATURES, min(15, N_FEATURES // 10), replace=False)
        poly = np.sum(F[:, poly_idx] ** 2 * rs.normal(0, 0.4, poly_idx.size), axis=1)
        inter = np.zeros(n)
        for _ in range(min(10, N_FEATURES // 20)):
            i, j = rs.choice(N_FEATURES, 2, replace=False)
            inter += rs.normal(0, 0.4) * F[:, i] * F[:, j]
        score = 0.7 * score + 0.2 * poly + 0.1 * inter

    y = score + np.where(A == 0, -cfg["group_bias"], cfg["group_bias"]) + rs.normal(0, cfg["noise_std"], n)
    y = (y - y.mean()) / y.std()
    y[A == 0] *= GROUP0_SCALE

    X = np.concatenate([A[:, None].astype(np.float64), F], axis=1)
    train, val, test = _split(n)
    return SyntheticDataset(index=index, seed=s, X=X, A=A.astype(np.int64), y=y, bounds=cfg["bounds"],
                            config=cfg, train=train, val=val, test=test)


# --------------------------------------------------------------------------------------- stratified batches

def _as_rng(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def stratified_batches(A, b: int, ratio: float | None = None, rng=None) -> list[np.ndarray]:
    """Batches of size b with constant group counts n0 = round(b * ratio) (A = 0), b - n0 (A = 1).

    A: (n,) 0/1 labels; ratio: the group-0 share, None = the data's own share n_0 / n (the authors'
    ``create_deterministic_stratified_batches``; Python's round, as theirs). Each group is shuffled,
    cut into consecutive chunks, and each batch is shuffled; batching stops when a group runs out.
    Shuffles use ``rng`` (the authors use torch.randperm, so batches match theirs in law, not draw for
    draw). Returns a list of index arrays (b,).
    """
    A = np.asarray(A)
    if A.ndim != 1 or A.size == 0 or not np.all((A == 0) | (A == 1)):
        raise ValueError(f"A must be a non-empty 1-D array of 0/1 labels, got shape {A.shape}")
    if not isinstance(b, numbers.Integral) or b < 2:
        raise ValueError(f"batch size b must be an integer >= 2, got {b!r}")
    idx0, idx1 = np.flatnonzero(A == 0), np.flatnonzero(A == 1)
    if ratio is None:
        ratio = idx0.size / A.size
    ratio = float(ratio)
    if not 0 < ratio < 1:
        raise ValueError(f"ratio (group-0 share) must lie in (0, 1), got {ratio}")
    n0 = round(b * ratio)
    n1 = b - n0
    if n0 < 1 or n1 < 1:
        raise ValueError(f"batch size {b} with group-0 share {ratio:.3g} gives {n0} / {n1} members: "
                         "a group would be empty in every batch")
    n_batches = min(idx0.size // n0, idx1.size // n1)
    if n_batches == 0:
        raise ValueError(f"not enough samples for one batch: {idx0.size} in group 0 (need {n0}), "
                         f"{idx1.size} in group 1 (need {n1})")
    rng = _as_rng(rng)
    idx0, idx1 = rng.permutation(idx0), rng.permutation(idx1)
    return [rng.permutation(np.concatenate([idx0[k * n0:(k + 1) * n0], idx1[k * n1:(k + 1) * n1]]))
            for k in range(n_batches)]


# -------------------------------------------------------------------------------------------------- streams

BIASES = ("stationary", "drifting", "switching")
_DEFAULT_PERIOD = {"stationary": 1, "drifting": 50, "switching": 50}


@dataclasses.dataclass
class StreamBatch:
    """One batch: z (b,) raw predictions, groups (b, k) 0/1 labels, targets (b,) true values."""

    z: np.ndarray
    groups: np.ndarray
    targets: np.ndarray


@dataclasses.dataclass
class Stream:
    """T batches of a prediction stream; offsets: (T,) group offset delta_t of each batch."""

    batches: list[StreamBatch]
    offsets: np.ndarray
    bounds: tuple[float, float] | None
    config: dict

    @property
    def T(self) -> int:
        return len(self.batches)

    @property
    def sizes(self) -> np.ndarray:
        """b_t, shape (T,)."""
        return np.array([bt.z.size for bt in self.batches], dtype=np.int64)

    @property
    def N(self) -> np.ndarray:
        """Cumulative sample counts N_t = sum_{s <= t} b_s, shape (T,)."""
        return np.cumsum(self.sizes)

    @property
    def N_T(self) -> int:
        return int(self.sizes.sum())


def stream_offsets(T: int, bias: str, offset: float, period: int) -> np.ndarray:
    """delta_t for t = 1..T. stationary: offset. drifting: offset (1 + t/period + sin(2 pi t/period)/2),
    a linearly growing, oscillating raw gap. switching: offset / 0, on and off every ``period`` batches, so
    the multiplier the step needs jumps between two levels (adversarial for the dual variable; a sign flip
    would not do: the dp gap |a^T y - c| is symmetric, so +-offset is the stationary stream)."""
    t = np.arange(1, T + 1, dtype=np.float64)
    if bias == "stationary":
        return np.full(T, float(offset))
    if bias == "drifting":
        return offset * (1 + t / period + 0.5 * np.sin(2 * np.pi * t / period))
    if bias == "switching":
        return offset * np.where(((t - 1) // period) % 2 == 0, 1.0, 0.0)
    raise ValueError(f"bias must be one of {BIASES}, got {bias!r}")


def make_stream(T: int, *, batch_size=16, group_ratio=0.5, bias: str = "stationary", n_attributes: int = 1,
                seed: int = 0, bounds=None, offset: float = 1.0, noise: float = 0.1,
                period: int | None = None) -> Stream:
    """A stream of T batches (z_t, groups_t, targets_t) for the online checks.

    Per batch t, in this draw order (so a shorter stream is a prefix of a longer one with the same seed):
    b_t = batch_size, or uniform on {lo..hi} for batch_size = (lo, hi); for each attribute j, the group-0
    share r (group_ratio, or uniform on [0.1, 0.9] when "varying"), n0 = round(b_t r) clipped to
    [1, b_t - 1] so both groups are present, labels randomly placed; targets ~ N(0, 1), clipped to the
    box when one is given (keeps mr feasible); z = targets + noise * N(0, 1) + delta_t sum_j (1/2 - A_j),
    so group 0 sits delta_t above group 1 on every attribute (raw DP gap ~ delta_t, see
    :func:`stream_offsets`). With a constant ratio and batch size the group counts are constant.
    """
    if not isinstance(T, numbers.Integral) or T < 1:
        raise ValueError(f"T must be an integer >= 1, got {T!r}")
    if isinstance(batch_size, numbers.Integral):
        lo = hi = int(batch_size)
    else:
        try:
            lo, hi = (int(v) for v in batch_size)
        except (TypeError, ValueError):
            raise ValueError(f"batch_size must be an int or a pair (lo, hi), got {batch_size!r}") from None
    if not 2 <= lo <= hi:
        raise ValueError(f"batch sizes need 2 <= lo <= hi, got {batch_size!r}")
    if group_ratio != "varying":
        try:
            group_ratio = float(group_ratio)
        except (TypeError, ValueError):
            raise ValueError("group_ratio must be a share in (0, 1) or 'varying', "
                             f"got {group_ratio!r}") from None
        if not 0 < group_ratio < 1:
            raise ValueError(f"group_ratio must lie in (0, 1), got {group_ratio}")
    if bias not in BIASES:
        raise ValueError(f"bias must be one of {BIASES}, got {bias!r}")
    if not isinstance(n_attributes, numbers.Integral) or n_attributes < 1:
        raise ValueError(f"n_attributes must be an integer >= 1, got {n_attributes!r}")
    period = _DEFAULT_PERIOD[bias] if period is None else int(period)
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if not np.isfinite(offset) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"offset must be finite and noise >= 0, got offset={offset}, noise={noise}")
    bounds = check_bounds(bounds)

    rng = np.random.default_rng(seed)
    offsets = stream_offsets(T, bias, offset, period)
    batches = []
    for t in range(T):
        b = lo if lo == hi else int(rng.integers(lo, hi + 1))
        groups = np.empty((b, n_attributes), dtype=np.int64)
        for j in range(n_attributes):
            r = rng.uniform(0.1, 0.9) if group_ratio == "varying" else group_ratio
            n0 = min(max(round(b * r), 1), b - 1)
            groups[:, j] = rng.permutation(np.r_[np.zeros(n0, np.int64), np.ones(b - n0, np.int64)])
        targets = rng.normal(size=b)
        if bounds is not None:
            targets = np.clip(targets, *bounds)
        z = targets + noise * rng.normal(size=b) + offsets[t] * (0.5 - groups).sum(axis=1)
        batches.append(StreamBatch(z=z, groups=groups, targets=targets))
    config = dict(T=T, batch_size=batch_size, group_ratio=group_ratio, bias=bias, n_attributes=n_attributes,
                  seed=seed, offset=offset, noise=noise, period=period)
    return Stream(batches=batches, offsets=offsets, bounds=bounds, config=config)


@dataclasses.dataclass
class StreamArrays:
    """Padded arrays of a stream: z, targets (T, b_max); groups (T, b_max, k); mask (T, b_max) True on
    real samples (padding is 0); sizes (T,)."""

    z: np.ndarray
    groups: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    sizes: np.ndarray


def stream_arrays(stream: Stream) -> StreamArrays:
    """Pad the batches of ``stream`` to the largest batch size, for vectorised consumers."""
    sizes = stream.sizes
    T, b_max, k = stream.T, int(sizes.max()), stream.batches[0].groups.shape[1]
    z, targets = np.zeros((T, b_max)), np.zeros((T, b_max))
    groups = np.zeros((T, b_max, k), dtype=np.int64)
    mask = np.arange(b_max)[None, :] < sizes[:, None]
    for t, bt in enumerate(stream.batches):
        n = bt.z.size
        z[t, :n], targets[t, :n], groups[t, :n] = bt.z, bt.targets, bt.groups
    return StreamArrays(z=z, groups=groups, targets=targets, mask=mask, sizes=sizes)
