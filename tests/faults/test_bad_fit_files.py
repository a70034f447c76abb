"""Damaged or hand-edited fit files are refused with one line naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xarray as xr
from typer.testing import CliRunner

from scalelaw.cli import app
from scalelaw.fits import FitOptions, fit, get_card, get_law, load_fit, predict_table, simulate
from scalelaw.fits.law import Law

runner = CliRunner()
POINT = "N=7e9,L=16384,C=2,task=VT"


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """Scores simulated from the sparse card on a grid of sizes, lengths, ratios and three tasks."""
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": length, "compression": c, "task": task}
            for n in (1.5e9, 7e9, 3.2e10)
            for length in (4096.0, 16384.0, 65536.0)
            for c in (1.0, 4.0, 16.0)
            for task in ("QuALITY", "SQuAD", "VT")
        ]
    )
    return simulate(get_card("sparse-frontier-v1:prefill"), grid, samples=100, seed=0)


def saved_fit(table: pl.DataFrame, law: Law, folder: Path) -> Path:
    result = fit(table, law, FitOptions(backend="lsq", bootstrap=5))
    return result.save(folder / "fit.nc")


@pytest.fixture(scope="module")
def fit_file(table: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A least-squares fit of the sparse law with per-task offsets (three tasks)."""
    return saved_fit(table, get_law("sparse-frontier"), tmp_path_factory.mktemp("fit"))


def damaged(
    fit_file: Path,
    tmp_path: Path,
    info: Callable[[dict[str, Any]], Any] = lambda i: i,
    tree: Callable[[Any], Any] = lambda t: t,
    name: str = "damaged.nc",
) -> Path:
    """A copy of the fit file with its metadata or its tree changed."""
    t = xr.open_datatree(fit_file, engine="h5netcdf")
    t.load()
    new = info(json.loads(t.attrs["scalelaw"]))
    t = tree(t)
    t.attrs = {**t.attrs, "scalelaw": new if isinstance(new, str) else json.dumps(new)}
    path = tmp_path / name
    t.to_netcdf(path, engine="h5netcdf")
    return path


def refused(path: Path, *naming: str) -> str:
    result = runner.invoke(app, ["predict", str(path), "--at", POINT])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    for name in naming:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def levels(change: Callable[[list[str]], list[str]]) -> Callable[[dict[str, Any]], Any]:
    def edit(info: dict[str, Any]) -> Any:
        info["levels"]["task"] = change(info["levels"]["task"])
        return info

    return edit


def test_the_intact_file_predicts(fit_file: Path) -> None:
    result = runner.invoke(app, ["predict", str(fit_file), "--at", POINT, "--format", "json"])
    assert result.exit_code == 0, result.output
    expected = predict_table(load_fit(fit_file), {"N": 7e9, "L": 16384.0, "C": 2.0, "task": "VT"})
    assert json.loads(result.stdout)[0]["mean"] == pytest.approx(expected["mean"][0])


@pytest.mark.parametrize(
    ("edit", "naming"),
    [
        (levels(lambda v: v[:-1]), "levels of 'task'"),
        (levels(lambda v: v[::-1]), "levels of 'task'"),
        (levels(lambda v: [v[0]] * len(v)), "'levels'"),
        (levels(lambda v: list(range(len(v)))), "'levels'"),
        (lambda i: {**i, "levels": {**i["levels"], "phase": ["prefill"]}}, "'phase'"),
        (lambda i: {**i, "levels": ["task"]}, "'levels'"),
        (lambda i: [i], "not an object"),
        (lambda i: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (lambda i: "{not json", "damaged scalelaw metadata"),
        (lambda i: {**i, "law": [1]}, "'law'"),
        (lambda i: {**i, "law": {**i["law"], "params": "abc"}}, "'law.params'"),
        (lambda i: {**i, "law": {**i["law"], "expr": "__import__('os')"}}, "__import__"),
        (lambda i: {**i, "law": {**i["law"], "expr": "eps + 1/0 * N"}}, "finite"),
        (lambda i: {**i, "backend": 5}, "'backend'"),
        (lambda i: {**i, "diagnostics": [1]}, "'diagnostics'"),
        (lambda i: {**i, "diagnostics": {"not_converged": "abc"}}, "not_converged"),
        (lambda i: {**i, "meta": {"seed": "zero"}}, "'meta.seed'"),
        (lambda i: {**i, "format": 99}, "format 99"),
        (lambda i: {**i, "kind": "stack", "weights": "abc"}, "'weights'"),
    ],
)
def test_damaged_metadata_is_refused(
    fit_file: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], naming: str
) -> None:
    refused(damaged(fit_file, tmp_path, info=edit), naming)


def _without(group: str) -> Callable[[Any], Any]:
    def drop(tree: Any) -> Any:
        return xr.DataTree.from_dict(
            {"/": tree.to_dataset()}
            | {f"/{name}": tree[name].to_dataset() for name in tree.children if name != group}
        )

    return drop


def _drop_variable(name: str) -> Callable[[Any], Any]:
    def drop(tree: Any) -> Any:
        tree["posterior"] = xr.DataTree(tree["posterior"].to_dataset().drop_vars(name))
        return tree

    return drop


def _set_draws(name: str, value: float) -> Callable[[Any], Any]:
    def edit(tree: Any) -> Any:
        data = tree["posterior"].to_dataset()
        data[name] = data[name].copy(data=data[name].values * 0 + value)
        tree["posterior"] = xr.DataTree(data)
        return tree

    return edit


def _levels_without_coordinate_reordered(tree: Any) -> Any:
    data = tree["posterior"].to_dataset().drop_vars("delta_level")
    tree["posterior"] = xr.DataTree(data)
    return tree


@pytest.mark.parametrize(
    ("tree", "naming"),
    [
        (_without("posterior"), "no posterior group"),
        (_drop_variable("gamma"), "'gamma'"),
        (_set_draws("gamma", float("nan")), "'gamma' holds NaN or infinite draws"),
        (_set_draws("eps", float("inf")), "'eps' holds NaN or infinite draws"),
        (_levels_without_coordinate_reordered, "levels of 'task'"),
    ],
)
def test_damaged_groups_are_refused(
    fit_file: Path, tmp_path: Path, tree: Callable[[Any], Any], naming: str
) -> None:
    refused(damaged(fit_file, tmp_path, tree=tree), naming)


def test_levels_reordered_with_their_coordinate_removed_are_refused(
    fit_file: Path, tmp_path: Path
) -> None:
    # the file: without the coordinate to check against, reversed levels swapped the
    # tasks' offsets (predict gave VT what NIAH scores); each damage alone is refused above
    path = damaged(
        fit_file,
        tmp_path,
        info=levels(lambda v: v[::-1]),
        tree=_levels_without_coordinate_reordered,
    )
    refused(path, "levels of 'task'")


def metadata_of(other: Path) -> Callable[[dict[str, Any]], Any]:
    """The metadata (law, levels, diagnostics) of another fit file, in place of a file's own."""

    def swap(_: dict[str, Any]) -> Any:
        with xr.open_datatree(other, engine="h5netcdf") as t:
            return json.loads(t.attrs["scalelaw"])

    return swap


def test_metadata_swapped_with_a_law_with_one_more_parameter_is_refused(
    fit_file: Path, table: pl.DataFrame, tmp_path: Path
) -> None:
    # sparse-frontier-nc is sparse-frontier plus kappa: the smaller law's metadata on the larger
    # posterior took kappa for an old file's noise (refused by chance, for a negative draw)
    other = saved_fit(table, get_law("sparse-frontier-nc"), tmp_path)
    line = refused(damaged(other, tmp_path, info=metadata_of(fit_file), name="a-on-b.nc"))
    assert line.endswith(
        "damaged fit (the posterior has 'kappa', which law 'sparse-frontier' does not declare)"
    ), line
    refused(damaged(fit_file, tmp_path, info=metadata_of(other), name="b-on-a.nc"), "'kappa'")


def test_metadata_swapped_with_a_law_with_another_group_effect_is_refused(
    fit_file: Path, table: pl.DataFrame, tmp_path: Path
) -> None:
    # floor-ceiling-tasks has the sparse law's parameters and a per-task ceiling besides
    other = saved_fit(table, get_law("floor-ceiling-tasks"), tmp_path)
    refused(
        damaged(other, tmp_path, info=metadata_of(fit_file)),
        "the posterior has 'ceiling', which law 'sparse-frontier' does not declare",
    )


def test_metadata_swapped_with_a_likelihood_without_its_noise_is_refused(
    fit_file: Path, table: pl.DataFrame, tmp_path: Path
) -> None:
    # the same law overdispersed: its posterior holds the beta-binomial's kappa, which a
    # binomial law would ignore, predicting too narrow intervals
    law = get_law("sparse-frontier").with_options(likelihood="beta_binomial")
    other = saved_fit(table, law, tmp_path)
    refused(
        damaged(other, tmp_path, info=metadata_of(fit_file)),
        "the posterior has 'obs_kappa', which law 'sparse-frontier' does not declare",
    )


def test_a_file_that_is_not_netcdf_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fit.nc"
    path.write_text("not a fit")
    refused(path, "not a readable NetCDF fit file")


def test_draws_outside_a_parameters_bounds_are_refused(tmp_path: Path) -> None:
    from scalelaw.fits import FitResult

    card = get_card("sparse-frontier-v1:prefill")
    law = get_law("floor-ceiling:0.25")
    path = FitResult.card(law, {**card.meta["values"], "ceiling": 0.85}).save(tmp_path / "f.nc")
    assert load_fit(path).draws["ceiling"].max() == pytest.approx(0.85)
    refused(damaged(path, tmp_path, tree=_set_draws("ceiling", 1e12)), "'ceiling'", "bounds")


def test_draws_a_thousand_prior_widths_out_are_refused(tmp_path: Path) -> None:
    """eps has no bounds; 1e12 on the logit scale predicts 1.0 everywhere, so it is refused as
    far beyond anything its prior (normal(0, 50)) lets a sampler reach; 1e3 still loads."""
    from scalelaw.fits import FitResult

    card = get_card("sparse-frontier-v1:prefill")
    path = FitResult.card(get_law("sparse-frontier"), card.meta["values"]).save(tmp_path / "f.nc")
    refused(damaged(path, tmp_path, tree=_set_draws("eps", 1e12)), "'eps'", "prior")
    plausible = damaged(path, tmp_path, tree=_set_draws("eps", 1e3))
    assert float(load_fit(plausible).draws["eps"].max()) == pytest.approx(1e3)


def test_a_plain_hdf5_file_is_one_line_without_warnings(tmp_path: Path) -> None:
    import warnings

    import h5py
    import numpy as np

    path = tmp_path / "plain.nc"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["predict", str(path), "--at", POINT])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {path}: not a scalelaw fit (no 'scalelaw' attribute)"
    assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("sparse-frontier", {}),  # linear: standardised slopes and a centred intercept
        ("sparse-frontier", {"pooling": "partial"}),  # a pooled effect's scale and offsets
        ("floor-ceiling:0.25", {}),  # non-linear: a fixed effect's free levels
    ],
)
def test_every_variable_the_sampler_keeps_is_known_to_the_file_check(
    table: pl.DataFrame, tmp_path: Path, name: str, options: dict[str, str]
) -> None:
    # the file check allows only the auxiliaries it lists (result.AUXILIARIES); a new one
    # that the Bayesian backend draws must be listed there, or its fits never load again
    law = get_law(name).with_options(**options)
    tiny = FitOptions(backend="bayes", draws=100, tune=100, chains=1, seed=0)
    path = fit(table, law, tiny).save(tmp_path / "fit.nc")
    assert load_fit(path).law.pooling == law.pooling
