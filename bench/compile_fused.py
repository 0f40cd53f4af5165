"""Compile the fused layer's Triton kernels for a GPU without one: ``python -m bench.compile_fused``.

Triton's CUDA backend and its bundled ``ptxas`` and ``nvdisasm`` build each kernel of
``layers/_fused_kernels.py`` for sm_90 (H100/H200) at the default sizes of ``layers._fused``, float32 and
float64, and report per kernel: registers, spill bytes (``ptxas -v``), and the SASS instructions of its
main loop per coordinate (a static count: with 128 threads a loop iteration covers CHUNK / 128
coordinates, SUB / 128 for ``evaluate``; branches that rarely run, like the gather's scan, are counted
too). At ~1e12 warp-instructions per second on an H200 (132 SMs x 4 schedulers x 1.98 GHz), ``n``
instructions per coordinate cost ~n b / 32 / 1e12 s at size b: the issue-bound time to set beside the
memory-bound one.

Runs without TRITON_INTERPRET (the interpreter's patched builder cannot compile), so tests call it in a
subprocess. ``--K``, ``--sub`` override the evaluation tile; ``--break-signature`` passes z as an integer
(a compile error: what a planted fault looks like). Prints JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

ISSUE_RATE = 132 * 4 * 1.98e9          # warp-instructions per second, H200


def signatures(dt: str) -> dict:
    z, blocks = f"*{dt}", {"BLOCK": "constexpr", "CHUNK": "constexpr"}
    common = dict(lab_ptr="*u8", b="i32", lab_ps="i32")
    return {
        "stats": dict(z_ptr=z, g_ptr="*i64", lab_ptr="*u8", c_ptr=z, out_f="*fp64", out_i="*i32", out_m=z,
                      b="i32", g_ps="i32", **blocks),
        "evaluate": dict(z_ptr=z, c_ptr=z, tab_ptr=z, nu_ptr=z, phi_ptr="*fp64", cnt_ptr="*i32", **common,
                         K="constexpr", BLOCK="constexpr", SUB="constexpr"),
        "gather": dict(z_ptr=z, tab_ptr=z, tab64_ptr="*fp64", lr_ptr=z, sums_ptr="*fp64", count_ptr="*i32",
                       buf_ptr="*i32", cap="i32", **common, **blocks),
        "output": dict(z_ptr=z, c_ptr=z, tab_ptr=z, nu_ptr=z, y_ptr=z, **common, **blocks),
    }


def _loop_ops(sass: str) -> int:
    """Instructions of the longest backward-branch loop in a SASS listing."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"\s*\.(L_x_\d+):", line))}
    best = 0
    for i, line in enumerate(lines):
        m = re.search(r"BRA\s+`\(\.(L_x_\d+)\)", line)
        if m and labels.get(m.group(1), i) < i:
            body = lines[labels[m.group(1)]:i + 1]
            best = max(best, sum(bool(re.search(r"\*/\s+(?:@!?U?P[T0-9]+\s+)?[A-Z]", x)) for x in body))
    return best


def compile_all(K: int | None = None, sub: int | None = None, break_signature: bool = False) -> list:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import layers._fused as fused
    from layers import _fused_kernels as kernels

    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    K = fused.K if K is None else K
    sub = max(8, 2048 // K) if sub is None else sub
    blocks = {"BLOCK": fused.BLOCK, "CHUNK": fused.CHUNK}
    constexprs = {"stats": blocks, "gather": blocks, "output": blocks,
                  "evaluate": {"K": K, "BLOCK": fused.BLOCK, "SUB": sub}}
    per_iteration = {"stats": fused.CHUNK / 128, "gather": fused.CHUNK / 128, "output": fused.CHUNK / 128,
                     "evaluate": sub / 128}
    rows = []
    for dt in ("fp32", "fp64"):
        for name, sig in signatures(dt).items():
            fn = getattr(kernels, name)
            sig = {arg: sig[arg] for arg in inspect.signature(fn.fn).parameters}     # the kernel's order
            if break_signature:
                sig["z_ptr"] = "i32"
            compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs[name]),
                                      target=GPUTarget("cuda", 90, 32))
            with tempfile.TemporaryDirectory() as d:
                ptx, cubin = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
                with open(ptx, "w") as f:
                    f.write(compiled.asm["ptx"])
                log = subprocess.run([os.path.join(bindir, "ptxas"), "--gpu-name", "sm_90a", "-v", ptx, "-o",
                                      cubin], capture_output=True, text=True, check=True).stderr
                sass = subprocess.run([os.path.join(bindir, "nvdisasm"), "-c", cubin], capture_output=True,
                                      text=True, check=True).stdout
            per_coord = _loop_ops(sass) / per_iteration[name]
            rows.append({"kernel": name, "dtype": dt, **constexprs[name],
                         "registers": int(re.search(r"Used (\d+) registers", log).group(1)),
                         "spill_bytes": int(re.search(r"(\d+) bytes spill stores", log).group(1)),
                         "loop_instructions_per_coordinate": per_coord,
                         "issue_bound_ms_at_1e8": 1e8 * per_coord / 32 / ISSUE_RATE * 1e3})
    return rows


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=None)
    p.add_argument("--sub", type=int, default=None)
    p.add_argument("--break-signature", action="store_true")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the interpreter's builder cannot compile")
    rows = compile_all(args.K, args.sub, args.break_signature)
    json.dump(rows, sys.stdout, indent=1)
    print()
    return rows


if __name__ == "__main__":
    main()
