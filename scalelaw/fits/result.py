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
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from scalelaw.errors import ScalelawError
from scalelaw.fits.law import Law

FORMAT_VERSION = 1
#: The likelihood's own parameters (sigma, nu, kappa), stored beside the law's in the posterior
#: under these names, so a law may have parameters called sigma or kappa of its own.
NOISE_PARAMS = ("sigma", "nu", "kappa")
NOISE_PREFIX = "obs_"


def noise_name(name: str) -> str:
    """The stored (and PyMC) name of a likelihood parameter."""
    return NOISE_PREFIX + name


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

    def headline(self) -> str | None:
        """``NOT CONVERGED: ...`` when the fit failed its diagnostics, else None."""
        if self.converged:
            return None
        return "NOT CONVERGED: " + "; ".join(self.convergence)

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
        info = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "law": self.law.to_dict(),
            "levels": self.levels,
            "diagnostics": _plain(self.diagnostics),
            "meta": _plain(self.meta),
        }
        tree.attrs = {**tree.attrs, "scalelaw": json.dumps(info)}
        return tree

    def save(self, path: str | Path) -> Path:
        """Write the fit to `path` (NetCDF), atomically: a crash leaves the old file intact."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        self._tree().to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
        return path


def load_fit(path: str | Path) -> Any:
    """Read a fit file written by `FitResult.save` (or a stacked fit by `StackedFit.save`)."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise FitFileError(f"{p}: fit file not found")
    try:
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
    try:
        info = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FitFileError(f"{p}: damaged scalelaw metadata ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
        got = info.get("format") if isinstance(info, dict) else None
        raise FitFileError(f"{p}: unsupported fit format {got!r}")
    return info


def fit_from_tree(tree: Any, p: Path) -> FitResult:
    """One fit from its DataTree (a whole file, or one group of a stacked file)."""
    from scalelaw.fits.expr import ExprError

    info = _info(tree, p)
    try:
        law = Law.from_dict(info["law"])
        post = tree["posterior"]
        draws = {}
        for name in law.param_names:
            values = np.asarray(post[name].values, dtype=float)
            draws[name] = values.reshape(-1, *values.shape[2:])
        levels = {k: list(v) for k, v in info["levels"].items()}
    except (KeyError, TypeError, ValueError, ExprError) as exc:
        raise FitFileError(f"{p}: damaged scalelaw metadata ({exc})") from None
    for name, column in law.groups.items():
        if draws[name].ndim != 2 or draws[name].shape[1] != len(levels.get(column, [])):
            raise FitFileError(f"{p}: damaged scalelaw metadata (levels of {column} do not match)")
    noise = {
        k: np.asarray(post[stored].values, dtype=float).reshape(-1)
        for k in NOISE_PARAMS
        # files written before the prefix stored sigma/nu/kappa under their plain names
        for stored in (noise_name(k), k)
        if stored in post.data_vars and stored not in law.param_names
    }
    point = None
    if "point_estimate" in tree.children:
        pe = tree["point_estimate"]
        point = {k: np.asarray(pe[k].values, dtype=float)[None, ...] for k in law.param_names}
    return FitResult(
        law=law,
        backend=str(info["backend"]),
        draws=draws,
        levels=levels,
        diagnostics=info.get("diagnostics", {}),
        meta=info.get("meta", {}),
        point=point,
        idata=tree,
        noise=noise,
    )


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
