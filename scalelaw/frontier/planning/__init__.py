"""Planning: which measurements would most likely change the decision, per GPU-hour?

Preposterior analysis over posterior draws. The decision at a target (a length and a cost
budget) is the sign of the best sparse minus the best dense score, decided in each draw; the
loss of deciding now is P(wrong decision) = min(P, 1 - P) with P = P(sparse better). A
candidate measurement (model, task, length, method, ratio, samples) would return `successes`
out of `samples`; for each possible outcome the draws are re-weighted by its binomial
likelihood (importance weights), the decision is recomputed under the weights, and its loss is
averaged over the outcome's posterior predictive probability. The drop in expected loss is the
expected value of sample information (EVSI); divided by the candidate's GPU-hours it ranks the
candidates. A batch is chosen greedily within a GPU-hour budget, valued jointly by simulating
outcomes of all its configurations at once, and written as a sweep grid for `scalelaw measure`.

A sweep grid is a cross product (models x lengths x tasks x methods x ratios, one sample count),
so the batch is one too: every addition is judged with everything its product brings along.
Torch-free: the grid module of `scalelaw.measure` and its task registry are.

Modules, bottom to top (each imports only modules named before it here):
`errors` (PlanError), `targets` (Target, parse_target), `measure_cost` (MeasureSpeed, the
architecture of a model spec, timings), `candidates` (a sweep grid TOML as candidates),
`decision` (the decision per draw, P(wrong)), `value` (re-weighting, EVSI, simulated batch
outcomes), `sweep_grid` (a batch as a sweep grid), `batches` (the greedy batch), `degenerate`
(flags for unidentified parameters), `result` (Plan and its TOML) and `planner` (`plan`).
"""

from scalelaw.frontier.planning.candidates import (
    V1_TASK_NAMES,
    Candidate,
    Candidates,
    candidates_from_dict,
    read_candidates,
)
from scalelaw.frontier.planning.decision import decision_configs, sparse_wins, wrong_probability
from scalelaw.frontier.planning.errors import PlanError
from scalelaw.frontier.planning.measure_cost import MeasureSpeed, model_architecture
from scalelaw.frontier.planning.planner import plan
from scalelaw.frontier.planning.targets import Target, parse_target
from scalelaw.frontier.planning.value import evsi, reweight

# the names the commands, tests, benchmarks and docs import from `scalelaw.frontier.planning`;
# everything else is imported from its module
__all__ = [
    "V1_TASK_NAMES",
    "Candidate",
    "Candidates",
    "MeasureSpeed",
    "PlanError",
    "Target",
    "candidates_from_dict",
    "decision_configs",
    "evsi",
    "model_architecture",
    "parse_target",
    "plan",
    "read_candidates",
    "reweight",
    "sparse_wins",
    "wrong_probability",
]
