"""Values a prefill plan reports that live on the device, read when first asked for.

Reading a device value makes the host wait for the device. A plan's stats and its `why` text
are read after the attention kernel has been queued (by `prefill`, or by a caller), so building
them must not read the device: they hold the device values and read them on first access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from scalelaw.kernels.base import PrefillPlan
from scalelaw.kernels.tiles import TileIndex


class Deferred:
    """A host value computed from device tensors on first use, then kept: the device work
    it needs is queued only when it is read, and never when it is not."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read: Callable[[], Any] | None = read
        self._value: Any = None

    @property
    def value(self) -> Any:
        if self._read is not None:
            self._value = self._read()
            self._read = None
        return self._value


class DeferredStats(dict[str, Any]):
    """A stats dict whose `Deferred` values are read when the dict is first read.

    Every read (items, values, lookups, copies, comparison, printing) sees plain host values;
    only `len`, `in` and key iteration leave the device alone.
    """

    def _resolve(self) -> None:
        for key, val in dict.items(self):
            if isinstance(val, Deferred):
                dict.__setitem__(self, key, val.value)

    def __getitem__(self, key: str) -> Any:
        self._resolve()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._resolve()
        return dict.get(self, key, default)

    def items(self) -> Any:
        self._resolve()
        return dict.items(self)

    def values(self) -> Any:
        self._resolve()
        return dict.values(self)

    def copy(self) -> dict[str, Any]:
        self._resolve()
        return dict(dict.items(self))

    def __iter__(self) -> Iterator[str]:
        # overridden so that dict(stats) and {**stats} take the lookup path, which resolves
        return dict.__iter__(self)

    def __eq__(self, other: object) -> bool:
        self._resolve()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._resolve()
        return dict.__repr__(self)


class DeferredPlan(PrefillPlan):
    """A `PrefillPlan` whose `why` text is written when first read."""

    def __init__(
        self,
        index: TileIndex,
        cells: torch.Tensor,
        why: Callable[[], str],
        stats: dict[str, Any],
        study_compression: float | None = None,
    ) -> None:
        self._why = Deferred(why)
        super().__init__(index, cells, "", stats, study_compression)

    @property  # type: ignore[override]
    def why(self) -> str:
        return str(self._why.value)

    @why.setter
    def why(self, text: str) -> None:
        if text:  # the dataclass's __init__ sets the placeholder
            self._why = Deferred(lambda: text)
