"""Evaluation passes of the fused dp forward at large b, without a GPU: ``python -m bench.fused_passes``.

``layers._fused`` decides on the host how many ``evaluate`` passes a call takes (until at most
``CAPACITY`` breakpoints lie in the bracket). Its Triton kernels are too slow in Triton's interpreter at
b >= 1e6, so this script swaps them for NumPy stand-ins computed in float64 (the same quantities: group
statistics, phi and the breakpoint counts at the K points, the gather's sums and indices) and runs the
unchanged host logic (``layers._fused.solve_dp``) on five distributions, reporting passes per call and
checking the root against ``reference.projection.row_value_root`` on the same (float32-rounded) row.
``--b 1e6 --capacity 20`` has b = 1e8's ratio of breakpoints to the default capacity 2048.
"""

from __future__ import annotations

import argparse
import collections
import math

import numpy as np
import torch

import layers._fused as fused
from bench.fused_hooks import launches_to
from reference.projection import row_value_root

DISTRIBUTIONS = {
    "bench": lambda r, g, b: r.normal(0.5, 0.3, b) + 0.2 * g,      # bench/bench_layers.py's data
    "wide": lambda r, g, b: r.normal(0.5, 1.0, b) + 0.5 * g,
    "logit": lambda r, g, b: r.normal(0.0, 3.0, b) + g,
    "uniform": lambda r, g, b: r.uniform(0, 1, b) + 0.1 * g,
    "narrow-gap": lambda r, g, b: r.normal(0.5, 0.3, b) + 0.06 * g,
}


def _row(z, lab, tab):
    """float64 (z, a, r, hi, lo) of problem 0, as the kernels' ``_row``."""
    zz, one, t = z[0].double().numpy(), lab[0].numpy() != 0, tab[0].numpy().astype(np.float64)
    pick = lambda i: np.where(one, t[i + 1], t[i])
    return zz, pick(0), pick(2), pick(4), pick(6)


def _stats(z, g, lab, consts, out_f, out_i, out_m, b, lab_ps, BLOCK, CHUNK):
    zz, one = z[0].double().numpy(), g[0].numpy() != 0
    lab[0] = torch.as_tensor(one.astype(np.uint8))
    lb, ub = consts[0].item(), consts[1].item()
    zc, free = np.clip(zz, lb, ub), (zz > lb) & (zz < ub)
    out_f.zero_(), out_i.zero_()
    out_f[0, 0] = torch.tensor([zc[~one].sum(), zc[one].sum()])
    out_i[0, 0] = torch.tensor([one.sum(), (free & ~one).sum(), (free & one).sum()])
    out_m[0, :] = torch.tensor([zz[~one].min(), zz[~one].max(), zz[one].min(), zz[one].max()])


def _evaluate(z, lab, consts, tab, nu, phi, cnt, b, lab_ps, K, BLOCK, SUB):
    zz, a, r, hi, lo = _row(z, lab, tab)
    lb, ub = consts[0].item(), consts[1].item()
    e = np.sort(np.concatenate([(zz - hi) * r, (zz - lo) * r]))
    phi.zero_(), cnt.zero_()
    for k, v in enumerate(nu[0].double().numpy()):
        phi[0, 0, k] = math.fsum(a * np.clip(zz - v * a, lb, ub))
        cnt[0, 0, k] = int(np.searchsorted(e, v, side="left"))


def _gather(z, lab, tab, tab64, lr, part, count, buf, b, lab_ps, cap, BLOCK, CHUNK):
    zz, a, r, hi, lo = _row(z, lab, tab)
    e_in, e_out = (zz - hi) * r, (zz - lo) * r
    L, R = lr[0, 0].item(), lr[0, 1].item()
    inside = ((e_in > L) & (e_in < R)) | ((e_out > L) & (e_out < R))
    at_hi = ~inside & (e_in >= R)
    at_lo = ~inside & ~at_hi & (e_out <= L)
    free = ~inside & ~at_hi & ~at_lo
    part.zero_()
    terms = [a[at_hi] * hi[at_hi], a[at_lo] * lo[at_lo], a[free] * zz[free]]
    part[0, 0, 0] = math.fsum(np.concatenate(terms))
    part[0, 0, 1] = math.fsum(a[free] ** 2)
    idx = np.flatnonzero(inside)
    count[0] = len(idx)
    buf[0, :min(len(idx), cap)] = torch.as_tensor(idx[:cap].astype(np.int32))


def run(b: int, capacity: int, seeds: int = 2, eps: float = 0.05) -> list:
    stand_ins = {"stats": _stats, "evaluate": _evaluate, "gather": _gather}
    launches = collections.Counter()

    def emulated(name, grid, args, kwargs):
        launches[name] += 1
        return stand_ins[name](*args, **kwargs)

    rows = []
    with launches_to(emulated, capacity):
        for name, gen in DISTRIBUTIONS.items():
            for seed in range(seeds):
                r = np.random.default_rng(seed)
                g = r.integers(0, 2, b)
                z = torch.tensor(gen(r, g, b), dtype=torch.float32)
                launches.clear()
                eps_t = torch.tensor([eps], dtype=torch.float32)
                nu, active, up, tab, _ = fused.solve_dp(z[None], torch.tensor(g)[None], eps_t, (0.0, 1.0))
                t = tab[0].numpy().astype(np.float64)
                a = np.where(g != 0, t[1], t[0])
                target = float(np.float32(eps)) * (1 if up[0] else -1)
                exact = row_value_root(z.double().numpy(), a, target, (0.0, 1.0))
                rows.append({"distribution": name, "seed": seed, "passes": launches["evaluate"],
                             "nu": float(nu[0]), "rel_error": abs(nu[0] - exact) / max(1.0, abs(exact))})
                print(rows[-1], flush=True)
    return rows


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--b", type=float, default=1e6)
    p.add_argument("--capacity", type=int, default=20)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args(argv)
    rows = run(int(args.b), args.capacity, args.seeds)
    print("passes:", {n: [r["passes"] for r in rows if r["distribution"] == n] for n in DISTRIBUTIONS},
          "max relative error of nu:", max(r["rel_error"] for r in rows))
    return rows


if __name__ == "__main__":
    main()
