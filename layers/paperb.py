"""Paper B (Chen, Wang, Kolar 2020), as reconstructed in CLAIMS.md (N1-N4), in torch.

Network (NTK scaling), S seeds batched:

    f(x; W) = (1/sqrt(m)) sum_r b_r relu(W_r^T x),   b_r in {+-1} fixed,  W(0)_r ~ N(0, I/d),  ||x|| = 1.

Shapes: W, W0 (S, m, d); b (S, m); X (S, n, d); f (S, n); an activation pattern ``mask`` (S, m, n).
Writing f(x; W) = (1/sqrt(m)) sum_r b_r 1[pattern_r(x)] W_r^T x, the true network uses the current
pattern 1[W_r^T x > 0] and the linearisation at W(0), f_lin(x; W) = f(x; W0) + <grad f(x; W0), W - W0>,
uses the frozen pattern 1[W0_r^T x > 0]: both share :func:`forward` and :func:`grad_f`.
||grad_W f(x; W)||_F^2 = (1/m) #{active r} ||x||^2 <= 1, so every loss below has a known gradient bound.

* :func:`ogd` - projected online gradient descent on logistic losses (N1, N2), eta = R / (G sqrt(T)).
* :func:`best_fixed_lin` / :func:`best_fixed_true` - the comparator min_{||W - W0|| <= R} sum_t l_t(W).
* :func:`fair_game` - the fairness game (N3, N4): exponentiated-gradient multipliers on
  {lam >= 0, ||lam||_1 <= B} against projected gradient steps of the network on the Lagrangian

      L(W, lam) = err(W) + sum_k lam_k (gamma_k(W) - eps),
      err(W)      = mean_i log(1 + exp(-s_i f_i))          (logistic loss, s = 2y - 1),
      gamma_k(W)  = a_k^T sigmoid(f)                       (rows a_k of reference.constraints, both signs).

  sigmoid(f_i) is the probability that the randomised classifier predicts 1 at x_i, so gamma_k is the
  exact rate gap of that classifier; with sigmoid rates L is non-convex in f even for the linearised
  network, so the network player's regret is measured, not guaranteed. The output is the uniform mixture
  of the iterates W_1..W_T (also reported: the last iterate and the averaged weights).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from reference.constraints import build_constraints

DTYPES = {"float64": torch.float64, "float32": torch.float32}


# ----------------------------------------------------------------------------------------- validation
def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _positive_float(name: str, v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return v


def _seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds is empty")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    return tuple(int(s) for s in seeds)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


# ----------------------------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Data:
    """Numpy data of one seed: X (n, d) on the unit sphere, A (n,) and Y (n,) in {0, 1}."""

    X: np.ndarray
    A: np.ndarray
    Y: np.ndarray


def make_data(n: int, d: int, seed: int, *, split: int = 0, p1: float = 0.4, shift: float = 0.8,
              base: float = 0.35, noise: float = 0.25) -> Data:
    """Seeded synthetic data in which demographic parity and equalized odds bind.

    A ~ Bernoulli(p1); g ~ N(shift (2A - 1) e_1, I_d), x = g / ||g|| (the first direction carries A);
    y = 1[u^T x + base (2A - 1) + noise N(0, 1) > 0] with a unit vector u drawn from ``seed`` alone:
    the base rates P(y = 1 | A = a) differ, and so do the true-positive rates of any classifier of x.
    ``split`` (0 = training, 1 = test, ...) draws another sample of the same distribution.
    """
    n, d = _positive_int("n", n), _positive_int("d", d)
    if d < 2:
        raise ValueError(f"d must be >= 2 (the first coordinate carries the attribute), got {d}")
    if not 0 < p1 < 1:
        raise ValueError(f"p1 must lie in (0, 1), got {p1}")
    u = np.random.default_rng([int(seed), 3]).standard_normal(d)
    u /= np.linalg.norm(u)
    rng = np.random.default_rng([int(seed), 2, int(split)])
    A = (rng.random(n) < p1).astype(np.int64)
    g = rng.standard_normal((n, d))
    g[:, 0] += shift * (2 * A - 1)
    X = g / np.linalg.norm(g, axis=1, keepdims=True)
    Y = (X @ u + base * (2 * A - 1) + noise * rng.standard_normal(n) > 0).astype(np.int64)
    return Data(X=X, A=A, Y=Y)


def stack_data(datas: list[Data], device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Stack per-seed data: X (S, n, d), A (S, n), Y (S, n) as torch tensors."""
    X = torch.as_tensor(np.stack([dd.X for dd in datas]), dtype=dtype, device=device)
    A = torch.as_tensor(np.stack([dd.A for dd in datas]), device=device)
    Y = torch.as_tensor(np.stack([dd.Y for dd in datas]), dtype=dtype, device=device)
    return X, A, Y


# -------------------------------------------------------------------------------------------- network
def init_network(m: int, d: int, seeds, *, device: str = "cpu",
                 dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """W0 (S, m, d) with rows ~ N(0, I/d) and signs b (S, m), one numpy stream per (seed, m)."""
    m, d, seeds = _positive_int("m", m), _positive_int("d", d), _seeds(seeds)
    W0, b = [], []
    for s in seeds:
        rng = np.random.default_rng([s, m, 1])
        W0.append(rng.standard_normal((m, d)) / math.sqrt(d))
        b.append(np.where(rng.random(m) < 0.5, -1.0, 1.0))
    return (torch.as_tensor(np.stack(W0), dtype=dtype, device=device),
            torch.as_tensor(np.stack(b), dtype=dtype, device=device))


def pattern(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Activation pattern 1[W_r^T x_i > 0] as 0/1 floats, neuron-major: shape (S, m, n)."""
    return (torch.bmm(W, X.mT) > 0).to(W.dtype)


def forward(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, mask: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(f (S, n), mask (S, m, n)). mask=None: the true network; a frozen mask (pattern at W0): f_lin."""
    pre = torch.bmm(W, X.mT)
    if mask is None:
        mask, act = (pre > 0).to(pre.dtype), torch.relu(pre)
    else:
        act = pre * mask
    return (b.unsqueeze(1) @ act).squeeze(1) / math.sqrt(W.shape[1]), mask


def grad_f(b: torch.Tensor, X: torch.Tensor, mask: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """sum_i coef_i grad_W f(x_i) = (1/sqrt(m)) b_r sum_i coef_i mask_ri x_i, shape (S, m, d)."""
    return torch.bmm(mask, coef.unsqueeze(-1) * X) * b.unsqueeze(-1) / math.sqrt(b.shape[1])


def dist(W: torch.Tensor, W0: torch.Tensor) -> torch.Tensor:
    """||W - W0||_F per seed, shape (S,)."""
    return torch.linalg.vector_norm(W - W0, dim=(1, 2))


def project_ball(W: torch.Tensor, W0: torch.Tensor, R: float) -> torch.Tensor:
    """Euclidean projection onto {||W - W0||_F <= R}, per seed."""
    scale = torch.clamp(R / dist(W, W0).clamp_min(torch.finfo(W.dtype).tiny), max=1.0)
    return W0 + (W - W0) * scale[:, None, None]


def logistic(f: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, dloss/df) of log(1 + exp(-s f)); |dloss/df| <= 1."""
    return F.softplus(-s * f), -s * torch.sigmoid(-s * f)


# ------------------------------------------------------------------------ N1/N2: projected online GD
@dataclasses.dataclass
class OGDResult:
    """Per horizon h and seed: sums over rounds t <= T_h (shape (H, S)) and the final iterate.

    loss: sum_t l_t(W_t); comp: sum_t l_t(W*); lin_regret: sum_t <g_t, W_t - W*>;
    width: sum_t |l'_t| |e_t| with e_t = f_t(W*) - f_t(W_t) - <grad f_t(W_t), W* - W_t> (0 for f_lin);
    gsq: sum_t ||g_t||^2; max_dist: max_t ||W_t - W0||; W_last: (H, S, m, d).
    """

    loss: torch.Tensor
    comp: torch.Tensor
    lin_regret: torch.Tensor
    width: torch.Tensor
    gsq: torch.Tensor
    max_dist: torch.Tensor
    eta: torch.Tensor
    W_last: torch.Tensor


def ogd(X: torch.Tensor, s: torch.Tensor, W0: torch.Tensor, b: torch.Tensor, R: float,
        horizons, W_star: torch.Tensor, *, lin: bool = False, G: float = 1.0, eta_fn=None,
        project: bool = True) -> OGDResult:
    """Projected OGD on the stream l_t(W) = log(1 + exp(-s_t f(x_t; W))), one run per horizon T_h.

    X (S, T, d), s (S, T) in {+-1}; W_star (H, S, m, d) the comparator of each horizon.
    W_1 = W0, W_{t+1} = Proj_R(W_t - eta g_t), eta = eta_fn(T_h) (default R / (G sqrt(T_h)));
    ||g_t|| <= G = 1 since |l'| <= 1 and ||grad f|| <= 1. All horizons run batched: (H * S, m, d).
    lin=True runs the linearised network f_lin. project=False skips the projection (planted fault).
    """
    horizons = tuple(_positive_int("horizon", h) for h in horizons)
    S, T, d = X.shape
    if max(horizons) > T:
        raise ValueError(f"horizon {max(horizons)} exceeds the stream length {T}")
    H, m = len(horizons), W0.shape[1]
    if W_star.shape != (H, S, m, d):
        raise ValueError(f"W_star must have shape {(H, S, m, d)}, got {tuple(W_star.shape)}")
    eta_fn = eta_fn or (lambda T_h: R / (G * math.sqrt(T_h)))
    rep = lambda t: t.repeat(H, *([1] * (t.dim() - 1)))          # (S, ...) -> (H * S, ...)
    Xr, sr, W0r, br = rep(X), rep(s), rep(W0), rep(b)
    Ws = W_star.reshape(H * S, m, d)
    Th = torch.tensor(horizons, device=X.device).repeat_interleave(S)          # (H * S,)
    eta = torch.tensor([eta_fn(h) for h in horizons], dtype=X.dtype, device=X.device).repeat_interleave(S)
    zeros = lambda: torch.zeros(H * S, dtype=X.dtype, device=X.device)
    loss, comp, linreg, width, gsq, maxd = (zeros() for _ in range(6))
    W = W0r.clone()
    for t in range(max(horizons)):
        x = Xr[:, t:t + 1]                                                       # (H*S, 1, d)
        mask0 = pattern(W0r, x) if lin else None
        f, mask = forward(W, br, x, mask0)
        fs, _ = forward(Ws, br, x, mask0)
        l, dl = logistic(f[:, 0], sr[:, t])
        ls, _ = logistic(fs[:, 0], sr[:, t])
        g = grad_f(br, x, mask, dl[:, None])
        # e_t: f(W*) - f(W_t) - <grad f(W_t), W* - W_t>; <grad f(W_t), W> = forward(W, mask of W_t).
        e = fs[:, 0] - forward(Ws, br, x, mask)[0][:, 0]
        on = (t < Th).to(X.dtype)
        loss += on * l
        comp += on * ls
        linreg += on * (g * (W - Ws)).sum(dim=(1, 2))
        width += on * dl.abs() * e.abs()
        gsq += on * (g * g).sum(dim=(1, 2))
        maxd = torch.maximum(maxd, on * dist(W, W0r))
        W = W - (on * eta)[:, None, None] * g
        if project:
            W = project_ball(W, W0r, R)
    shape = lambda v: v.reshape(H, S)
    return OGDResult(loss=shape(loss), comp=shape(comp), lin_regret=shape(linreg), width=shape(width),
                     gsq=shape(gsq), max_dist=shape(maxd), eta=shape(eta), W_last=W.reshape(H, S, m, d))


# ------------------------------------------------------------------------------------- comparators
def _fista_ball(value, grad, x0: torch.Tensor, R: float, L: torch.Tensor, iters: int, tol: float,
                check_every: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Accelerated projected gradient (adaptive restart) for a smooth convex objective on {||x|| <= R}
    over the last dim, batched over seeds: value(x) (S,), grad(x) (S, r), L (S,) gradient Lipschitz
    constants. Stops when every seed's Frank-Wolfe gap <grad, x> + R ||grad|| (an upper bound of
    value(x) - min) is <= tol * (1 + |value|). Returns (x, gap)."""
    proj = lambda v: v * torch.clamp(R / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
                                     .clamp_min(torch.finfo(v.dtype).tiny), max=1.0)

    def fw_gap(x):
        g = grad(x)
        return ((g * x).sum(-1) + R * torch.linalg.vector_norm(g, dim=-1)).clamp_min(0.0)

    x, y, k = x0, x0, torch.ones_like(L)
    val_x = value(x)
    for it in range(iters):
        if it % check_every == 0 and bool(torch.all(fw_gap(x) <= tol * (1 + val_x.abs()))):
            break
        x_new = proj(y - grad(y) / L[:, None])
        val_new = value(x_new)
        restart = val_new > val_x                                    # O'Donoghue-Candes restart
        mom = torch.where(restart, torch.zeros_like(k), (k - 1) / (k + 2))
        k = torch.where(restart, torch.ones_like(k), k + 1)
        x_new = torch.where(restart[:, None], x, x_new)
        val_new = torch.where(restart, val_x, val_new)
        y = x_new + mom[:, None] * (x_new - x)
        x, val_x = x_new, val_new
    return x, fw_gap(x)


@dataclasses.dataclass
class LinComparator:
    """Best fixed W of the linearised network: W (S, m, d), value F(W) (S,), certified gap (S,) with
    F(W) - gap <= min_ball F <= F(W) (Frank-Wolfe gap <grad, beta> + R ||grad||, convexity)."""

    W: torch.Tensor
    value: torch.Tensor
    gap: torch.Tensor


def best_fixed_lin(X: torch.Tensor, s: torch.Tensor, W0: torch.Tensor, b: torch.Tensor, R: float, *,
                   iters: int = 5000, tol: float | None = None, route: str = "auto") -> LinComparator:
    """min_{||W - W0||_F <= R} sum_t log(1 + exp(-s_t f_lin(x_t; W))), X (S, T, d), s (S, T).

    f_lin(x_t; W) = f0_t + <Phi_t, W - W0> with Phi_t = grad f(x_t; W0). Reduction to r = min(T, m d)
    coordinates Fe beta with ||beta|| = ||W - W0||: if T <= m d, an optimal W - W0 lies in span(Phi)
    (representer), K = Phi Phi^T = (X X^T) * (M^T M) / m = U diag(k) U^T, Fe = U diag(sqrt k) and
    W - W0 = sum_t alpha_t Phi_t with alpha = U diag(k^-1/2) beta; otherwise Phi^T Phi = V diag(k) V^T,
    Fe = Phi V and W - W0 = V beta (route "auto" picks the smaller Gram matrix; "gram" / "features"
    force one). Directions with k below round-off do not move f_lin and are dropped. Stops at a relative
    Frank-Wolfe gap ``tol`` (default max(1e-10, 8 T u): the round-off floor of a T-term sum in the dtype).
    """
    if route not in ("auto", "gram", "features"):
        raise ValueError(f"route must be 'auto', 'gram' or 'features', got {route!r}")
    S, T, d = X.shape
    m = W0.shape[1]
    tiny, eps = torch.finfo(X.dtype).tiny, torch.finfo(X.dtype).eps
    f0, M = forward(W0, b, X)
    if route == "gram" or (route == "auto" and T <= m * d):
        K = torch.bmm(X, X.mT) * torch.bmm(M.mT, M) / m
        kappa, U = torch.linalg.eigh(K)
        keep = kappa > kappa[:, -1:] * T * eps                           # numerical rank
        Fe = U * torch.where(keep, kappa, torch.zeros_like(kappa)).sqrt().unsqueeze(1)

        def to_W(beta):
            c = torch.where(keep, beta / kappa.clamp_min(tiny).sqrt(), torch.zeros_like(beta))
            return W0 + grad_f(b, X, M, torch.bmm(U, c.unsqueeze(-1)).squeeze(-1))
    else:
        Phi = ((M.mT * b.unsqueeze(1)).unsqueeze(-1) * X.unsqueeze(2)).reshape(S, T, m * d) / math.sqrt(m)
        kappa, V = torch.linalg.eigh(torch.bmm(Phi.mT, Phi))
        keep = kappa > kappa[:, -1:] * m * d * eps
        V = V * keep.unsqueeze(1)
        Fe = torch.bmm(Phi, V)
        to_W = lambda beta: W0 + torch.bmm(V, beta.unsqueeze(-1)).reshape(S, m, d)
    FeT = Fe.mT.contiguous()                    # row-vector products (S, 1, T) @ (S, T, r) are fastest
    z = lambda beta: f0 + (beta.unsqueeze(1) @ FeT).squeeze(1)
    value = lambda beta: logistic(z(beta), s)[0].sum(-1)
    grad = lambda beta: (logistic(z(beta), s)[1].unsqueeze(1) @ Fe).squeeze(1)
    L = kappa[:, -1] / 4 + tiny                                          # logistic'' <= 1/4
    beta0 = torch.zeros(S, Fe.shape[-1], dtype=X.dtype, device=X.device)
    tol = max(1e-10, 4 * T * eps) if tol is None else tol                # 8 T u = 4 T eps_mach
    beta, gap = _fista_ball(value, grad, beta0, R, L, iters, tol)
    W = project_ball(to_W(beta), W0, R)                                  # projection: round-off only
    value_W = logistic(forward(W, b, X, M)[0], s)[0].sum(-1)
    # the map beta -> W is exact up to round-off; its effect on the value widens the certified gap
    return LinComparator(W=W, value=value_W, gap=gap + (value_W - value(beta)).abs())


def projected_descent(value_grad, W_starts: list[torch.Tensor], W0: torch.Tensor, R: float, iters: int,
                      step0: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best point found by monotone projected gradient descent (Armijo backtracking per seed) from each
    start: (W (S, m, d), value (S,)). value_grad(W) -> (value (S,), grad (S, m, d)). Non-convex objectives:
    a local search whose value is an upper bound of the minimum, nothing more."""
    best_W, best_v = None, None
    for W in W_starts:
        W = project_ball(W, W0, R)
        v, g = value_grad(W)
        step = torch.full_like(v, step0)
        for _ in range(iters):
            W_new = project_ball(W - step[:, None, None] * g, W0, R)
            v_new, g_new = value_grad(W_new)
            ok = v_new <= v - 0.5 * ((W_new - W) ** 2).sum(dim=(1, 2)) / step   # sufficient decrease
            W = torch.where(ok[:, None, None], W_new, W)
            v, g = torch.where(ok, v_new, v), torch.where(ok[:, None, None], g_new, g)
            step = torch.where(ok, step * 1.5, step / 2)
        if best_v is None:
            best_W, best_v = W, v
        else:
            better = v < best_v
            best_W = torch.where(better[:, None, None], W, best_W)
            best_v = torch.where(better, v, best_v)
    return best_W, best_v


def best_fixed_true(X: torch.Tensor, s: torch.Tensor, W0: torch.Tensor, b: torch.Tensor, R: float,
                    W_starts: list[torch.Tensor], *, iters: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Long offline run for min_{||W - W0|| <= R} sum_t l(s_t f(x_t; W)) on the true (non-convex) network:
    (W, value), value an upper bound of the minimum."""

    def value_grad(W):
        f, mask = forward(W, b, X)
        l, dl = logistic(f, s)
        return l.sum(-1), grad_f(b, X, mask, dl)

    # first step 4/T: the Hessian of sum_t l_t is <= (1/4) sum_t grad f_t grad f_t^T <= T/4 (lin. network)
    return projected_descent(value_grad, W_starts, W0, R, iters, step0=4.0 / X.shape[1])


# --------------------------------------------------------------------------- N3/N4: the fairness game
def constraint_rows(A: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
    """Rows a_k (2 k0, n) of gamma_k = a_k^T p <= eps: both signs of reference.constraints' rows."""
    if metric not in ("dp", "eo"):
        raise ValueError(f"metric must be 'dp' or 'eo', got {metric!r}")
    cons = build_constraints(A, metric, eps=0.0, b=len(A), targets=Y if metric == "eo" else None)
    return np.concatenate([cons.A, -cons.A])


def eg_lambda(theta: torch.Tensor, B: float) -> torch.Tensor:
    """lam = B exp(theta) / (1 + sum exp(theta)): exponential weights on the K + 1 vertices
    {B e_1, ..., B e_K, 0} of {lam >= 0, ||lam||_1 <= B} (the last one, the slack, has theta = 0)."""
    z = torch.cat([theta, torch.zeros_like(theta[..., :1])], dim=-1)
    return B * torch.softmax(z, dim=-1)[..., :-1]


@dataclasses.dataclass
class GameResult:
    """Per seed (S,) or per round (T, S, ...). Rates of the mixture are means over rounds.

    L: per-round Lagrangian L(W_t, lam_t) (T, S); r: gamma(W_t) - eps (T, S, K); lam (T, S, K);
    err (T, S); gsq: sum_t ||g_t||^2 (S,); G_sum: sum_t g_t (S, m, d); gW: sum_t <g_t, W_t> (S,);
    p_mix / p_mix_test: mean_t sigmoid(f_t) (S, n); h_mix / h_mix_test: mean_t 1[f_t > 0] (S, n);
    W_last = W_T (the last iterate of the mixture), W_avg = mean_t W_t (S, m, d);
    max_dist: max_t ||W_t - W0|| (S,); eta_w, eta_lam: the step sizes.
    """

    L: torch.Tensor
    r: torch.Tensor
    lam: torch.Tensor
    err: torch.Tensor
    gsq: torch.Tensor
    G_sum: torch.Tensor
    gW: torch.Tensor
    p_mix: torch.Tensor
    h_mix: torch.Tensor
    p_mix_test: torch.Tensor
    h_mix_test: torch.Tensor
    W_last: torch.Tensor
    W_avg: torch.Tensor
    max_dist: torch.Tensor
    eta_w: float
    eta_lam: float


def lagrangian(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, s: torch.Tensor, rows: torch.Tensor,
               eps: float, lam: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(L(W, lam) (S,), grad_W L (S, m, d), err (S,), r = gamma - eps (S, K), f (S, n));
    rows (S, K, n), lam (S, K)."""
    n = X.shape[1]
    f, mask = forward(W, b, X)
    l, dl = logistic(f, s)
    p = torch.sigmoid(f)
    r = torch.bmm(rows, p.unsqueeze(-1)).squeeze(-1) - eps
    err = l.mean(-1)
    coef = dl / n + torch.bmm(lam.unsqueeze(1), rows).squeeze(1) * p * (1 - p)
    return err + (lam * r).sum(-1), grad_f(b, X, mask, coef), err, r, f


def game_gradient_bound(B: float) -> float:
    """G >= ||grad_W L||: ||grad f|| <= 1, |l'| <= 1, |sigmoid'| <= 1/4, ||a_k||_1 = 2, ||lam||_1 <= B."""
    return 1.0 + B / 2.0


def fair_game(X: torch.Tensor, Y: torch.Tensor, rows: torch.Tensor, eps: float, W0: torch.Tensor,
              b: torch.Tensor, R: float, B: float, T: int, *, X_test: torch.Tensor | None = None,
              eg_sign: float = 1.0, eta_w: float | None = None, project: bool = True) -> GameResult:
    """T rounds of the game on the training sample (full-batch gradients: the game is played on the
    empirical Lagrangian exactly). X (S, n, d), Y (S, n), rows (S, K, n).

    Round t: the network plays W_t, the multiplier player lam_t; then
      W_{t+1} = Proj_R(W_t - eta_w grad_W L(W_t, lam_t)),   eta_w = R / (G sqrt(T)), G = 1 + B/2;
      theta_{t+1} = theta_t + eta_lam (gamma(W_t) - eps),   eta_lam = sqrt(2 log(K+1) / T) / rho,
    rho = 1 + eps >= |gamma - eps|. eg_sign=-1 flips the multiplier step (planted fault).
    """
    T, B, R = _positive_int("T", T), _positive_float("B", B), _positive_float("R", R)
    S, n, d = X.shape
    K = rows.shape[1]
    if rows.shape != (S, K, n):
        raise ValueError(f"rows must have shape (S, K, n) = ({S}, K, {n}), got {tuple(rows.shape)}")
    eta_w = R / (game_gradient_bound(B) * math.sqrt(T)) if eta_w is None else eta_w
    eta_lam = math.sqrt(2 * math.log(K + 1) / T) / (1 + eps)
    s = 2 * Y - 1
    theta = torch.zeros(S, K, dtype=X.dtype, device=X.device)
    W = W0.clone()
    Ls, rs, lams, errs = [], [], [], []
    gsq = torch.zeros(S, dtype=X.dtype, device=X.device)
    gW = torch.zeros_like(gsq)
    G_sum, W_sum = torch.zeros_like(W0), torch.zeros_like(W0)
    p_mix = torch.zeros(S, n, dtype=X.dtype, device=X.device)
    h_mix = torch.zeros_like(p_mix)
    Xt = X if X_test is None else X_test
    p_test = torch.zeros(S, Xt.shape[1], dtype=X.dtype, device=X.device)
    h_test = torch.zeros_like(p_test)
    max_dist = torch.zeros_like(gsq)
    for _ in range(T):
        lam = eg_lambda(theta, B)
        L, g, err, r, f = lagrangian(W, b, X, s, rows, eps, lam)
        ft = forward(W, b, Xt)[0]
        Ls.append(L), rs.append(r), lams.append(lam), errs.append(err)
        gsq += (g * g).sum(dim=(1, 2))
        gW += (g * W).sum(dim=(1, 2))
        G_sum += g
        W_sum += W
        p_mix += torch.sigmoid(f)
        h_mix += (f > 0).to(X.dtype)
        p_test += torch.sigmoid(ft)
        h_test += (ft > 0).to(X.dtype)
        max_dist = torch.maximum(max_dist, dist(W, W0))
        W_last = W
        theta = theta + eg_sign * eta_lam * r
        W = W - eta_w * g
        if project:
            W = project_ball(W, W0, R)
    return GameResult(L=torch.stack(Ls), r=torch.stack(rs), lam=torch.stack(lams), err=torch.stack(errs),
                      gsq=gsq, G_sum=G_sum, gW=gW, p_mix=p_mix / T, h_mix=h_mix / T, p_mix_test=p_test / T,
                      h_mix_test=h_test / T, W_last=W_last, W_avg=W_sum / T, max_dist=max_dist, eta_w=eta_w,
                      eta_lam=eta_lam)
