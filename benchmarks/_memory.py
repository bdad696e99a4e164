"""Peak tensor memory on any device, CPU included: a TorchDispatchMode that follows storages.

``torch.cuda.max_memory_allocated`` exists only for CUDA, and tracemalloc does not see torch's
allocations. :class:`PeakTensorMemory` sees every tensor an ATen operation returns while it is
active (forward, autograd's backward, the optimizer), counts each storage once by its size in
bytes, and un-counts it when the storage is freed (a weak reference callback). The peak is the
largest total of live storages created inside the block: what the caching allocator's
``max_memory_allocated`` would report minus its rounding, and minus scratch buffers a kernel
allocates internally (conv workspaces), which are the same for the two steps compared here.
Tensors that existed before the block (weights, optimizer state, the input batch) are not
counted; :func:`tensor_bytes` measures those.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorMemory(TorchDispatchMode):
    """``with PeakTensorMemory() as m: step()`` then ``m.peak`` (bytes) and ``m.current``."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        if self._refs.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key = st._cdata
                if key not in self._refs:
                    nbytes = st.nbytes()
                    self._refs[key] = weakref.ref(st, lambda _, k=key, n=nbytes: self._freed(k, n))
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
        return out


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    seen = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st._cdata] = st.nbytes()
    return sum(seen.values())
