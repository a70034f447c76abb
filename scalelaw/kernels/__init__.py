"""Sparse attention methods: a registry, PyTorch references and Triton kernels.

```python
from scalelaw.kernels import get_method
m = get_method("block-sparse")
res = m.prefill(q, k, v, compression=10.0)   # res.out, res.achieved_compression
```
See docs/kernels.md for every method, its knobs and how C maps to its budget. The method spec
(`scalelaw.kernels.specs`) needs no torch; the rest is imported on first use so that reading
the spec, validating a grid or costing a method never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from scalelaw.kernels.specs import KernelInputError

_LAZY = {
    "AttentionResult": "scalelaw.kernels.base",
    "SparseMethod": "scalelaw.kernels.base",
    "KVCache": "scalelaw.kernels.cache",
    "get_method": "scalelaw.kernels.registry",
    "list_methods": "scalelaw.kernels.registry",
}

__all__ = [
    "AttentionResult",
    "KVCache",
    "KernelInputError",
    "SparseMethod",
    "get_method",
    "list_methods",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalelaw.kernels' has no attribute {name!r}")
