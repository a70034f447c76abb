"""Scaling laws: definitions, fitting backends (bayes, lsq), results and prediction.

Importing this package does not import PyMC; the Bayesian backend loads it when a fit runs.
"""

from scalelaw.fits.api import (
    FitOptions,
    FitWarning,
    StrictFitError,
    compare,
    fit,
    levels,
    paper_grid,
    predict_draws,
    predict_table,
    simulate,
)
from scalelaw.fits.catalog import get_law, law_names, resolve_law
from scalelaw.fits.expr import ExprError, parse
from scalelaw.fits.law import Law, Param, Prior
from scalelaw.fits.result import FitFileError, FitResult, load_fit

__all__ = [
    "ExprError",
    "FitFileError",
    "FitOptions",
    "FitResult",
    "FitWarning",
    "Law",
    "Param",
    "Prior",
    "StrictFitError",
    "compare",
    "fit",
    "get_law",
    "law_names",
    "levels",
    "load_fit",
    "paper_grid",
    "parse",
    "predict_draws",
    "predict_table",
    "resolve_law",
    "simulate",
]
