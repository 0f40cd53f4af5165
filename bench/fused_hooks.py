"""One hook on ``layers._fused``'s kernel launches, shared by the benchmark and the models that need one.

``layers._fused`` launches its Triton kernels as ``kernel[grid](*args, **kwargs)`` on what
``layers._fused._kernels()`` returns. :func:`launches_to` swaps those four kernels, for the duration of a
``with`` block, for stand-ins that hand every launch to ``on_launch(name, grid, args, kwargs)``:
``bench.dispatch_model`` records its bytes, ``bench.bench_fused`` counts and times it, ``bench.fused_passes``
computes it in NumPy instead. :func:`run_kernel` runs the real kernel (imports triton; the NumPy stand-ins
never call it).
"""

from __future__ import annotations

import contextlib

import layers._fused as fused

NAMES = ("stats", "evaluate", "gather", "output")       # the order of layers._fused._kernels()
_REAL = fused._kernels                                  # kept: the stand-ins replace the module's name


class _Launch:
    def __init__(self, name: str, on_launch):
        self.name, self.on_launch = name, on_launch

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.on_launch(self.name, grid, args, kwargs)


def run_kernel(name: str, grid, args, kwargs):
    """The real launch that a stand-in intercepted."""
    return _REAL()[NAMES.index(name)][grid](*args, **kwargs)


@contextlib.contextmanager
def launches_to(on_launch, capacity: int | None = None):
    """Within the block every fused kernel launch calls ``on_launch(name, grid, args, kwargs)`` (and
    ``layers._fused.CAPACITY`` is ``capacity`` if given); both restored afterwards."""
    saved = fused._kernels, fused.CAPACITY
    stand_ins = tuple(_Launch(name, on_launch) for name in NAMES)
    fused._kernels = lambda: stand_ins
    if capacity is not None:
        fused.CAPACITY = capacity
    try:
        yield
    finally:
        fused._kernels, fused.CAPACITY = saved
