"""Shared fixtures: reference data beside the repository, a --runslow switch, the fitting data
that the fitting API and the fitting commands are both tested on, and the planning case that
the planning API and the `plan` command are both tested on, and a loader for the scripts in
benchmarks/ (not a package)."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import polars as pl

    from scalelaw.fits import FitResult

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Load `benchmarks/NAME.py` as a module (skip where benchmarks/ is not beside the tests)."""

    def load(name: str) -> ModuleType:
        path = REPO / "benchmarks" / f"{name}.py"
        if not path.exists():
            pytest.skip("benchmarks/ not next to the tests")
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data folder (`shared/data` next to the repository)."""
    for candidate in (REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    pytest.skip("reference data (shared/data) not found next to the repository")


# Fitting data that tests/fits and tests/commands both fit, each module its own copy.


@pytest.fixture(scope="module")
def card() -> FitResult:
    """The study's published prefill card."""
    from scalelaw.fits import get_card

    return get_card("sparse-frontier-v1:prefill")


@pytest.fixture(scope="module")
def sim(card: FitResult) -> pl.DataFrame:
    """Accuracy simulated from `card` on the study's grid."""
    from scalelaw.fits import simulate

    return simulate(card, "paper", samples=100, seed=0)


@pytest.fixture(scope="module")
def chinchilla_csv(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Epoch AI's digitised Chinchilla points as the README reads them (D = FLOP / 6N, the five
    highest losses dropped, as Epoch did)."""
    import polars as pl

    df = pl.read_csv(shared_data / "external" / "epoch_chinchilla.csv")
    df = df.with_columns((pl.col("Training FLOP") / (6 * pl.col("Model Size"))).alias("D"))
    df = df.sort("loss", descending=True).slice(5).select("Model Size", "D", "loss")
    path = tmp_path_factory.mktemp("chinchilla") / "chinchilla.csv"
    df.write_csv(path)
    return path


@pytest.fixture(scope="module")
def loss_table() -> pl.DataFrame:
    """Losses of E + A / N**alpha (E = 1.8, A = 400, alpha = 0.33), the power-law term scaled by
    log-normal noise (sigma 0.03), four rows per size."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    n = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9, 3e9], 4)
    loss = 1.8 + 400 / n**0.33 * np.exp(rng.normal(0, 0.03, n.size))
    return pl.DataFrame({"N": n, "loss": loss})


@pytest.fixture(scope="module")
def saturating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Accuracy that saturates at 0.8: a log-linear law overshoots the largest model."""
    import polars as pl

    from scalelaw.fits import FitResult, get_law, simulate

    card = FitResult.card(
        get_law("floor-ceiling:0.25"),
        {
            "ceiling": 0.8,
            "eps": -30.0,
            "alpha": 1.6,
            "beta": -0.3,
            "gamma": -1.0,
            "delta": {"all": 0.0},
        },
    )
    grid = pl.DataFrame(
        [
            {"params": n, "seq_len": float(length), "compression": c, "task": "all"}
            for n in (5e8, 1.5e9, 4e9, 1.2e10, 3.6e10)
            for length in (4096, 16384)
            for c in (1, 2, 4, 8, 16, 32)
        ]
    )
    path = tmp_path_factory.mktemp("stack") / "saturating.csv"
    simulate(card, grid, samples=960, seed=0).write_csv(path)
    return path


#: Candidates for planning: 7B and 72B at 16K and 128K, vertical-slash, two tasks.
PLANNING_GRID: dict[str, Any] = {
    "name": "candidates",
    "seed": 0,
    "samples": 20,
    "lengths": [16384, 131072],
    "compression": [1, 2, 2.5, 10],
    "models": ["Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-72B-Instruct"],
    "dtype": "bfloat16",
    "methods": {"vertical-slash": {}},
    "tasks": {"variable-tracking": {}, "common-words": {}},
}


@pytest.fixture(scope="module")
def check_doc_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/check.md's worked example: a floor of 0.25 and a ceiling of 0.85 around a
    log-linear trend, 960 trials a row, one task; laws that differ when held out."""
    import numpy as np
    import polars as pl
    from scipy.special import expit

    rng = np.random.default_rng(0)
    grid = pl.DataFrame(
        {
            "params": np.repeat([5e8, 1.5e9, 4e9, 1.2e10, 3.6e10], 12),
            "seq_len": np.tile(np.repeat([4096.0, 16384.0], 6), 5),
            "compression": np.tile([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 10),
        }
    )
    eta = (
        3.0
        + 1.2 * np.log(grid["params"] / 3.6e10)
        - 0.3 * np.log(grid["seq_len"] / 4096)
        - 0.5 * np.log(grid["compression"])
    )
    k = rng.binomial(960, 0.25 + 0.6 * expit(eta.to_numpy()))
    path = tmp_path_factory.mktemp("check-doc") / "sat.csv"
    grid.with_columns(score=k / 960, samples=960, task=pl.lit("all")).write_csv(path)
    return path


@pytest.fixture(scope="session")
def planning_fit() -> Any:
    """A least-squares fit (bootstrap draws stand in for the posterior) on data simulated from
    the study's prefill card at two sizes and two short lengths, so the decision at 128K
    between a dense 32B and a sparse 72B is still open."""
    import polars as pl

    from scalelaw.fits import FitOptions, fit, get_card, get_law, paper_grid, simulate

    card = get_card("sparse-frontier-v1:prefill")
    design = paper_grid(["VT", "CWE", "StoryRetrieval"]).filter(
        pl.col("compression").is_in([1.0, 2.0, 5.0, 20.0]),
        pl.col("seq_len") <= 32768,
        pl.col("params") < 2e10,
    )
    data = simulate(card, design, samples=20, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(
            data, get_law("sparse-frontier"), FitOptions(backend="lsq", bootstrap=100, starts=1024)
        )


@pytest.fixture(scope="session")
def planning_fit_file(planning_fit: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(planning_fit.save(tmp_path_factory.mktemp("plan") / "fit.nc"))


@pytest.fixture(scope="session")
def planning_grid() -> dict[str, Any]:
    """The planning candidates as a grid dictionary (shared: do not change it)."""
    return PLANNING_GRID


@pytest.fixture
def planning_grid_file(tmp_path: Path) -> Path:
    """The candidates as the grid TOML that `scalelaw plan --candidates` reads."""
    path = tmp_path / "candidates.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in PLANNING_GRID.items() if not isinstance(v, dict)]
    for table in ("methods", "tasks"):
        lines.append(f"[{table}]")
        lines += [f"{name} = {{}}" for name in PLANNING_GRID[table]]
    path.write_text("\n".join(lines) + "\n")
    return path
