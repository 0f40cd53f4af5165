"""What a torch call dispatches: aten ops, and those a CUDA graph could not capture (a helper of the tests).

``record_ops(fn)`` runs ``fn()`` under a ``TorchDispatchMode`` and returns (kernels, bad):
* kernels: the aten ops that would launch work on the device -- views (no data) and ``scalar_tensor``
  (the host-side wrapping of a Python number, e.g. ``torch.where(c, x, 0.0)``) left out;
* bad: the ops that read a device value on the host (item / bool / nonzero / tolist: a sync on CUDA),
  build a tensor from host data (torch.tensor: a host->device copy) or move a tensor to another device.
It works on the CPU, so the CPU-only CI checks the hot paths' structure for the GPU.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OR_HOST_DATA = {"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.lift_fresh",
                     "aten.lift_fresh_copy", "aten.tolist"}
NOT_KERNELS = {"aten.select", "aten.slice", "aten.unsqueeze", "aten.view", "aten.expand", "aten.as_strided",
               "aten.permute", "aten.squeeze", "aten.detach", "aten.alias", "aten._reshape_alias",
               "aten.scalar_tensor"}


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.bad = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops.append(name)
        dev = (kwargs or {}).get("device")
        moved = name == "aten._to_copy" and dev is not None and torch.device(dev) != args[0].device
        if name in SYNC_OR_HOST_DATA or moved:
            self.bad.append(name)
        return func(*args, **(kwargs or {}))


def record_ops(fn) -> tuple[list[str], list[str]]:
    """(kernels, bad) of ``fn()``: see the module docstring."""
    with _Ops() as mode:
        fn()
    return [o for o in mode.ops if o not in NOT_KERNELS], mode.bad
