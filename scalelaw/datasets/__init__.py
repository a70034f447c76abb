"""Datasets shipped with the package, loadable by name as ``measured:NAME``."""

from __future__ import annotations

from pathlib import Path

from scalelaw.errors import DataError

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped measured datasets."""
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("_"))


def dataset_path(name: str) -> Path:
    """The table file of dataset `name` (a folder holding ``NAME.parquet`` or ``NAME.csv``)."""
    folder = HERE / name
    for suffix in (".parquet", ".csv", ".jsonl"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    known = ", ".join(available()) or "none"
    raise DataError(f"measured:{name}: no such packaged dataset (available: {known})")
