"""The fit file: one reader, writer and validator for single and stacked fits.

A fit file is the ArviZ DataTree of the fit (posterior, sample stats, log-likelihood; for least
squares the bootstrap replicates stand in for the posterior) with the law definition, a hash of
the data, the seed and package versions as JSON in the root attributes; a stacked fit holds each
law's fit as a group (``fit_0``, ``fit_1``, ...) and its weights in the root. Reading parses that
JSON (checked against its schema) and the law's expression string; it never unpickles or runs
anything from the file. The reader hands back the checked parts; `result` builds the fits.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from scalelaw.errors import ScalelawError
from scalelaw.fits.expr import ExprError, check_length
from scalelaw.fits.law import Law
from scalelaw.fits.likelihoods import (
    LIKELIHOOD_NOISE,
    NOISE_PARAMS,
    POINTWISE_LOO,
    noise_name,
    pointwise_loo_group,
)
from scalelaw.fits.metadata import FitMeta, StackMeta
from scalelaw.schema import described

FORMAT_VERSION = 1
#: Suffixes of what the Bayesian backend samples in place of a law parameter and keeps in the
#: posterior beside it (`scalelaw.fits.bayes`): a fixed group effect's levels other than the
#: pinned reference (`_free`); a partially pooled one's scale and standard offsets (`_sd`, `_z`);
#: a single value's standardised slope (`_std`) or centred intercept (`_centred`) in a linear law.
AUXILIARIES = {"fixed": ("_free",), "partial": ("_sd", "_z"), "single": ("_std", "_centred")}


class FitFileError(ScalelawError):
    """A fit file is missing, unreadable or not a scalelaw fit."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("scalelaw", "pymc", "nutpie", "arviz", "numpy", "scipy", "lmfit", "polars"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


# --- writing -----------------------------------------------------------------------------------
def draws_tree(fit: Any) -> Any:
    """A fit's draws as an ArviZ DataTree: a posterior of one chain (the noise beside the
    draws, group levels as coordinates) and the least-squares optimum as its
    ``point_estimate`` group. What a least-squares fit keeps in memory and what its file
    holds. Built with `arviz_base` (ArviZ's data layer), which imports in a tenth of the time
    the whole of ArviZ takes."""
    import xarray as xr  # deferred: heavy
    from arviz_base import from_dict  # deferred: heavy

    posterior: dict[str, np.ndarray] = {k: v[None, ...] for k, v in fit.draws.items()}
    for k, v in fit.noise.items():
        posterior[noise_name(k)] = np.broadcast_to(np.asarray(v, float), (fit.n_draws,))[None]
    law = fit.law
    dims = {name: [f"{name}_level"] for name in law.groups if name in fit.draws}
    coords = {f"{name}_level": fit.levels[col] for name, col in law.groups.items()}
    tree = from_dict({"posterior": posterior}, dims=dims, coords=coords)
    if fit.point is not None:
        point = {}
        for k, v in fit.point.items():
            value = np.asarray(v)[0]
            point[k] = xr.DataArray(value, dims=[f"{k}_level"] if value.ndim else [])
        tree["point_estimate"] = xr.DataTree(xr.Dataset(point))
    return tree


def fit_tree(fit: Any, loglik_limit: int | None = None) -> Any:
    """The DataTree a fit's file holds: its sampler output (or its draws as a posterior of one
    chain), the least-squares optimum and the JSON metadata. Above `loglik_limit` bytes of
    pointwise log-likelihood (default `FILE_LOGLIK_BYTES`) each row's PSIS-LOO is kept instead."""
    limit = FILE_LOGLIK_BYTES if loglik_limit is None else loglik_limit
    tree = fit.idata.copy() if fit.idata is not None else draws_tree(fit)
    diagnostics = dict(fit.diagnostics)
    if _loglik_bytes(tree) > limit and "elpd_loo" in diagnostics:
        tree, diagnostics["loo_note"] = _pointwise_loo_instead(tree)
    info = {
        "format": FORMAT_VERSION,
        "backend": fit.backend,
        "law": fit.law.to_dict(),
        "levels": fit.levels,
        "diagnostics": _plain(diagnostics),
        "meta": _plain(fit.meta),
    }
    tree.attrs = {**tree.attrs, "scalelaw": json.dumps(info)}
    return tree


def save_fit(fit: Any, path: str | Path, loglik_limit: int | None = None) -> Path:
    """Write a fit to `path` (NetCDF), atomically: a crash leaves the old file intact."""
    path = Path(path)
    try:
        # the file stores the printed law, which must read back under the parser's limit
        check_length(fit.law.expr)
    except ExprError as exc:
        raise FitFileError(f"{path}: cannot save law '{fit.law.name}': {exc}") from None
    write_atomically(fit_tree(fit, loglik_limit), path)
    return path


def save_stack(stacked: Any, path: str | Path, loglik_limit: int | None = None) -> Path:
    """One NetCDF file: each law's fit as a group, weights and method in the root."""
    import xarray as xr  # deferred: heavy

    path = Path(path)
    tree = xr.DataTree()
    for i, f in enumerate(stacked.fits):
        tree[f"fit_{i}"] = fit_tree(f, loglik_limit)
    tree.attrs = {
        "scalelaw": json.dumps(
            {
                "format": FORMAT_VERSION,
                "kind": "stack",
                "weights": [float(w) for w in stacked.weights],
                "method": stacked.method,
                "meta": stacked.meta,
                "extrapolation": {
                    c: {"beyond": largest, "weights": [float(w) for w in ws]}
                    for c, (largest, ws) in stacked.extrapolation.items()
                },
            }
        )
    }
    write_atomically(tree, path)
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
    import arviz as az  # deferred: heavy

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


# --- reading -----------------------------------------------------------------------------------
def read_tree(path: str | Path) -> tuple[Any, dict[str, Any], Path]:
    """The DataTree of a fit file and its checked metadata (`info`), or a `FitFileError`."""
    import xarray as xr  # deferred: heavy

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
            # everything is read into memory, then the file is let go: a fit refused below
            # (or loaded) must not hold it open against being rewritten or removed
            try:
                tree.load()
            finally:
                tree.close()
    except Exception as exc:
        raise FitFileError(f"{p}: not a readable NetCDF fit file ({type(exc).__name__})") from None
    return tree, _info(tree, p), p


def is_stack(info: dict[str, Any]) -> bool:
    return info.get("kind") == "stack"


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
    schema = StackMeta if is_stack(info) else FitMeta
    try:
        schema.model_validate(info)
    except ValidationError as exc:
        raise FitFileError(f"{p}: damaged scalelaw metadata ({described(exc, schema)})") from None
    return info


def fit_parts(tree: Any, p: Path) -> dict[str, Any]:
    """The fields of one fit (`FitResult`'s keywords) from its DataTree: a whole file, or one
    group of a stacked file.

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
    return {
        "law": law,
        "backend": info["backend"],
        "draws": draws,
        "levels": levels,
        "diagnostics": info.get("diagnostics", {}),
        "meta": info.get("meta", {}),
        "point": point,
        "idata": tree,
        "noise": noise,
    }


def stack_parts(tree: Any, info: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fields of a stacked fit (`StackedFit`'s keywords, each law's fit as `fit_parts`)
    from its file, its weights and extrapolation weights checked to be on the simplex."""
    try:
        weights = np.asarray(info["weights"], dtype=float)
        fits = [fit_parts(tree[f"fit_{i}"], path) for i in range(len(weights))]
    except KeyError as exc:
        raise FitFileError(f"{path}: damaged stacked fit ({exc})") from None
    if len(fits) < 2 or not _is_simplex(weights):
        raise FitFileError(f"{path}: damaged stacked fit (weights {weights.tolist()})")
    extrapolation: dict[str, tuple[float, np.ndarray]] = {}
    for column, spec in dict(info.get("extrapolation") or {}).items():
        try:
            largest = float(spec["beyond"])
            ws = np.asarray(spec["weights"], dtype=float)
        except (KeyError, TypeError, ValueError):
            raise FitFileError(f"{path}: damaged stacked fit (extrapolation '{column}')") from None
        if ws.shape != weights.shape or not _is_simplex(ws) or not np.isfinite(largest):
            raise FitFileError(f"{path}: damaged stacked fit (extrapolation weights of '{column}')")
        extrapolation[str(column)] = (largest, ws)
    return {
        "fits": fits,
        "weights": weights,
        "method": str(info.get("method", "")),
        "meta": dict(info.get("meta", {})),
        "extrapolation": extrapolation,
    }


def _is_simplex(weights: np.ndarray) -> bool:
    return bool(
        np.all(np.isfinite(weights)) and np.isclose(weights.sum(), 1.0) and (weights >= 0).all()
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
    if param.prior is not None and not _near_prior(values, param.prior):
        # sampling cannot put a draw a thousand prior widths out: the file was altered (a draw
        # of 1e12 on the logit scale would predict 1.0 everywhere, silently)
        raise FitFileError(
            f"{p}: damaged fit ('{name}' has draws more than 1000 times its prior's width from "
            f"the prior's centre: {float(np.abs(values).max()):.3g})"
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


def _near_prior(values: np.ndarray, prior: Any) -> bool:
    """Whether every draw lies within 1000 widths (the prior's 1%-99% span) of its median."""
    lo, mid, hi = prior.quantiles([0.01, 0.5, 0.99])
    width = float(hi - lo)
    if not np.isfinite(width) or width <= 0:
        return True
    return bool(np.max(np.abs(values - mid)) <= 1000.0 * width)
