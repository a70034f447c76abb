"""Scaling laws: definitions, fitting backends (bayes, lsq), results, prediction and stacking.

Importing this package does not import PyMC; the Bayesian backend loads it when a fit runs.
"""

from scalelaw.fits.catalog import get_card, get_law, is_card, law_names, resolve_law, source
from scalelaw.fits.expr import ExprError, parse
from scalelaw.fits.fitting import (
    FitOptions,
    FitWarning,
    NotConvergedWarning,
    StrictFitError,
    fit,
)
from scalelaw.fits.law import Law, Param
from scalelaw.fits.prediction import (
    as_fit,
    beyond_fitted,
    fitted_spans,
    levels,
    predict_draws,
    predict_table,
    predictive_draws,
)
from scalelaw.fits.priors import Prior, PriorError
from scalelaw.fits.result import FitFileError, FitResult, load_fit
from scalelaw.fits.simulation import paper_grid, simulate
from scalelaw.fits.stacking import StackedFit, stack
from scalelaw.fits.validation import compare, holdout_scores

__all__ = [
    "ExprError",
    "FitFileError",
    "FitOptions",
    "FitResult",
    "FitWarning",
    "Law",
    "NotConvergedWarning",
    "Param",
    "Prior",
    "PriorError",
    "StackedFit",
    "StrictFitError",
    "as_fit",
    "beyond_fitted",
    "compare",
    "fit",
    "fitted_spans",
    "get_card",
    "get_law",
    "holdout_scores",
    "is_card",
    "law_names",
    "levels",
    "load_fit",
    "paper_grid",
    "parse",
    "predict_draws",
    "predict_table",
    "predictive_draws",
    "resolve_law",
    "simulate",
    "source",
    "stack",
]
