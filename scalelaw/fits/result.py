"""A fitted law: parameter draws, diagnostics and provenance, saved as one NetCDF file.

The file is the ArviZ DataTree of the fit (posterior, sample stats, log-likelihood; for least
squares the bootstrap replicates stand in for the posterior) with the law definition, a hash of
the data, the seed and package versions as JSON in the root attributes. Loading parses that JSON
and the law's expression string; it never unpickles or runs anything from the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scalelaw.errors import ScalelawError
from scalelaw.fits.law import Law

if TYPE_CHECKING:
    import polars

FORMAT_VERSION = 1
#: The likelihood's own parameters (sigma, nu, kappa, and tau for the lack of fit), stored beside
#: the law's in the posterior under prefixed names, so a law may have a parameter called sigma.
NOISE_PARAMS = ("sigma", "nu", "kappa", "tau")
NOISE_PREFIX = "obs_"
#: Which of them each likelihood has, as the backends draw them (`bayes._likelihood`,
#: `lsq.noise_at`); a binomial's spread is fixed by its counts.
LIKELIHOOD_NOISE: dict[str, tuple[str, ...]] = {
    "normal": ("sigma",),
    "student_t": ("sigma", "nu"),
    "binomial": (),
    "beta_binomial": ("kappa",),
    "logit_normal_binomial": ("tau",),
    "beta": ("kappa",),
}
#: Suffixes of what the Bayesian backend samples in place of a law parameter and keeps in the
#: posterior beside it (`scalelaw.fits.bayes`): a fixed group effect's levels other than the
#: pinned reference (`_free`); a partially pooled one's scale and standard offsets (`_sd`, `_z`);
#: a single value's standardised slope (`_std`) or centred intercept (`_centred`) in a linear law.
AUXILIARIES = {"fixed": ("_free",), "partial": ("_sd", "_z"), "single": ("_std", "_centred")}


def noise_name(name: str) -> str:
    """The stored (and PyMC) name of a likelihood parameter."""
    return NOISE_PREFIX + name


#: What a MISFIT headline suggests trying.
MISFIT_SUGGESTION = (
    "try --law auto (a family of forms, stacked), an overdispersed likelihood "
    "(--likelihood logit_normal_binomial for counts), or a form with per-task slopes"
)


def misfit_line(misfit: dict[str, Any]) -> str:
    """``MISFIT: <failed checks>; worst rows: ...; try ...``."""
    worst = misfit.get("worst_rows") or []
    return (
        "MISFIT: "
        + "; ".join(misfit.get("failed", []))
        + (f"; worst rows: {', '.join(worst[:3])}" if worst else "")
        + f"; {MISFIT_SUGGESTION}"
    )


class FitFileError(ScalelawError):
    """A fit file is missing, unreadable or not a scalelaw fit."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("scalelaw", "pymc", "nutpie", "arviz", "numpy", "scipy", "lmfit", "polars"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


@dataclass
class FitResult:
    """Parameter draws (n_draws leading) of a law, with the levels of its group effects."""

    law: Law
    backend: str
    draws: dict[str, np.ndarray]
    levels: dict[str, list[str]]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    point: dict[str, np.ndarray] | None = None
    idata: Any = None
    #: Draws of the likelihood's own parameters (sigma, nu, kappa), n_draws leading.
    noise: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def convergence(self) -> list[str]:
        """What failed: empty when the fit converged (see `fitting.convergence_problems`)."""
        return list(self.diagnostics.get("not_converged", []))

    @property
    def converged(self) -> bool:
        return not self.convergence

    def law_for_refit(self) -> Law:
        """The law as the user gave it: priors that were set from the data are unset again."""
        auto = set(self.diagnostics.get("auto_priors", []))
        return self.law.with_options(
            params=tuple(replace(p, prior=None) if p.name in auto else p for p in self.law.params)
        )

    @property
    def misfit(self) -> list[str]:
        """Posterior predictive checks that failed (`scalelaw.fits.misfit`); empty when none."""
        return list((self.diagnostics.get("misfit") or {}).get("failed", []))

    def headline(self) -> str | None:
        """``NOT CONVERGED: ...`` and/or ``MISFIT: ...`` when a diagnostic failed, else None."""
        parts = []
        if not self.converged:
            parts.append("NOT CONVERGED: " + "; ".join(self.convergence))
        if self.misfit:
            parts.append(misfit_line(self.diagnostics["misfit"]))
        return " | ".join(parts) or None

    @classmethod
    def card(cls, law: Law, values: dict[str, Any], **meta: Any) -> FitResult:
        """A published law card: fixed coefficients as a fit with one draw.

        Group values are mappings from level to value, e.g. ``{"delta": {"QuALITY": 0.0, ...}}``.
        """
        from scalelaw.fits.evaluate import card_draws, card_levels

        missing = set(law.param_names) - set(values)
        if missing:
            from scalelaw.fits.expr import ExprError

            raise ExprError(f"card '{law.name}' has no values for {sorted(missing)}")
        levels = card_levels(law, values)
        draws = card_draws(law, values, levels)
        return cls(
            law=law,
            backend="card",
            draws=draws,
            levels=levels,
            point=draws,
            meta={"card": True, "values": values, **meta},
        )

    @property
    def is_card(self) -> bool:
        return self.backend == "card"

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    def estimates(self) -> dict[str, np.ndarray]:
        """Best single estimates: the least-squares optimum, or posterior medians."""
        if self.point is not None:
            return self.point
        return {k: np.median(v, axis=0, keepdims=True) for k, v in self.draws.items()}

    def interval(self, name: str, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.quantile(self.draws[name], [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        return lo, hi

    # --- in a notebook -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"FitResult(law={self.law.name!r}, backend={self.backend!r}, "
            f"rows={self.meta.get('rows')}, converged={self.converged})"
        )

    def _row_names(self) -> list[str]:
        """One name per scalar parameter or group level, as `summary` and the CLI name them:
        ``alpha``, ``delta[QuALITY]``."""
        names = []
        for name in self.law.param_names:
            column = self.law.groups.get(name)
            if column is None:
                names.append(name)
            else:
                names += [f"{name}[{level}]" for level in self.levels[column]]
        return names

    @property
    def params(self) -> dict[str, float | dict[str, float]]:
        """The best single estimates (`estimates`): posterior medians, or the least-squares
        optimum; a group effect as ``{level: value}``, e.g. ``{"QuALITY": 0.0, "NIAH": 2.1}``."""
        out: dict[str, float | dict[str, float]] = {}
        for name, values in self.estimates().items():
            value = np.asarray(values, dtype=float)[0]
            column = self.law.groups.get(name)
            if column is None:
                out[name] = float(value)
            else:
                out[name] = dict(zip(self.levels[column], map(float, value), strict=True))
        return out

    def summary(self, prob: float = 0.9, ci_kind: str = "eti") -> polars.DataFrame:
        """One row per scalar parameter or group level (``delta[QuALITY]``), as a polars frame.

        Bayesian fits: ``median`` (the estimate the CLI prints), then the numbers of
        `arviz.summary` on the law's parameters: ``mean``, ``sd``, the central (``eti``) or
        highest-density (``hdi``) interval of probability `prob` as ``lower`` and ``upper``,
        ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``, ``mcse_sd``. A group's pinned
        reference level has no spread, so its ``r_hat`` is NaN.
        Least squares (and cards): ``estimate`` (the optimum), ``stderr`` (standard deviation
        of the bootstrap refits; null with fewer than two) and the central `prob` interval of
        the refits as ``lower`` and ``upper``.
        """
        import polars as pl

        if not 0 < prob < 1:
            raise ValueError(f"prob={prob!r}; give a probability between 0 and 1")
        if ci_kind not in ("eti", "hdi"):
            raise ValueError(f"ci_kind={ci_kind!r}; choose 'eti' or 'hdi'")
        names = self._row_names()
        best = self.estimates()
        est = np.concatenate([np.asarray(best[n], float).reshape(-1) for n in self.law.param_names])
        if self.backend == "bayes":
            table = self._arviz_summary(names, prob, ci_kind)
            lower, upper = (c for c in table.columns if c.endswith(("_lb", "_ub")))
            return pl.DataFrame(
                {
                    "param": names,
                    "median": est,
                    "mean": table["mean"].to_numpy(float),
                    "sd": table["sd"].to_numpy(float),
                    "lower": table[lower].to_numpy(float),
                    "upper": table[upper].to_numpy(float),
                    **{
                        k: table[k].to_numpy(float)
                        for k in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd")
                    },
                }
            )
        if ci_kind != "eti":
            raise ValueError(
                f"a {self.backend} fit has no posterior: its intervals are central intervals of "
                "the bootstrap refits (ci_kind='eti')"
            )
        draws = np.column_stack(
            [self.draws[n].reshape(self.n_draws, -1) for n in self.law.param_names]
        )
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        stderr = draws.std(axis=0, ddof=1) if self.n_draws > 1 else [None] * len(names)
        return pl.DataFrame(
            {"param": names, "estimate": est, "stderr": stderr, "lower": lo, "upper": hi},
            schema={
                k: pl.String if k == "param" else pl.Float64
                for k in ("param", "estimate", "stderr", "lower", "upper")
            },
        )

    def _arviz_summary(self, names: list[str], prob: float, ci_kind: str) -> Any:
        """`arviz.summary` of the law's parameters, unrounded, in the order of `names`."""
        import arviz as az

        with warnings.catch_warnings():
            # a pinned reference level has no variance: R-hat divides zero by zero
            warnings.simplefilter("ignore", RuntimeWarning)
            table = az.summary(
                self.to_datatree(),
                var_names=self.law.param_names,
                kind="all",
                ci_prob=prob,
                ci_kind=ci_kind,
                round_to="none",
            )
        return table.loc[names]

    def to_datatree(self) -> Any:
        """The fit as the ArviZ DataTree its file holds: the sampler's output (or the bootstrap
        refits as a posterior of one chain), for any `arviz` function."""
        return self.idata if self.idata is not None else self._tree()

    def fit_report(self, prob: float = 0.9, width: int = 100) -> str:
        """What ``scalelaw fit`` prints for this fit, as plain text: the NOT CONVERGED or MISFIT
        headline, the parameter table and the diagnostics line. ``print(fit.fit_report())``."""
        # Deferred on purpose: the text is the CLI's own (`scalelaw.report`, a layer above
        # fits); declared in pyproject.toml [tool.importlinter] ignore_imports.
        from scalelaw.report import fit_text

        return fit_text(self, prob, width=width)

    def plot(self, kind: str = "fit", ax: Any = None, *, data: Any = None, **kw: Any) -> Any:
        """Draw the fit and return the matplotlib Figure (see `scalelaw.plots.figure`).

        `kind` is any kind ``scalelaw plot`` draws: ``fit`` (data and fitted mean with its band,
        one panel per task), ``ppc``, ``posterior`` or ``trace``. `ax` is an Axes, or a sequence
        of Axes (one per panel), to draw into. `data` is the table the fit was made from (a
        polars frame or a path); a fit made from a file path reads that file again. Further
        keywords: ``prob`` (band), ``tasks`` (panels of kind fit), ``var_names`` (posterior).
        """
        # Deferred on purpose: figures live in `scalelaw.plots`, a layer above fits; this one
        # import is declared in pyproject.toml [tool.importlinter] ignore_imports.
        from scalelaw.plots import figure

        return figure(self, kind, ax=ax, data=data, **kw)

    # --- persistence -----------------------------------------------------------------------
    def _tree(self) -> Any:
        import arviz as az
        import xarray as xr

        if self.idata is not None:
            tree = self.idata.copy()
        else:
            posterior = {}
            for k, v in self.draws.items():
                posterior[k] = v[None, ...]
            for k, v in self.noise.items():
                posterior[noise_name(k)] = np.broadcast_to(np.asarray(v, float), (self.n_draws,))[
                    None, :
                ]
            dims = {name: [f"{name}_level"] for name in self.law.groups if name in self.draws}
            coords = {f"{name}_level": self.levels[col] for name, col in self.law.groups.items()}
            tree = az.from_dict({"posterior": posterior}, dims=dims, coords=coords)
        if self.point is not None:
            point = {}
            for k, v in self.point.items():
                arr = np.asarray(v)[0]
                point[k] = xr.DataArray(arr, dims=[f"{k}_level"] if arr.ndim else [])
            tree["point_estimate"] = xr.DataTree(xr.Dataset(point))
        diagnostics = dict(self.diagnostics)
        if _loglik_bytes(tree) > FILE_LOGLIK_BYTES and "elpd_loo" in diagnostics:
            tree, diagnostics["loo_note"] = _pointwise_loo_instead(tree)
        info = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "law": self.law.to_dict(),
            "levels": self.levels,
            "diagnostics": _plain(diagnostics),
            "meta": _plain(self.meta),
        }
        tree.attrs = {**tree.attrs, "scalelaw": json.dumps(info)}
        return tree

    def save(self, path: str | Path) -> Path:
        """Write the fit to `path` (NetCDF), atomically: a crash leaves the old file intact."""
        from scalelaw.fits.expr import ExprError, check_length

        path = Path(path)
        try:
            # the file stores the printed law, which must read back under the parser's limit
            check_length(self.law.expr)
        except ExprError as exc:
            raise FitFileError(f"{path}: cannot save law '{self.law.name}': {exc}") from None
        write_atomically(self._tree(), path)
        return path


#: Above this many bytes of pointwise log-likelihood a fit file keeps each row's ELPD-LOO and
#: Pareto k instead (what `compare` and stacking read), so that files stay small: the
#: quickstart's table (1584 rows x 4000 draws) held 51 MB of it.
FILE_LOGLIK_BYTES = 4 * 2**20


def _loglik_bytes(tree: Any) -> int:
    if "log_likelihood" not in tree.children:
        return 0
    return int(sum(v.size * v.dtype.itemsize for v in tree["log_likelihood"].data_vars.values()))


def _pointwise_loo_instead(tree: Any) -> tuple[Any, str]:
    """The tree with its log-likelihood replaced by each row's PSIS-LOO (the group a fit too
    large to keep the log-likelihood in memory has), and the note that says so."""
    import arviz as az

    # deferred: the group is the Bayesian backend's, which imports PyMC
    from scalelaw.fits.bayes import POINTWISE_LOO, pointwise_loo_group

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(tree, var_name="obs", pointwise=True)
    elpd, k = np.asarray(loo.elpd_i).ravel(), np.asarray(loo.pareto_k).ravel()
    rows, size = elpd.size, _loglik_bytes(tree)
    tree = tree.copy()
    del tree["log_likelihood"]
    tree[POINTWISE_LOO] = pointwise_loo_group(elpd, k)
    note = (
        f"pointwise log-likelihood not stored in the file ({rows} rows, {size / 2**20:.0f} MB): "
        "each row's ELPD-LOO and Pareto k are kept instead"
    )
    return tree, note


def write_atomically(tree: Any, path: Path) -> None:
    """Write a DataTree to `path` through a temporary file that never outlives a failure."""
    if path.is_dir():
        raise FitFileError(f"{path}: is a directory; give a file name such as fit.nc")
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except OSError as exc:
        raise FitFileError(f"{path}: cannot write the fit ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_fit(path: str | Path) -> Any:
    """Read a fit file written by `FitResult.save` (or a stacked fit by `StackedFit.save`)."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise FitFileError(f"{p}: fit file not found")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise FitFileError(f"{p}: not a regular file (a fit file is a NetCDF file)")
    try:
        # a plain HDF5 file makes xarray warn before it fails: the one error line says it all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = xr.open_datatree(p, engine="h5netcdf")
            tree.load()
    except Exception as exc:
        raise FitFileError(f"{p}: not a readable NetCDF fit file ({type(exc).__name__})") from None
    info = _info(tree, p)
    if info.get("kind") == "stack":
        from scalelaw.fits.stacking import stacked_from_tree

        return stacked_from_tree(tree, info, p)
    return fit_from_tree(tree, p)


def _info(tree: Any, p: Path) -> dict[str, Any]:
    raw = tree.attrs.get("scalelaw")
    if raw is None:
        raise FitFileError(f"{p}: not a scalelaw fit (no 'scalelaw' attribute)")
    if not isinstance(raw, str):
        raise FitFileError(f"{p}: damaged scalelaw metadata (not a JSON text)")
    try:
        info = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FitFileError(f"{p}: damaged scalelaw metadata ({exc})") from None
    except RecursionError:
        raise FitFileError(f"{p}: damaged scalelaw metadata (nested too deeply)") from None
    if not isinstance(info, dict):
        raise FitFileError(
            f"{p}: damaged scalelaw metadata (a JSON {type(info).__name__}, not an object)"
        )
    if info.get("format") != FORMAT_VERSION:
        raise FitFileError(f"{p}: unsupported fit format {info.get('format')!r}")
    problem = _schema_problem(info, _STACK if info.get("kind") == "stack" else _FIT)
    if problem:
        raise FitFileError(f"{p}: damaged scalelaw metadata ({problem})")
    return info


def fit_from_tree(tree: Any, p: Path) -> FitResult:
    """One fit from its DataTree (a whole file, or one group of a stacked file).

    The metadata is checked against its schema, the levels it names against the coordinates
    of the posterior, and its law against the posterior's variables, so a file edited by hand
    (or given another fit's metadata) is refused rather than predicting with its group effects
    shifted onto the wrong levels or with parameters left out.
    """
    info = _info(tree, p)
    if info.get("kind") == "stack":
        raise FitFileError(f"{p}: damaged scalelaw metadata (a stacked fit inside a stacked fit)")
    try:
        law = Law.from_dict(info["law"])
    except (ScalelawError, KeyError, TypeError, ValueError) as exc:
        raise FitFileError(f"{p}: damaged scalelaw metadata (law: {exc})") from None
    levels = {str(k): [str(x) for x in v] for k, v in info["levels"].items()}
    if "posterior" not in tree.children:
        raise FitFileError(f"{p}: damaged fit (no posterior group)")
    post = tree["posterior"]
    draws = {name: _draws(post, name, law, levels, p) for name in law.param_names}
    unused = sorted(set(levels) - set(law.groups.values()))
    if unused:
        raise FitFileError(
            f"{p}: damaged scalelaw metadata (levels of '{unused[0]}', which no group effect uses)"
        )
    stored_noise = _stored_noise(post, law)
    extra = _undeclared(post, law, set(stored_noise.values()))
    if extra is not None:
        raise FitFileError(
            f"{p}: damaged fit (the posterior has '{extra}', which law '{law.name}' "
            "does not declare)"
        )
    noise = {k: _noise(post, stored, p) for k, stored in stored_noise.items()}
    point = _point(tree, law, draws, p) if "point_estimate" in tree.children else None
    return FitResult(
        law=law,
        backend=info["backend"],
        draws=draws,
        levels=levels,
        diagnostics=info.get("diagnostics", {}),
        meta=info.get("meta", {}),
        point=point,
        idata=tree,
        noise=noise,
    )


def _draws(post: Any, name: str, law: Law, levels: dict[str, list[str]], p: Path) -> np.ndarray:
    """One parameter's draws (n_draws leading), checked against the levels of its group."""
    if name not in post.data_vars:
        raise FitFileError(f"{p}: damaged fit (no draws of '{name}' in the posterior)")
    var = post[name]
    column = law.groups.get(name)
    level = f"{name}_level"
    dims = ("chain", "draw") if column is None else ("chain", "draw", level)
    if tuple(var.dims) != dims:
        raise FitFileError(
            f"{p}: damaged fit ('{name}' has dimensions {tuple(var.dims)}, expected {dims})"
        )
    try:
        values = np.asarray(var.values, dtype=float)
    except (TypeError, ValueError):
        raise FitFileError(f"{p}: damaged fit ('{name}' holds no numbers)") from None
    if not np.all(np.isfinite(values)):
        raise FitFileError(f"{p}: damaged fit ('{name}' holds NaN or infinite draws)")
    param = next(q for q in law.params if q.name == name)
    if (param.lower is not None and values.min() < param.lower) or (
        param.upper is not None and values.max() > param.upper
    ):
        raise FitFileError(
            f"{p}: damaged fit ('{name}' has draws outside its bounds "
            f"[{param.lower}, {param.upper}])"
        )
    if column is not None:
        known = levels.get(column)
        if known is None:
            raise FitFileError(f"{p}: damaged scalelaw metadata (no levels of '{column}')")
        # without the coordinate, the order of the metadata's levels could not be checked
        stored = [str(x) for x in post[level].values] if level in post.coords else None
        if values.shape[2] != len(known) or stored != known:
            raise FitFileError(
                f"{p}: damaged scalelaw metadata (levels of '{column}' do not match the "
                f"posterior's {level} coordinate)"
            )
    return values.reshape(-1, *values.shape[2:])


def _stored_noise(post: Any, law: Law) -> dict[str, str]:
    """Where the posterior holds each of the likelihood's own parameters: its prefixed name,
    or in files written before the prefix its plain name (no law parameter could have it then).
    """
    out = {}
    for k in LIKELIHOOD_NOISE.get(law.likelihood, NOISE_PARAMS):
        candidates = (noise_name(k), k)
        stored = next((s for s in candidates if s in post.data_vars), None)
        if stored is not None and stored not in law.param_names:
            out[k] = stored
    return out


def _undeclared(post: Any, law: Law, noise: set[str]) -> str | None:
    """The first posterior variable that is neither the law's, its likelihood's, nor one the
    sampler keeps beside a parameter of the law: such a variable means the metadata describes
    another law than the one drawn (another fit's metadata), which predicts nonsense."""
    known = set(law.param_names) | noise
    for name in law.param_names:
        kind = law.pooling if name in law.groups else "single"
        known.update(name + suffix for suffix in AUXILIARIES[kind])
    return next((v for v in sorted(map(str, post.data_vars)) if v not in known), None)


def _noise(post: Any, stored: str, p: Path) -> np.ndarray:
    var = post[stored]
    if tuple(var.dims) != ("chain", "draw"):
        raise FitFileError(f"{p}: damaged fit ('{stored}' has dimensions {tuple(var.dims)})")
    values = np.asarray(var.values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise FitFileError(f"{p}: damaged fit ('{stored}' holds negative or non-finite draws)")
    return values


def _point(tree: Any, law: Law, draws: dict[str, np.ndarray], p: Path) -> dict[str, np.ndarray]:
    """The least-squares optimum, one value (or one per level) for each parameter."""
    pe = tree["point_estimate"]
    point = {}
    for name in law.param_names:
        if name not in pe.data_vars:
            raise FitFileError(f"{p}: damaged fit (no point estimate of '{name}')")
        values = np.asarray(pe[name].values, dtype=float)
        if values.shape != draws[name].shape[1:]:
            raise FitFileError(
                f"{p}: damaged fit (point estimate of '{name}' has shape {values.shape}, "
                f"expected {draws[name].shape[1:]})"
            )
        point[name] = values[None, ...]
    return point


# --- metadata schema ---------------------------------------------------------------------------
# What each field of the JSON metadata must hold. Values are read by code that formats, indexes
# and compares them, so a wrong type would surface later as a traceback or a wrong number.
Check = tuple[Callable[[Any], bool], str]


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _levels(v: Any) -> bool:
    return isinstance(v, dict) and all(_texts(x) and len(set(x)) == len(x) for x in v.values())


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


TEXT: Check = (lambda v: isinstance(v, str), "a text")
OPTIONAL_TEXT: Check = (_optional(lambda v: isinstance(v, str)), "a text or null")
NUMBER: Check = (_optional(_number), "a number or null")
WHOLE: Check = (_optional(_whole), "a whole number or null")
TEXTS: Check = (_texts, "a list of texts")
OBJECT: Check = (lambda v: isinstance(v, dict), "an object")
#: field -> (check, description, required)
Schema = dict[str, tuple[Callable[[Any], bool], str, bool]]


def _fields(required: dict[str, Check], optional: dict[str, Check]) -> Schema:
    return {
        **{k: (c, d, True) for k, (c, d) in required.items()},
        **{k: (c, d, False) for k, (c, d) in optional.items()},
    }


_PARAM = _fields(
    {"name": TEXT},
    {
        "prior": TEXT,
        "lower": NUMBER,
        "upper": NUMBER,
        "starts": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of numbers"),
    },
)
_LAW = _fields(
    {
        "name": TEXT,
        "expr": TEXT,
        "covariates": TEXTS,
        "params": (
            lambda v: isinstance(v, list) and all(not _schema_problem(x, _PARAM) for x in v),
            "a list of parameters (name, prior, lower, upper, starts)",
        ),
    },
    {
        **dict.fromkeys(
            ("link", "likelihood", "response", "pooling", "formula", "citation", "description"),
            TEXT,
        ),
        "transform": OPTIONAL_TEXT,
        "reference": (_mapping_of(lambda v: isinstance(v, str)), "an object of texts"),
    },
)
_DIAGNOSTICS = _fields(
    {},
    {
        **dict.fromkeys(
            ("not_converged", "auto_priors", "warnings", "problems", "at_bounds"), TEXTS
        ),
        **dict.fromkeys(("r2", "rhat_max", "ess_bulk_min", "cost", "huber_delta"), NUMBER),
        **dict.fromkeys(
            (
                "divergences",
                "chains",
                "draws",
                "tune",
                "starts",
                "refined",
                "reached_best",
                "bootstrap",
                "pareto_k_bad",
            ),
            WHOLE,
        ),
        **dict.fromkeys(
            ("rhat", "ess_bulk"), (_mapping_of(_optional(_number)), "an object of numbers")
        ),
        "retry": (_optional(lambda v: isinstance(v, dict)), "an object or null"),
        "loo_error": TEXT,
    },
)
_META = _fields(
    {},
    {
        **dict.fromkeys(("source", "data_hash", "counts", "phase", "aggregate"), OPTIONAL_TEXT),
        **dict.fromkeys(("seed", "rows"), WHOLE),
        "where": TEXTS,
        "laws": TEXTS,
        "replicates": (lambda v: isinstance(v, bool), "true or false"),
        "column_map": (_mapping_of(lambda v: isinstance(v, str)), "an object of texts"),
        # a fit's held-out scores, or the slice a stack was weighted on
        "holdout": (_optional(lambda v: isinstance(v, dict | str)), "an object, a text or null"),
        "values": OBJECT,
        "scores": (_mapping_of(_optional(_number)), "an object of numbers"),
        "ranges": (
            _mapping_of(lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v))),
            "an object of [smallest, largest] pairs",
        ),
    },
)
_FIT = _fields(
    {
        "backend": TEXT,
        "law": (lambda v: isinstance(v, dict) and not _schema_problem(v, _LAW), "an object"),
        "levels": (_levels, "an object of lists of distinct texts"),
    },
    {
        "diagnostics": (lambda v: isinstance(v, dict), "an object"),
        "meta": (lambda v: isinstance(v, dict), "an object"),
    },
)
_STACK = _fields(
    {
        "weights": (lambda v: isinstance(v, list) and all(map(_number, v)), "a list of numbers"),
    },
    {"method": TEXT, "meta": OBJECT},
)
#: Nested objects whose own fields are checked, so a problem names the field inside them.
_NESTED: dict[str, Schema] = {"law": _LAW, "diagnostics": _DIAGNOSTICS, "meta": _META}


def _schema_problem(doc: Any, schema: Schema, where: str = "") -> str | None:
    """What is wrong with `doc` under `schema` (the first problem), or None."""
    if not isinstance(doc, dict):
        return f"{where or 'metadata'} is not an object"
    for key, (check, description, required) in schema.items():
        name = f"{where}.{key}" if where else key
        if key not in doc:
            if required:
                return f"'{name}' is missing"
            continue
        nested = _NESTED.get(key) if not where else None
        if nested is not None and isinstance(doc[key], dict):
            problem = _schema_problem(doc[key], nested, name)
            if problem:
                return problem
        if not check(doc[key]):
            return f"'{name}' must be {description}"
    return None


def _plain(x: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x
