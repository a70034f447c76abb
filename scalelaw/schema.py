"""pydantic's validation errors as one line in the project's words.

What users and files hand over (a grid TOML, a fit file's metadata, an importer's records) is
declared as pydantic models; a refusal must still read as one line naming the key and what it
must hold, not pydantic's multi-line report. The grid, the fit file and the importers each pick
their own wording, from the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]


def first_error(
    exc: ValidationError, rank: Callable[[ErrorDetails], Any] | None = None
) -> tuple[ErrorDetails, list[ErrorDetails]]:
    """The error to report (the first by `rank`, else in field order) and all of them, so a
    message can gather its siblings (every unknown key of one table at once)."""
    errors = exc.errors()
    if rank is not None:
        errors = sorted(errors, key=rank)
    return errors[0], errors


def unknown_keys(err: ErrorDetails, errors: Sequence[ErrorDetails]) -> str:
    """Every unknown key of the table `err` found one in, sorted and joined."""
    loc = err["loc"]
    same = [e["loc"][-1] for e in errors if e["type"] == err["type"] and e["loc"][:-1] == loc[:-1]]
    return ", ".join(sorted(map(str, same)))


def field_at(model: type[BaseModel], loc: Loc) -> tuple[str, FieldInfo | None, bool]:
    """The dotted name of the deepest model field on `loc`, that field, and whether `loc` ends
    there. Items of a list or a mapping, and the branches of a union, are reported as the field
    that holds them: its description says what each must be."""
    names: list[str] = []
    info: FieldInfo | None = None
    current: Any = model
    for i, part in enumerate(loc):
        fields = getattr(current, "model_fields", None) if isinstance(current, type) else None
        if not isinstance(part, str) or fields is None or part not in fields:
            return ".".join(names), info, False
        names.append(part)
        info = fields[part]
        current = _model_of(info.annotation)
        if current is None and i + 1 < len(loc):
            return ".".join(names), info, False
    return ".".join(names), info, True


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or as an optional."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def described(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first problem as ``'key.sub' is missing`` or ``'key.sub' must be <description>``,
    the description being the field's own (what a value of it must be)."""
    err, _ = first_error(exc)
    name, info, whole = field_at(model, err["loc"])
    if not name:  # a rule across keys, raised in its own words
        return err["msg"]
    if err["type"] == "missing" and whole:
        return f"'{name}' is missing"
    return f"'{name}' must be {info.description if info and info.description else 'valid'}"


def shown(value: Any) -> str:
    """`value` for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _number_type(err: ErrorDetails) -> str:
    got = err["input"]
    if isinstance(got, int) and not isinstance(got, bool):  # an int beyond any float
        return f"{shown(got)} is out of range"
    return f"{shown(got)} is not a number"


#: pydantic's error type -> what a value of a record field is, in the importers' words.
_PHRASES: dict[str, Callable[[ErrorDetails], str]] = {
    "float_type": _number_type,
    "int_type": _number_type,
    "finite_number": lambda e: f"{shown(e['input'])} is not finite",
    "greater_than_equal": lambda e: f"{shown(e['input'])} is below {_bound(e['ctx']['ge'])}",
    "less_than_equal": lambda e: f"{shown(e['input'])} is above {_bound(e['ctx']['le'])}",
    "less_than": lambda e: f"{shown(e['input'])} must be below {_bound(e['ctx']['lt'])}",
    "bool_type": lambda e: f"{shown(e['input'])} is not true or false",
    "string_type": lambda e: f"{shown(e['input'])} is not text",
}


def field_problem(exc: ValidationError) -> str:
    """The first problem of a record as ``field 'name': <value> is ...`` (or ``field 'name' is
    missing``); a rule across fields speaks for itself."""
    err, _ = first_error(exc)
    loc = [str(part) for part in err["loc"]]
    if not loc:
        return err["msg"]
    name = ".".join(loc)
    if err["type"] == "missing":
        return f"field '{name}' is missing"
    phrase = _PHRASES.get(err["type"])
    if phrase is None:  # a check of our own, raised in its own words
        return f"field '{name}': {shown(err['input'])} {err['msg']}"
    return f"field '{name}': {phrase(err)}"
