"""Issue 20's probe list kept as a regression suite, and the loaders of user input fuzzed.

`PROBES` holds one entry per reproduction of the issue that the command line can replay in a
few seconds: how to set the bad input up in a fresh folder, the arguments, the exit status (2:
refused) and a fragment of the one `error:` line. The reproductions that need a real sweep
(a deleted manifest, a full disk, two sweeps at once, labels off by 27%) or a Ray cluster are
replayed by `test_store_faults.py`, `test_label_tolerance.py` and `test_ray_faults.py`.

The fuzz tests throw random bytes, random nested structures and random text (rich markup such as
`[/]`, emoji codes such as `:smile:`) at the table loader, the grid loader, the law parser and
the fit-file loader: each either succeeds or raises the project's own error (a `ScalelawError`)
with a one-line message, within a deadline.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.errors import ScalelawError

# a probe that hangs fails instead of stalling the run
pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).parent


def sibling(name: str) -> ModuleType:
    """Another test module of this folder, for its helpers (these tests are not a package)."""
    key = f"_faults_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


bad_input = sibling("test_bad_input")
HEADER, ROWS, CARD, POINT = bad_input.HEADER, bad_input.ROWS, bad_input.CARD, bad_input.POINT
runner = CliRunner()


# ---- the probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One reproduction: `setup(tmp)` makes the bad input and returns the command line."""

    name: str
    setup: Callable[[Path], list[str]]
    #: a fragment of the one error line; `{tmp}` is the probe's folder
    naming: str
    exit_code: int = 2
    needs: str | None = None  # a module the probe cannot run without


def _table(tmp: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _fit(tmp: Path, *law: str) -> list[str]:
    return ["fit", str(_table(tmp, HEADER + ROWS)), "--backend", "lsq", *law]


GRID = """
name = "probe"
samples = 1
max_new_tokens = 2
lengths = [{length}]
compression = [1]
models = ["tiny-llama"]
methods = ["dense"]
tasks = ["niah-multikey"]
"""


def _measure(tmp: Path, out: str, length: int = 256) -> list[str]:
    grid = tmp / "grid.toml"
    grid.write_text(GRID.format(length=length))
    return ["measure", str(grid), "--out", str(tmp / out), "-q"]


def _store(out: Path) -> None:
    """A store at `out` holding one finished configuration."""
    from scalelaw.measure.store import Record, Store

    row = {"config_id": "c0", "compute_id": "u0", "seq_len": 256, "compression": 1.0}
    with Store(out) as store:
        store.append(Record("u0", [row], [{"compute_id": "u0", "sample": 0, "score": 1.0}]))


def _out_is_another_stores_predictions(tmp: Path) -> list[str]:
    _store(tmp / "x.parquet")
    (tmp / "x.predictions.parquet").unlink()  # even before that store wrote its predictions
    return _measure(tmp, "x.predictions.parquet")


def _predictions_are_another_stores_table(tmp: Path) -> list[str]:
    _store(tmp / "x.predictions.parquet")
    return _measure(tmp, "x.parquet")


def _fifo(tmp: Path, name: str) -> Path:
    path = tmp / name
    os.mkfifo(path)
    return path


def _card_fit(tmp: Path, value: float) -> list[str]:
    """The sparse card saved as a fit file, then one parameter's draws set to `value`."""
    from scalelaw.fits import FitResult, get_card, get_law

    fits = sibling("test_bad_fit_files")
    card = get_card("sparse-frontier-v1:prefill")
    law = get_law("floor-ceiling:0.25")
    path = FitResult.card(law, {**card.meta["values"], "ceiling": 0.85}).save(tmp / "f.nc")
    bad = fits.damaged(path, tmp, tree=fits._set_draws("ceiling", value))
    return ["predict", str(bad), "--at", fits.POINT]


def _plain_hdf5(tmp: Path) -> list[str]:
    import h5py
    import numpy as np

    path = tmp / "plain.nc"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    return ["predict", str(path), "--at", POINT]


def _kvpress(tmp: Path, **files: str | None) -> list[str]:
    hostile = sibling("test_hostile_imports")
    hostile.kv_run(tmp / "runs", **files)
    return ["import", "kvpress", str(tmp / "runs"), "--out", str(tmp / "t.parquet")]


def _kvpress_fifo(tmp: Path) -> list[str]:
    args = _kvpress(tmp, predictions=None)
    hostile = sibling("test_hostile_imports")
    os.mkfifo(tmp / "runs" / hostile.RUN / "predictions.csv")
    return args


def _study(tmp: Path, text: str | None = None, **fields: object) -> list[str]:
    hostile = sibling("test_hostile_imports")
    hostile.study_file(tmp / "study", text, **fields)
    return ["import", "sparse-frontier", str(tmp / "study"), "--out", str(tmp / "t.parquet")]


def _nul_table(tmp: Path) -> list[str]:
    path = tmp / "nul.csv"
    with open(path, "wb") as fh:  # a sparse file: 64 MiB of NUL bytes on no disk
        fh.truncate(64 << 20)
    return ["fit", str(path), "--backend", "lsq"]


def _yaml_deep(depth: int) -> str:
    hostile = sibling("test_hostile_imports")
    return hostile.config() + "extra: " + "[" * depth + "]" * depth + "\n"


PROBES = [
    # data or work lost
    Probe("out-is-another-stores-predictions", _out_is_another_stores_predictions,
          "is the predictions file of the store x.store/", needs="torch"),
    Probe("predictions-are-another-stores-table", _predictions_are_another_stores_table,
          "x.predictions.parquet is the table of another measurement store", needs="torch"),
    Probe("law-parameter-chain", lambda t: _fit(t, "--law", "E + chain / N**alpha"),
          "'chain' and 'draw' name the posterior's own dimensions"),
    Probe("law-parameter-draw", lambda t: _fit(t, "--law", "E + draw / N**alpha"), "['draw']"),
    Probe("law-parameter-level", lambda t: _fit(t, "--law", "E + delta_level / N**alpha"),
          "names ending in '_level'"),
    # wrong results, silently
    Probe("duplicate-csv-column",
          lambda t: ["fit", str(_table(t, HEADER.strip() + ",compression\n"
                                       + "7e9,16384,1,QuALITY,80,100,4\n")), "--backend", "lsq"],
          "{tmp}/t.csv: column 'compression' appears more than once"),
    Probe("fit-draws-nan", lambda t: _card_fit(t, math.nan), "'ceiling'"),
    Probe("fit-draws-inf", lambda t: _card_fit(t, math.inf), "'ceiling'"),
    Probe("fit-draws-1e12", lambda t: _card_fit(t, 1e12), "bounds"),
    Probe("grid-length-zero", lambda t: _measure(t, "r.parquet", length=0),
          "'lengths' holds 0", needs="torch"),
    Probe("repeated-key-at", lambda t: ["predict", CARD, "--at", "N=7e9,N=8e9,L=16384,C=2,task=VT"],
          "--at: 'N' is given twice"),
    Probe("repeated-key-plan",
          lambda t: ["plan", CARD, "-c", "g.toml", "-t", "L=128K,L=64K", "--gpu-hours", "1"],
          "L is given twice"),
    Probe("law-groups-by-response",
          lambda t: _fit(t, "--law", "E + A / N**alpha + delta[correct]", "--covariates", "N"),
          "'delta[correct]' groups by the response column"),
    Probe("predict-length-zero", lambda t: ["predict", CARD, "--at", "N=7e9,L=0,C=2,task=VT"],
          "column 'seq_len'"),
    # hangs and tracebacks
    Probe("billion-laughs-config",
          lambda t: _kvpress(t, config=sibling("test_hostile_imports").LAUGHS),
          "aliases and anchors are not accepted"),
    Probe("fifo-fit-file", lambda t: ["predict", str(_fifo(t, "f.nc")), "--at", POINT],
          "not a regular file"),
    Probe("fifo-table", lambda t: ["fit", str(_fifo(t, "t.csv"))], "not a regular file"),
    Probe("fifo-result-file", _kvpress_fifo, "not a regular file"),
    Probe("deep-json-study", lambda t: _study(t, "[" * 100_000 + "]" * 100_000),
          "nested deeper than 64 levels"),
    Probe("deep-yaml-config", lambda t: _kvpress(t, config=_yaml_deep(10_000)),
          "nested deeper than 64 levels"),
    Probe("study-number-1e300", lambda t: _study(t, total_samples=1e300), "total_samples"),
    Probe("study-number-30-digits", lambda t: _study(t, total_samples=10**29), "total_samples"),
    Probe("nul-bytes-table", _nul_table, "byte 1 is a NUL byte"),
    Probe("markup-task", lambda t: ["frontier", CARD, "--task", "[/]"], "task '[/]' is not a task"),
    Probe("emoji-code-file-name", lambda t: ["fit", str(t / "a:-1:b.csv")],
          "{tmp}/a:-1:b.csv: file not found"),
    Probe("smile-file-name", lambda t: ["fit", str(t / ":smile:.csv")], ":smile:.csv"),
    Probe("markup-file-name", lambda t: ["fit", str(t / "QA [v2].csv")], "QA [v2].csv"),
    Probe("kernels-length-1e12", lambda t: ["kernels", "check", "--length", "1000000000000"],
          "--length 1000000000000"),
    Probe("plain-hdf5-fit", _plain_hdf5, "not a scalelaw fit", needs="h5py"),
]  # fmt: skip


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe(probe: Probe, tmp_path: Path) -> None:
    if probe.needs:
        pytest.importorskip(probe.needs)
    args = probe.setup(tmp_path)
    start = time.monotonic()
    result = runner.invoke(app, args)
    assert time.monotonic() - start < 10, "the probe took 10 s or more"
    output = result.stdout + result.stderr
    assert result.exit_code == probe.exit_code, (result.exit_code, output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no exception escaped
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert probe.naming.format(tmp=tmp_path) in lines[0], lines[0]


def test_every_probe_has_its_own_name() -> None:
    assert len({p.name for p in PROBES}) == len(PROBES)


# ---- fuzz ---------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=2000,  # ms per example: a loader that hangs fails here
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: text that rich would read as markup or emoji codes, mixed with the rest of unicode
MARKUP = st.sampled_from(["[/]", "[bold]", "[/bold]", ":smile:", ":-1:", "[", "]", "\\[", "[v2]"])
TEXT = st.lists(st.one_of(MARKUP, st.text(max_size=8)), max_size=6).map("".join)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)


def _breaks_lines(given: Any) -> bool:
    """Whether any text in `given` (bytes read either way) holds a line break of its own."""
    if isinstance(given, bytes):
        return _breaks_lines(given.decode("utf-8", "replace")) or _breaks_lines(
            given.decode("latin-1")
        )
    if isinstance(given, str):
        return len(("x" + given + "x").splitlines()) > 1
    if isinstance(given, dict):
        return any(_breaks_lines(k) or _breaks_lines(v) for k, v in given.items())
    if isinstance(given, list | tuple):
        return any(_breaks_lines(v) for v in given)
    return False


def one_line_own_error(call: Callable[[], Any], given: Any) -> None:
    """`call()` succeeds, or raises a ScalelawError whose message is one non-empty line.

    A line break inside the user's own text (a column named "a\\nb") may be quoted in the
    message as it is; the command line prints every message on one line.
    """
    try:
        call()
    except ScalelawError as exc:
        text = str(exc)
        assert text.strip(), repr(exc)
        assert "Traceback" not in text, text
        if not _breaks_lines(given):
            assert len(text.splitlines()) == 1, repr(text)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet", ".jsonl"]))
def test_fuzz_table_loader_with_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    from scalelaw.data import load_table

    path = _write(tmp_path, "t" + suffix, data)
    one_line_own_error(lambda: load_table(path), data)


CELL = st.one_of(
    TEXT,
    st.sampled_from(["7e9", "16384", "1", "2", "80", "100", "", "nan", "inf", "-1", "1e300"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)


@FUZZ
@given(
    header=st.lists(
        st.one_of(st.sampled_from(["params", "seq_len", "compression", "task", "correct"]), TEXT),
        min_size=1,
        max_size=7,
    ),
    rows=st.lists(st.lists(CELL, min_size=1, max_size=7), max_size=5),
)
def test_fuzz_table_loader_with_random_csv(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    import csv
    import io

    from scalelaw.data import load_table

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path = _write(tmp_path, "t.csv", buffer.getvalue().encode("utf-8", "surrogatepass"))
    one_line_own_error(lambda: load_table(path), [header, rows])


@FUZZ
@given(st.lists(st.dictionaries(TEXT, SCALARS, max_size=6), max_size=4))
def test_fuzz_table_loader_with_random_json_lines(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    from scalelaw.data import load_table

    text = "".join(json.dumps(r) + "\n" for r in records)
    path = _write(tmp_path, "t.jsonl", text.encode("utf-8", "surrogatepass"))
    one_line_own_error(lambda: load_table(path), records)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_grid_loader_with_random_bytes(tmp_path: Path, data: bytes) -> None:
    from scalelaw.measure.grid import load_grid

    path = _write(tmp_path, "grid.toml", data)
    one_line_own_error(lambda: load_grid(path), data)


GRID_KEYS = st.sampled_from(
    ["name", "seed", "samples", "max_new_tokens", "lengths", "compression", "models", "methods",
     "tasks", "compression_tolerance"]
)  # fmt: skip


@FUZZ
@given(st.dictionaries(st.one_of(GRID_KEYS, TEXT), NESTED, max_size=8))
def test_fuzz_grid_loader_with_random_structures(data: dict[str, Any]) -> None:
    from scalelaw.measure.grid import parse_grid

    one_line_own_error(lambda: parse_grid(data, "grid.toml"), data)


@FUZZ
@given(st.one_of(TEXT, st.text(alphabet=string.printable, max_size=40)))
def test_fuzz_law_parser_with_random_text(text: str) -> None:
    from scalelaw.fits import Law

    one_line_own_error(lambda: Law.from_string(text), text)
    one_line_own_error(lambda: Law.from_string("E + A / N**alpha", covariates=(text,)), text)


@FUZZ
@given(data=st.binary(max_size=400), head=st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"CDF\x01"]))
def test_fuzz_fit_file_loader_with_random_bytes(tmp_path: Path, data: bytes, head: bytes) -> None:
    from scalelaw.fits import load_fit

    path = _write(tmp_path, "f.nc", head + data)
    one_line_own_error(lambda: load_fit(path), data)


@pytest.fixture(scope="module")
def card_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scalelaw.fits import FitResult, get_card, get_law

    card = get_card("sparse-frontier-v1:prefill")
    law = get_law("floor-ceiling:0.25")
    path = tmp_path_factory.mktemp("card") / "card.nc"
    return FitResult.card(law, {**card.meta["values"], "ceiling": 0.85}).save(path)


# one NetCDF written per example: no deadline, the test's timeout stops a hang
@settings(FUZZ, max_examples=25, deadline=None)
@given(st.one_of(NESTED, st.dictionaries(st.sampled_from(["law", "levels", "x"]), NESTED)))
def test_fuzz_fit_file_loader_with_random_metadata(
    tmp_path: Path, card_file: Path, meta: Any
) -> None:
    from scalelaw.fits import load_fit

    fits = sibling("test_bad_fit_files")
    text = json.dumps(meta, allow_nan=True, ensure_ascii=False)
    name = (
        f"f{len(list(tmp_path.iterdir()))}.nc"  # a file a failed read may still hold is not reused
    )
    path = fits.damaged(card_file, tmp_path, info=lambda _: text, name=name)
    one_line_own_error(lambda: load_fit(path), meta)


@settings(FUZZ, max_examples=25)
@given(st.one_of(TEXT, MARKUP))
def test_fuzz_user_text_on_the_command_line_is_printed_as_typed(text: str) -> None:
    if not text.strip() or "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return  # not something a shell can pass
    result = runner.invoke(app, ["frontier", CARD, "--task", text])
    assert result.exit_code in {0, 2}, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        if text.isprintable():
            assert text in lines[0], (text, lines[0])  # no markup or emoji code taken
