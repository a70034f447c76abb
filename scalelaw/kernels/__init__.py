"""Sparse attention methods: a registry, PyTorch references and Triton kernels.

```python
from scalelaw.kernels import get_method
m = get_method("block-sparse")
res = m.prefill(q, k, v, compression=10.0)   # res.out, res.achieved_compression
```
See docs/kernels.md for every method, its knobs and how C maps to its budget.
"""

from scalelaw.kernels.base import AttentionResult, KernelInputError, SparseMethod
from scalelaw.kernels.cache import KVCache
from scalelaw.kernels.registry import get_method, list_methods

__all__ = [
    "AttentionResult",
    "KVCache",
    "KernelInputError",
    "SparseMethod",
    "get_method",
    "list_methods",
]
