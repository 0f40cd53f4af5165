"""What a torch call dispatches: the kernels it would launch, the bytes they move, and anything a CUDA graph
could not capture. Runs on the CPU, so the CPU-only CI checks the hot paths' structure for the GPU.

``record(fn)`` runs ``fn()`` under a ``TorchDispatchMode`` and returns a :class:`Dispatch`:
* ``kernels``: the aten ops that would launch work on a device, in order -- views (no data), allocations
  without a fill (``empty``) and ``scalar_tensor`` (the host-side wrapping of a Python number, e.g.
  ``torch.where(c, x, 0.0)``) left out;
* ``bytes``: per kernel, the bytes of its tensor arguments and results (a broadcast dimension, stride 0,
  counted once; a gather: its index and result, and as many source elements as results): a model of the
  device-memory traffic, exact for elementwise kernels and gathers, a lower bound for sorts and scatters;
* ``bad``: the ops that read a device value on the host (item / bool / nonzero / tolist: a sync on CUDA),
  build a tensor from host data (torch.tensor: a host->device copy) or move a tensor to another device;
* ``phases``: per kernel, the recorder's ``phase`` label when it ran (set by a caller that wants a split).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SYNC_OR_HOST_DATA = {"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.lift_fresh",
                     "aten.lift_fresh_copy", "aten.tolist"}
NOT_KERNELS = {"aten.select", "aten.slice", "aten.unsqueeze", "aten.view", "aten.expand", "aten.as_strided",
               "aten.permute", "aten.squeeze", "aten.detach", "aten.alias", "aten._reshape_alias",
               "aten.t", "aten.transpose", "aten.empty", "aten.empty_strided", "aten.empty_like",
               "aten.scalar_tensor"}


@dataclasses.dataclass
class Dispatch:
    kernels: list
    bytes: list
    bad: list
    phases: list

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes)


def _span(x) -> int:
    """Bytes a tensor's elements occupy, a stride-0 (broadcast) dimension counted once; 0 for scalars."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        return 0
    n = 1
    for size, stride in zip(x.shape, x.stride(), strict=True):
        if stride != 0:
            n *= size
    return n * x.element_size()


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.out = Dispatch([], [], [], [])
        self.phase = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = str(func.overloadpacket)
        dev = kwargs.get("device")
        moved = name == "aten._to_copy" and dev is not None and torch.device(dev) != args[0].device
        if name in SYNC_OR_HOST_DATA or moved:
            self.out.bad.append(name)
        if name not in NOT_KERNELS:
            self.out.kernels.append(name)
            if name == "aten.gather":           # reads index-many source elements, not the whole source
                nbytes = _span(args[2]) + 2 * _span(result)
            else:
                nbytes = sum(_span(x) for x in tree_flatten((args, kwargs))[0]) + sum(
                    _span(x) for x in tree_flatten(result)[0])
            self.out.bytes.append(nbytes)
            self.out.phases.append(self.phase)
        return result


def recorder() -> _Recorder:
    """A recorder to use as a context manager (``with rec: ...``; then ``rec.out``); set ``rec.phase``."""
    return _Recorder()


def record(fn) -> Dispatch:
    """Run ``fn()`` and return what it dispatched (module docstring)."""
    with recorder() as rec:
        fn()
    return rec.out


def record_ops(fn) -> tuple[list[str], list[str]]:
    """(kernels, bad) of ``fn()``."""
    d = record(fn)
    return d.kernels, d.bad
