"""The reference study's grid (Nawrot et al. 2025, "The Sparse Frontier"): the models, lengths
and compression ratios that kernels, fits, frontier and the commands share, defined once at the floor so that
none of them imports another for a constant."""

from __future__ import annotations

#: The reference study's compression ratios (1 = dense); the one list every part uses.
STUDY_COMPRESSIONS: tuple[float, ...] = (
    1.0,
    1.43,
    1.67,
    2.0,
    2.5,
    3.33,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
)

#: The study's models (Qwen2.5 Instruct) and their parameter counts.
STUDY_MODELS: dict[str, float] = {
    "Qwen2.5-7B-Instruct": 7.62e9,
    "Qwen2.5-14B-Instruct": 14.77e9,
    "Qwen2.5-32B-Instruct": 32.76e9,
    "Qwen2.5-72B-Instruct": 72.71e9,
}

#: The study's sequence lengths (tokens).
STUDY_LENGTHS: tuple[int, ...] = (16384, 32768, 65536, 131072)

#: The compression levels the study ran per method, sparsest first (v1 Table 6 / v2 Table 3):
#: block-sparse and flexprefill have seven, with 3 where the others have 3.33.
STUDY_LEVELS: dict[str, tuple[float, ...]] = {
    "block-sparse": (20.0, 15.0, 10.0, 7.5, 5.0, 3.0, 2.0),
    "flexprefill": (20.0, 15.0, 10.0, 7.5, 5.0, 3.0, 2.0),
    **{
        m: tuple(sorted((c for c in STUDY_COMPRESSIONS if c > 1), reverse=True))
        for m in ("vertical-slash", "quest", "snapkv", "ada-snapkv")
    },
}

#: The same list as a command-line default.
STUDY_COMPRESSIONS_TEXT = ",".join(f"{c:g}" for c in STUDY_COMPRESSIONS)

__all__ = [
    "STUDY_COMPRESSIONS",
    "STUDY_COMPRESSIONS_TEXT",
    "STUDY_LENGTHS",
    "STUDY_LEVELS",
    "STUDY_MODELS",
]
