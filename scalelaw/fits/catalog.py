"""Built-in law forms and published law cards, looked up by name.

Generic forms are fitted to data. A published card is a paper's fitted coefficients held as a
fit with one draw (`FitResult.card`), so `predict`, `simulate` and `frontier` take it like any
fit, with no data at all. `get_law` gives a card's law form, `get_card` the card itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalelaw.fits.expr import ExprError
from scalelaw.fits.law import Law, Param
from scalelaw.fits.priors import Prior
from scalelaw.fits.result import FitResult, load_fit
from scalelaw.study import STUDY_COMPRESSIONS, STUDY_LENGTHS, STUDY_MODELS

SPARSE_FRONTIER_CITATION = (
    "Nawrot, Li, Huang, Ruder, Marchisio, Ponti. The Sparse Frontier: Sparse Attention "
    "Trade-offs in Transformer LLMs. arXiv:2504.17768 (v1), Table 3."
)
CHINCHILLA_CITATION = (
    "Hoffmann et al. Training Compute-Optimal Large Language Models. arXiv:2203.15556 (2022), "
    "approach 3."
)
EPOCH_CITATION = (
    "Besiroglu, Erdil, Barnett, You. Chinchilla Scaling: A replication attempt. "
    "arXiv:2404.10102 (2024)."
)

SPARSE_EXPR = "eps + alpha * log(N) + beta * log(L) + gamma * log(C) + delta[task]"
SPARSE_FORMULA = "logit(score) = eps + alpha ln N + beta ln L + gamma ln C + delta[task]"
TASKS_V1 = (
    "QuALITY",
    "SQuAD",
    "TOEFL",
    "CWE",
    "NIAH",
    "VT",
    "StoryFiltering",
    "StoryMultihop",
    "StoryRetrieval",
)

# v1 Table 3: (phase, held-out axis) -> eps, alpha, beta, gamma, R^2, task offsets in TASKS_V1
# order after the reference task QuALITY (offset 0). The study states neither the link nor the
# slope-to-axis mapping; this is the only reading under which accuracies land in [0, 1].
_V1_TABLE3: dict[tuple[str, str], tuple[float, float, float, float, float, tuple[float, ...]]] = {
    ("prefill", "sequence_length"): (-16.92, 1.31, -1.15, -1.00, 0.74, (0.27, 0.80, 0.76, 14.67, -1.60, -3.55, -3.21, 1.43)),
    ("prefill", "model_size"): (-18.10, 1.58, -1.58, -0.83, 0.64, (0.20, 0.73, -0.42, 10.51, -1.63, -4.42, -3.74, 0.46)),
    ("prefill", "compression_ratio"): (-18.08, 1.51, -1.51, -0.73, 0.72, (0.24, 0.79, 0.40, 13.62, -1.54, -3.65, -3.55, 1.17)),
    ("decode", "sequence_length"): (-28.82, 1.72, -0.97, -0.94, 0.64, (0.35, 0.72, 0.54, 12.18, -0.85, -2.98, -2.87, 2.32)),
    ("decode", "model_size"): (-35.57, 2.25, -1.45, -0.81, 0.57, (0.32, 0.60, -0.53, 8.45, -0.89, -3.88, -3.44, 1.31)),
    ("decode", "compression_ratio"): (-26.89, 1.81, -1.38, -0.82, 0.64, (0.31, 0.66, 0.26, 11.37, -0.90, -3.19, -3.40, 1.78)),
}  # fmt: skip


#: Weakly informative priors of the sparse laws (logit scale, per unit of ln N, ln L, ln C).
SPARSE_PRIORS: dict[str, str] = {
    "eps": "normal(0, 50)",
    "alpha": "normal(0, 5)",
    "beta": "normal(0, 5)",
    "gamma": "normal(0, 5)",
    "delta": "normal(0, 10)",
}


def sparse_frontier(pooling: str = "fixed") -> Law:
    """The sparse-attention law on the logit scale with one offset per task."""
    return Law.from_string(
        SPARSE_EXPR,
        name="sparse-frontier" if pooling == "fixed" else "sparse-frontier-pooled",
        covariates=("N", "L", "C"),
        priors=SPARSE_PRIORS,
        link="logit",
        likelihood="binomial",
        pooling=pooling,
        reference={"task": "QuALITY"} if pooling == "fixed" else {},
        citation=SPARSE_FRONTIER_CITATION,
        description=(
            "Accuracy of sparse attention over model size N, sequence length L and compression "
            "ratio C; per-task offsets "
            + (
                "against a reference task (QuALITY when present, else the first task)."
                if pooling == "fixed"
                else "drawn from a common normal (partial pooling); eps is the task average."
            )
        ),
    )


#: The table column of each axis the study held out (its largest value) in one fit.
HELD_OUT_COLUMN = {
    "sequence_length": "seq_len",
    "model_size": "params",
    "compression_ratio": "compression",
}


def sparse_frontier_card(phase: str, held_out: str = "sequence_length") -> FitResult:
    """A published card: the study's fitted coefficients for one phase and held-out axis."""
    try:
        eps, alpha, beta, gamma, r2, offsets = _V1_TABLE3[(phase, held_out)]
    except KeyError:
        raise ExprError(f"no published sparse-frontier-v1 row for {phase} / {held_out}") from None
    deltas = {"QuALITY": 0.0, **dict(zip(TASKS_V1[1:], offsets, strict=True))}
    law = sparse_frontier().with_options(
        name=f"sparse-frontier-v1:{phase}"
        + ("" if held_out == "sequence_length" else f":{held_out}"),
        description=(
            f"The study's v1 fit for {phase} (largest {held_out.replace('_', ' ')} held out, "
            f"R^2 {r2}); N in parameters, L in tokens. Tasks: {', '.join(TASKS_V1)}."
        ),
    )
    values = {"eps": eps, "alpha": alpha, "beta": beta, "gamma": gamma, "delta": deltas}
    # the spans the card was fitted on: the study's grid less the held-out axis's largest value
    # (which the study predicted, not fitted); predictions and decisions beyond say so
    grid = {
        "params": sorted(STUDY_MODELS.values()),
        "seq_len": [float(x) for x in sorted(STUDY_LENGTHS)],
        "compression": sorted(STUDY_COMPRESSIONS),
    }
    grid[HELD_OUT_COLUMN[held_out]].pop()
    ranges = {column: [seen[0], seen[-1]] for column, seen in grid.items()}
    return FitResult.card(law, values, phase=phase, r2=r2, ranges=ranges)


def chinchilla(name: str = "chinchilla-form") -> Law:
    """Chinchilla's loss law, fitted on the log of the loss as Hoffmann et al. and Epoch did."""
    law = Law.from_string(
        "E + A / N**alpha + B / D**beta",
        name=name,
        covariates=("N", "D"),
        priors={
            "E": "lognormal(0.5, 0.5)",
            "A": "lognormal(6, 2)",
            "B": "lognormal(7, 2)",
            "alpha": "uniform(0, 1.5)",
            "beta": "uniform(0, 1.5)",
        },
        bounds={
            "E": (0.0, None),
            "A": (0.0, None),
            "B": (0.0, None),
            "alpha": (0.0, 1.5),
            "beta": (0.0, 1.5),
        },
        response="loss",
        transform="log",
        # Student-t on the log loss is the likelihood analogue of the Huber loss used by
        # Hoffmann et al. and Epoch AI: a few digitisation outliers do not drag the fit.
        likelihood="student_t",
        citation=CHINCHILLA_CITATION,
        description="Pre-training loss over parameters N and training tokens D.",
    )
    starts = {
        "E": (0.5, 1.0, 1.5, 2.0, 3.0),
        "A": (1e1, 1e2, 1e3, 1e4, 1e5),
        "B": (1e1, 1e2, 1e3, 1e4, 1e5),
        "alpha": (0.1, 0.3, 0.5, 0.8),
        "beta": (0.1, 0.3, 0.5, 0.8),
    }
    return law.with_options(
        params=tuple(Param(p.name, p.prior, p.lower, p.upper, starts[p.name]) for p in law.params)
    )


def _card_chinchilla() -> FitResult:
    values = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    return FitResult.card(chinchilla(name="chinchilla"), values)


def _card_epoch() -> FitResult:
    law = chinchilla(name="chinchilla-epoch").with_options(citation=EPOCH_CITATION)
    values = {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3658}
    return FitResult.card(law, values)


def _power_law() -> Law:
    return Law.from_string(
        "E + A / N**alpha",
        name="power-law",
        covariates=("N",),
        priors={"E": "halfnormal(5)", "A": "lognormal(3, 3)", "alpha": "uniform(0, 2)"},
        bounds={"E": (0.0, None), "A": (0.0, None), "alpha": (0.0, 2.0)},
        transform="log",
        response="loss",
        description="A power law with an irreducible floor E.",
    )


def _logistic_power() -> Law:
    return Law.from_string(
        "k * (log(N) - m) + delta[task]",
        name="logistic-power",
        covariates=("N",),
        priors={"k": "normal(0, 5)", "m": "normal(20, 10)", "delta": "normal(0, 10)"},
        link="logit",
        likelihood="binomial",
        reference={"task": "QuALITY"},
        description="A logistic of a power law in N: score = 1 / (1 + (N / e^m)^-k), per task.",
    )


def _sparse_interaction(axis: str) -> Law:
    """sparse-frontier whose compression slope moves with ln N or ln L (by kappa)."""
    suffix, meaning = {"N": ("nc", "model size"), "L": ("lc", "sequence length")}[axis]
    return Law.from_string(
        "eps + alpha * log(N) + beta * log(L) + gamma * log(C)"
        f" + kappa * log({axis}) * log(C) + delta[task]",
        name=f"sparse-frontier-{suffix}",
        covariates=("N", "L", "C"),
        priors={**SPARSE_PRIORS, "kappa": "normal(0, 2)"},
        link="logit",
        likelihood="binomial",
        reference={"task": "QuALITY"},
        citation=SPARSE_FRONTIER_CITATION,
        description=f"sparse-frontier with a compression slope that changes with {meaning}.",
    ).with_options(
        formula="logit(score) = eps + alpha ln N + beta ln L"
        f" + (gamma + kappa ln {axis}) ln C + delta[task]"
    )


#: Covariates of the law of combined runs: the ratio of each phase, as the table names them.
PD_COVARIATES = ("N", "L", "prefill_compression", "decode_compression")


def sparse_frontier_pd() -> Law:
    """sparse-frontier with one ratio per phase, for runs that compress prefill and decode.

    A prefill-only row has decode_compression = 1 (and the other way round), so single-method
    rows fit beside combined ones; kappa is how the two compressions compound.
    """
    priors = {k: v for k, v in SPARSE_PRIORS.items() if k != "gamma"}
    return Law.from_string(
        "eps + alpha * log(N) + beta * log(L) + gamma_p * log(prefill_compression)"
        " + gamma_d * log(decode_compression)"
        " + kappa * log(prefill_compression) * log(decode_compression) + delta[task]",
        name="sparse-frontier-pd",
        covariates=PD_COVARIATES,
        priors={
            **priors,
            "gamma_p": "normal(0, 5)",
            "gamma_d": "normal(0, 5)",
            "kappa": "normal(0, 2)",
        },
        link="logit",
        likelihood="binomial",
        reference={"task": "QuALITY"},
        description=(
            "sparse-frontier for runs that compress both phases: the prefill ratio C_prefill "
            "(prefill_compression) and the decode ratio C_decode (decode_compression) each "
            "with its own slope, and kappa for their interaction; a phase left dense has ratio 1."
        ),
    ).with_options(
        formula="logit(score) = eps + alpha ln N + beta ln L + gamma_p ln C_prefill"
        " + gamma_d ln C_decode + kappa ln C_prefill ln C_decode + delta[task]"
    )


RUAN_CITATION = (
    "Ruan, Maddison, Hashimoto. Observational Scaling Laws and the Predictability of Language "
    "Model Performance. arXiv:2405.10938 (2024); Bhagia et al. Establishing Task Scaling Laws "
    "via Compute-Efficient Model Ladders. arXiv:2412.04403 (2024)."
)
LINEAR_PREDICTOR = "eps + alpha * log(N) + beta * log(L) + gamma * log(C) + delta[task]"


def floor_ceiling(floor: str = "0", per_task: bool = False) -> Law:
    """Accuracy between a floor (chance) and a ceiling below 1, a sigmoid in between.

    `floor` is a number (a four-way choice: 0.25) or ``chance``, a column of the table;
    `per_task` gives every task its own ceiling (``ceiling[task]``).
    """
    base = "floor-ceiling-tasks" if per_task else "floor-ceiling"
    top = "ceiling[task]" if per_task else "ceiling"
    covariates: tuple[str, ...]
    if floor == "chance":
        floor_term, covariates, lo = "chance", ("N", "L", "C", "chance"), 0.0
        name = f"{base}:chance"
    else:
        try:
            value = float(floor)
        except ValueError:
            raise ExprError(
                f"{base}:{floor}: the floor is a number in [0, 1) or 'chance'"
            ) from None
        if not 0.0 <= value < 1.0:
            raise ExprError(f"{base}:{floor}: the floor must lie in [0, 1)")
        floor_term, covariates, lo = repr(value), ("N", "L", "C"), value
        name = base if value == 0.0 else f"{base}:{floor}"
    expr = (
        f"{top} * sigmoid({LINEAR_PREDICTOR})"
        if lo == 0.0 and floor_term != "chance"
        else f"{floor_term} + ({top} - {floor_term}) * sigmoid({LINEAR_PREDICTOR})"
    )
    return Law.from_string(
        expr,
        name=name,
        covariates=covariates,
        priors={**SPARSE_PRIORS, "ceiling": f"uniform({lo:g}, 1)"},
        bounds={"ceiling": (lo, 1.0)},
        likelihood="binomial",
        reference={"task": "QuALITY"},
        citation=RUAN_CITATION,
        description=(
            "Accuracy saturates: it rises from a floor (chance level; a number, or the 'chance' "
            "column) towards a ceiling below 1 along a sigmoid of the sparse law's linear "
            "predictor. A real benchmark has wrong or ambiguous items, so perfect accuracy is "
            "out of reach, and a model below chance is noise."
        ),
    ).with_options(
        formula=(
            f"score = floor + ({top} - floor) sigmoid(eps + alpha ln N + beta ln L + gamma ln C"
            " + delta[task])"
        )
    )


#: Priors of the tolerance hinge: the drop per ln C past C*, and ln C* at 1B parameters, 16K.
TOLERANCE_PRIORS = {
    "gamma": "halfnormal(5)",
    "tau0": "normal(1, 2)",
    "tauN": "normal(0, 1)",
    "tauL": "normal(0, 1)",
}


def tolerance() -> Law:
    """Flat in C up to a tolerance C*(N, L), then declining: a smooth hinge in ln C."""
    hinge = "log(C) - tau0 - tauN * log(N / 1e9) - tauL * log(L / 16384)"
    return Law.from_string(
        f"eps + alpha * log(N) + beta * log(L) + delta[task] - gamma * softplus(4 * ({hinge})) / 4",
        name="sparse-tolerance",
        covariates=("N", "L", "C"),
        priors={**{k: v for k, v in SPARSE_PRIORS.items() if k != "gamma"}, **TOLERANCE_PRIORS},
        bounds={"gamma": (0.0, None)},
        link="logit",
        likelihood="binomial",
        reference={"task": "QuALITY"},
        citation=SPARSE_FRONTIER_CITATION,
        description=(
            "Compression costs nothing up to a tolerance C*, then accuracy falls by gamma per "
            "unit of ln C (on the logit scale); ln C* = tau0 + tauN ln(N / 1e9) + tauL "
            "ln(L / 16384), so how tolerance moves with model size and length (the study's "
            "findings) are parameters with posteriors. The hinge is a softplus of width 1/4 in ln C."
        ),
    ).with_options(
        formula=(
            "logit(score) = eps + alpha ln N + beta ln L + delta[task] - gamma hinge(ln C - ln C*),"
            " ln C* = tau0 + tauN ln(N/1e9) + tauL ln(L/16384)"
        )
    )


_REGISTRY: dict[str, Callable[[], Law]] = {
    "sparse-frontier": sparse_frontier,
    "sparse-frontier-pooled": lambda: sparse_frontier("partial"),
    "sparse-frontier-nc": lambda: _sparse_interaction("N"),
    "sparse-frontier-lc": lambda: _sparse_interaction("L"),
    "sparse-frontier-pd": sparse_frontier_pd,
    "chinchilla-form": chinchilla,
    "power-law": _power_law,
    "logistic-power": _logistic_power,
    "floor-ceiling": floor_ceiling,
    "floor-ceiling:chance": lambda: floor_ceiling("chance"),
    "floor-ceiling-tasks": lambda: floor_ceiling(per_task=True),
    "sparse-tolerance": tolerance,
}


_CARDS: dict[str, Callable[[], FitResult]] = {
    "sparse-frontier-v1:prefill": lambda: sparse_frontier_card("prefill"),
    "sparse-frontier-v1:decode": lambda: sparse_frontier_card("decode"),
    "chinchilla": _card_chinchilla,
    "chinchilla-epoch": _card_epoch,
}


def _card_factory(phase: str, axis: str) -> Callable[[], FitResult]:
    return lambda: sparse_frontier_card(phase, axis)


for _phase in ("prefill", "decode"):
    for _axis in ("model_size", "compression_ratio"):
        _CARDS[f"sparse-frontier-v1:{_phase}:{_axis}"] = _card_factory(_phase, _axis)


def law_names() -> list[str]:
    """Names of every built-in law form and published card."""
    return [*_REGISTRY, *_CARDS]


def is_card(name: str) -> bool:
    return name in _CARDS


def get_card(name: str) -> FitResult:
    """A published card (a fit with one draw) by name."""
    try:
        return _CARDS[name]()
    except KeyError:
        raise ExprError(f"unknown published card '{name}'; cards: {', '.join(_CARDS)}") from None


def get_law(name: str) -> Law:
    """A built-in law form by name; for a published card, the form it was fitted with."""
    if name in _CARDS:
        return _CARDS[name]().law
    for prefix, per_task in (("floor-ceiling:", False), ("floor-ceiling-tasks:", True)):
        if name.startswith(prefix) and name not in _REGISTRY:
            return floor_ceiling(name.split(":", 1)[1], per_task)
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ExprError(
            f"unknown law '{name}'; built-in laws: {', '.join(law_names())} "
            "(or give an expression such as 'E + A / N**alpha')"
        ) from None


def resolve_law(spec: str, **options: object) -> Law:
    """A built-in name, or an expression string parsed into a custom law."""
    if spec in _REGISTRY or spec in _CARDS:
        return get_law(spec)
    named = "-" in spec or ":" in spec or len(spec) > 1  # one letter may be a covariate alone
    if re.fullmatch(r"[A-Za-z][\w-]*(:[\w.-]+)*", spec) and named:
        return get_law(spec)  # looks like a name: report the unknown name, not a parse error
    return Law.from_string(spec, **options)  # type: ignore[arg-type]


__all__ = ["Prior", "get_card", "get_law", "is_card", "law_names", "resolve_law"]


def source(name: str) -> FitResult | Any:
    """A fit file or stacked fit file (.nc), or a published card by name."""
    if name.endswith(".nc") or Path(name).exists():
        return load_fit(name)
    return get_card(name)
