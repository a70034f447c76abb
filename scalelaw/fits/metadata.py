"""The schema of a fit file's metadata (the JSON in its root attributes), as pydantic models.

Values are read by code that formats, indexes and compares them, so a wrong type would surface
later as a traceback or a wrong number: each field declares what it must hold, and its
description is what the one-line refusal says it must be (``'meta.seed' must be a whole number
or null``). Fields are declared in the order their problems are reported. Keys the schema does
not name are kept: files written by a later version may add some. The reader hands on the JSON
itself; these models only check it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StrictBool, StrictStr
from pydantic_core import PydanticCustomError

_Float = Annotated[float, Strict()]  # strict: JSON true is not 1
Text = Annotated[StrictStr, Field(description="a text")]
OptionalText = Annotated[StrictStr | None, Field(description="a text or null")]
Number = Annotated[_Float | None, Field(description="a number or null")]
Whole = Annotated[Annotated[int, Strict()] | None, Field(description="a whole number or null")]
Texts = Annotated[list[StrictStr], Field(description="a list of texts")]
Numbers = Annotated[list[_Float], Field(description="a list of numbers")]
Object = Annotated[dict[str, Any], Field(description="an object")]
TextMap = Annotated[dict[str, StrictStr], Field(description="an object of texts")]
NumberMap = Annotated[dict[str, _Float | None], Field(description="an object of numbers")]


def _distinct(levels: list[str]) -> list[str]:
    if len(set(levels)) != len(levels):
        raise PydanticCustomError("distinct", "levels must be distinct")
    return levels


class _Meta(BaseModel):
    # strict: values keep the JSON's own types; extra keys: a later version may add fields
    model_config = ConfigDict(strict=True, extra="allow")


class ParamMeta(_Meta):
    """One parameter of the law: its name, prior, bounds and least-squares starts."""

    name: Text
    prior: Text = "auto"
    lower: Number = None
    upper: Number = None
    starts: Numbers = []


class LawMeta(_Meta):
    """The law's definition (`Law.to_dict`); its expression is parsed by the reader."""

    name: Text
    expr: Text
    covariates: Texts
    params: Annotated[
        list[ParamMeta],
        Field(description="a list of parameters (name, prior, lower, upper, starts)"),
    ]
    # absent from older files: the reader's defaults apply, but null is not a text
    link: Text = ""
    likelihood: Text = ""
    response: Text = ""
    pooling: Text = ""
    formula: Text = ""
    citation: Text = ""
    description: Text = ""
    transform: OptionalText = None
    reference: TextMap = {}


class DiagnosticsMeta(_Meta):
    """What the backend reported: convergence, warnings, counts and scores."""

    not_converged: Texts = []
    auto_priors: Texts = []
    warnings: Texts = []
    problems: Texts = []
    at_bounds: Texts = []
    r2: Number = None
    rhat_max: Number = None
    ess_bulk_min: Number = None
    cost: Number = None
    huber_delta: Number = None
    divergences: Whole = None
    chains: Whole = None
    draws: Whole = None
    tune: Whole = None
    starts: Whole = None
    refined: Whole = None
    reached_best: Whole = None
    bootstrap: Whole = None
    pareto_k_bad: Whole = None
    rhat: NumberMap = {}
    ess_bulk: NumberMap = {}
    retry: Annotated[dict[str, Any] | None, Field(description="an object or null")] = None
    loo_error: Text = ""


class RunMeta(_Meta):
    """Where the fit came from: the table, its filters and hash, the seed, held-out scores."""

    source: OptionalText = None
    data_hash: OptionalText = None
    counts: OptionalText = None
    phase: OptionalText = None
    aggregate: OptionalText = None
    seed: Whole = None
    rows: Whole = None
    where: Texts = []
    laws: Texts = []
    replicates: Annotated[StrictBool, Field(description="true or false")] = False
    column_map: TextMap = {}
    # a fit's held-out scores, or the slice a stack was weighted on
    holdout: Annotated[
        dict[str, Any] | StrictStr | None, Field(description="an object, a text or null")
    ] = None
    values: Object = {}
    scores: NumberMap = {}
    ranges: Annotated[
        dict[str, Annotated[list[_Float], Field(min_length=2, max_length=2)]],
        Field(description="an object of [smallest, largest] pairs"),
    ] = {}


class FitMeta(_Meta):
    """The metadata of one fit: its backend, law, group levels, diagnostics and provenance."""

    backend: Text
    law: Annotated[LawMeta, Field(description="an object")]
    levels: Annotated[
        dict[str, Annotated[list[StrictStr], AfterValidator(_distinct)]],
        Field(description="an object of lists of distinct texts"),
    ]
    diagnostics: Annotated[DiagnosticsMeta, Field(description="an object")] = DiagnosticsMeta()
    meta: Annotated[RunMeta, Field(description="an object")] = RunMeta()


class StackMeta(_Meta):
    """The root of a stacked fit: the weights of its laws (each law's fit is a group)."""

    weights: Numbers
    method: Text = ""
    meta: Annotated[RunMeta, Field(description="an object")] = RunMeta()
