"""The records importers read from result files, as pydantic models.

Each field says what it must hold; `scalelaw.schema.field_problem` turns the first refusal into
the importers' one line (``field 'accuracy': 1.5 is above 1``), which the importer prefixes
with the file. Numbers are strict (JSON true and the text "100" are not numbers) and finite;
whole numbers must be exact as floats. Fields the records do not name are ignored: result files
carry much else.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Le, Lt
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from scalelaw.importers.common import WHOLE_LIMIT


def _whole(value: float) -> float:
    if not value.is_integer():
        raise PydanticCustomError("whole_number", "is not a whole number")
    if abs(value) > WHOLE_LIMIT:
        raise PydanticCustomError(
            "whole_range", "is out of range (whole numbers are read up to 2^53)"
        )
    return value


def _text(value: Any) -> Any:
    # YAML reads `data_dir: 4096` as a number; a flag or a list is still not text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _joined(value: Any) -> Any:
    # a needle depth may be listed: the run covered each
    if isinstance(value, list):
        return ",".join(str(d) for d in value)
    return None if value is None else str(value)


#: The metrics the study's tasks report, one per file.
METRICS = ("accuracy", "f1", "iou")

_Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
_Whole = Annotated[_Number, AfterValidator(_whole)]
Fraction = Annotated[_Number, Ge(0), Le(1)]
#: A field the file may leave out: None when absent, but a null is refused (not a number).
_Absent = Field(default=None)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SparseFrontierMetrics(_Record):
    """One ``evaluation_results_<samples>.json`` of the reference study: the task's one metric
    (the mean over samples), its per-sample variance, the sample count and the sparsity."""

    accuracy: Annotated[Fraction, _Absent]
    f1: Annotated[Fraction, _Absent]
    iou: Annotated[Fraction, _Absent]
    # scores lie in [0, 1], so their variance (ddof 1) is at most 1/2
    accuracy_variance: Annotated[Fraction, _Absent]
    f1_variance: Annotated[Fraction, _Absent]
    iou_variance: Annotated[Fraction, _Absent]
    total_samples: Annotated[_Whole, Ge(1)]
    average_attention_sparsity: Annotated[_Number, Ge(0), Lt(1)]
    # written only when the pipeline recorded output lengths
    average_output_tokens: Annotated[_Number, Ge(0), _Absent]
    max_output_tokens: Annotated[_Whole, Ge(0), _Absent]

    @model_validator(mode="before")
    @classmethod
    def _one_metric(cls, doc: Any) -> Any:
        """Exactly one metric, and its variance: a mix of question types does not say how
        many samples each covers."""
        if not isinstance(doc, dict):
            raise PydanticCustomError("metrics", "expected a JSON object of metrics")
        present = [m for m in METRICS if m in doc]
        if not present:
            expected = ", ".join(map(repr, METRICS))
            raise PydanticCustomError("metrics", f"no metric field (expected one of {expected})")
        if len(present) > 1:
            raise PydanticCustomError(
                "metrics",
                f"fields {' and '.join(map(repr, present))} are both present (a mix of "
                "question types); the file does not say how many samples each covers",
            )
        if f"{present[0]}_variance" not in doc:
            raise PydanticCustomError("metrics", f"field '{present[0]}_variance' is missing")
        return doc

    @property
    def metric(self) -> str:
        return next(m for m in METRICS if getattr(self, m) is not None)

    @property
    def score(self) -> float:
        return float(getattr(self, self.metric))

    @property
    def score_var(self) -> float:
        return float(getattr(self, f"{self.metric}_variance"))


_Text = Annotated[StrictStr, BeforeValidator(_text)]


class KvpressConfig(_Record):
    """A KVPress run's ``config.yaml``: the settings the importer reads (a null is left out)."""

    dataset: _Text | None = None
    data_dir: _Text | None = None
    model: _Text | None = None
    press_name: _Text | None = None
    compression_ratio: Annotated[_Number, Ge(0)] | None = None
    threshold: _Number | None = None
    head_compression_ratio: Fraction | None = None
    key_channel_compression_ratio: Fraction | None = None
    fraction: Fraction | None = None
    max_context_length: Annotated[_Whole, Ge(1)] | None = None
    query_aware: StrictBool | None = None
    # older KVPress wrote `compress_questions` for what is now `query_aware`
    compress_questions: StrictBool | None = None
    needle_depth: Annotated[str | None, BeforeValidator(_joined)] = None

    def settings(self) -> dict[str, Any]:
        """The settings given, under the importer's names."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "model": self.model,
            "press": self.press_name,
            "ratio": self.compression_ratio,
            "threshold": self.threshold,
            "head_compression_ratio": self.head_compression_ratio,
            "key_channel_compression_ratio": self.key_channel_compression_ratio,
            "fraction": self.fraction,
            "max_context_length": (
                None if self.max_context_length is None else int(self.max_context_length)
            ),
            "query_aware": (
                self.query_aware if self.query_aware is not None else self.compress_questions
            ),
            "needle_depth": self.needle_depth,
        }
        return {k: v for k, v in out.items() if v is not None}
