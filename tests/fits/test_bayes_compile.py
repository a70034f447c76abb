"""The Bayesian backend compiles a model once: its draws are `pm.sample`'s, a retry reuses it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from scalelaw.fits import FitOptions, bayes, fit, get_law
from scalelaw.fits.defaults import resolve_priors
from scalelaw.fits.design import bind, group_levels


def test_draws_are_those_pm_sample_gives(sim) -> None:
    """Same seed, same draws as `pm.sample(nuts_sampler="nutpie")`: fits saved before the
    backend compiled its own sampler keep their numbers."""
    import pymc as pm

    law = get_law("sparse-frontier")
    frame = sim.head(300)
    design = bind(law, frame, group_levels(law, frame))
    law, _ = resolve_priors(law, design, None)
    settings = bayes.SampleSettings(draws=60, tune=60, chains=2, seed=5)
    ours = bayes.sample(law, design, settings, log_likelihood=False)
    with bayes.build_model(law, design), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pm.sample(
            draws=60,
            tune=60,
            chains=2,
            random_seed=5,
            nuts_sampler="nutpie",
            progressbar=False,
            nuts={"target_accept": settings.target_accept},
            compute_convergence_checks=False,
        )
    for name in law.param_names:
        np.testing.assert_array_equal(ours["posterior"][name].values, theirs.posterior[name].values)
    assert {"observed_data", "constant_data"} <= set(ours.children)


def test_a_retry_samples_the_first_compiled_model(sim, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    real = bayes.compile_model

    def counting(*args: Any, **kwargs: Any) -> Any:
        compiled.append(args[0].name)
        return real(*args, **kwargs)

    reasons = iter([["forced"], []])
    monkeypatch.setattr(bayes, "compile_model", counting)
    monkeypatch.setattr(bayes, "retry_reasons", lambda *a: next(reasons))
    options = FitOptions(backend="bayes", chains=2, draws=60, tune=60, loo=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(sim.head(300), get_law("floor-ceiling"), options)
    assert result.diagnostics["retry"]["reason"] == "forced"
    # the posterior is the retry's, with its own settings
    assert result.diagnostics["draws"] == result.diagnostics["retry"]["draws"]
    assert len(compiled) == 1  # and sampled the model the first run compiled
