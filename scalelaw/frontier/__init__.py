"""Decisions: architectures, the cost model, isoCost frontiers and the tolerable-compression test.

No torch and no fitting here: frontiers read predictions through a callable (or
`scalelaw.fits.predict_draws`), so they work with posteriors, published cards and synthetic draws.
"""

from scalelaw.frontier.architectures import (
    BUILTIN,
    Architecture,
    ArchitectureError,
    families,
    family_sizes,
    from_hf_config,
    get_architecture,
)
from scalelaw.frontier.cost import (
    CostBreakdown,
    CostError,
    cost,
    decode_bytes,
    prefill_flops,
)
from scalelaw.frontier.decide import Decision, FlopsCost, LatencyCost, decide
from scalelaw.frontier.isocost import (
    STUDY_COMPRESSIONS,
    CriticalLength,
    Frontier,
    FrontierError,
    average_over_tasks,
    critical_length,
    isocost_frontier,
)
from scalelaw.frontier.tolerance import tolerance_summary, tolerance_table

__all__ = [
    "BUILTIN",
    "STUDY_COMPRESSIONS",
    "Architecture",
    "ArchitectureError",
    "CostBreakdown",
    "CostError",
    "CriticalLength",
    "Decision",
    "FlopsCost",
    "Frontier",
    "FrontierError",
    "LatencyCost",
    "average_over_tasks",
    "cost",
    "critical_length",
    "decide",
    "decode_bytes",
    "families",
    "family_sizes",
    "from_hf_config",
    "get_architecture",
    "isocost_frontier",
    "prefill_flops",
    "tolerance_summary",
    "tolerance_table",
]
