"""The Bayesian backend: builds a PyMC model from a `Law` and samples it with nutpie.

Laws that are linear in their parameters are sampled in a centred and scaled parametrisation
(each feature standardised, the intercept taken at the feature means) and mapped back to the
law's own parameters; the law's priors are kept exactly, as potentials on the original scale
(the map is linear, so its Jacobian is constant). This removes the strong posterior correlation
between intercept and slopes that raw ``ln N ~ 23`` features create.

Non-linear laws start every chain at the multi-start least-squares optimum (PyMC's U(-1, 1)
jitter on the unconstrained scale is switched off: it throws a narrowly identified exponent
far from its mode), and priors the user did not give are set on the data's scale first
(`scalelaw.fits.defaults`). A first run with divergences or slow mixing is retried once.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scalelaw.errors import ScalelawError
from scalelaw.fits import lack_of_fit, lsq
from scalelaw.fits.defaults import resolve_priors
from scalelaw.fits.design import Design, linear_form
from scalelaw.fits.law import Law, Param, inverse_link
from scalelaw.fits.likelihoods import (
    NOISE_PARAMS,
    POINTWISE_LOO,
    log_likelihood,
    noise_name,
    pointwise_loo_group,
    row_blocks,
)
from scalelaw.fits.priors import Prior
from scalelaw.fits.progress import announce
from scalelaw.fits.result import FitResult


@dataclass
class SampleSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 0
    target_accept: float = 0.9
    progressbar: bool = False
    nuts_extra: dict[str, Any] = field(default_factory=dict)


def _prior_logp(prior: Prior | None, value: Any) -> Any:
    import pymc as pm  # deferred: heavy

    assert prior is not None, "priors are resolved before a model is built"
    return pm.logp(prior.pymc_dist(), value)


def _free_param(p: Param, shape: tuple[int, ...] = (), dims: str | None = None) -> Any:
    """A parameter with its prior, truncated to its bounds where the prior's support is wider.

    PyMC gives bounded variables an unconstrained transform (log for a positive support, an
    interval transform for truncation to two bounds), so NUTS never proposes outside them.
    """
    import pymc as pm  # deferred: heavy

    assert p.prior is not None, f"parameter {p.name} has no prior (resolve_priors first)"
    natural = p.prior.support
    tighter = (p.lower is not None and (natural[0] is None or p.lower > natural[0])) or (
        p.upper is not None and (natural[1] is None or p.upper < natural[1])
    )
    extra: dict[str, Any] = {"shape": shape} if shape else {}
    if dims is not None:  # per-level values carry their level coordinate into the fit file
        extra = {"dims": dims}
    if not tighter:
        return p.prior.pymc_variable(p.name, **extra)
    return pm.Truncated(p.name, p.prior.pymc_dist(), lower=p.lower, upper=p.upper, **extra)


def _group_vector(name: str, p: Param, levels: int, reference: int | None, pooling: str) -> Any:
    """Per-level values of a group effect: fixed (one level pinned at 0) or partially pooled."""
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy

    assert p.prior is not None
    if pooling == "partial":
        scale = p.prior.kwargs.get("sigma", 1.0)
        tau = pm.HalfNormal(f"{name}_sd", sigma=scale)
        raw = pm.Normal(f"{name}_z", 0.0, 1.0, shape=levels)
        return pm.Deterministic(name, tau * raw, dims=f"{name}_level")
    if reference is None:
        return _free_param(p, (levels,), dims=f"{name}_level")
    free = _free_param(Param(f"{name}_free", p.prior, p.lower, p.upper), (levels - 1,))
    full = pt.concatenate([free[:reference], pt.zeros(1), free[reference:]])
    return pm.Deterministic(name, full, dims=f"{name}_level")


def build_model(law: Law, design: Design) -> Any:
    """The PyMC model of `law` on `design` (observations included)."""
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy

    coords: dict[str, list[Any]] = {f"{p}_level": g.levels for p, g in design.groups.items()}
    coords["row"] = list(range(design.n))
    with pm.Model(coords=coords) as model:
        env: dict[str, Any] = {k: pt.as_tensor_variable(v) for k, v in design.covariates.items()}
        for pname, g in design.groups.items():
            vec = _group_vector(pname, law.param(pname), len(g.levels), g.reference, law.pooling)
            env[f"{pname}[{g.column}]"] = vec[g.index]
        form = linear_form(law)
        if form is not None and not _has_bounds(law, form):
            eta = _linear_eta(law, form, design, env)
        else:
            for p in law.params:
                if p.name not in design.groups:
                    env[p.name] = _free_param(p)
            eta = law.expr.evaluate(env, lib="pytensor")
        eta = pt.broadcast_to(eta, (design.n,))
        _likelihood(law, design, eta)
    return model


def _has_bounds(law: Law, form: Any) -> bool:
    names = [s for s, _ in form.slopes] + ([form.intercept] if form.intercept else [])
    return any(
        law.param(n).lower is not None
        or law.param(n).upper is not None
        or law.param(n).prior is None
        or not law.param(n).prior.location_scale  # type: ignore[union-attr]
        for n in names
    )


def _linear_eta(law: Law, form: Any, design: Design, env: dict[str, Any]) -> Any:
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy

    cov_env = design.covariates
    eta: Any = 0.0
    centred_shift: Any = 0.0
    for pname, feat in form.slopes:
        x = np.broadcast_to(np.asarray(feat.evaluate(cov_env), dtype=float), (design.n,))
        m, s = float(x.mean()), float(x.std())
        if s == 0.0:
            s = 1.0  # a constant feature: its slope is identified only through the prior
        z = pm.Flat(f"{pname}_std")
        coef = pm.Deterministic(pname, z / s)
        pm.Potential(f"{pname}_prior", _prior_logp(law.param(pname).prior, coef))
        eta = eta + z * ((x - m) / s)
        centred_shift = centred_shift + coef * m
    for off in form.offsets:
        eta = eta + np.asarray(off.evaluate(cov_env), dtype=float)
    if form.intercept is not None:
        b0 = pm.Flat(f"{form.intercept}_centred")
        intercept = pm.Deterministic(form.intercept, b0 - centred_shift)
        pm.Potential(
            f"{form.intercept}_prior", _prior_logp(law.param(form.intercept).prior, intercept)
        )
        eta = eta + b0
    elif form.slopes:
        eta = eta + centred_shift
    for gname in form.groups:
        eta = eta + env[f"{gname}[{design.groups[gname].column}]"]
    return pt.as_tensor_variable(eta)


def _likelihood(law: Law, design: Design, eta: Any) -> None:
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy

    mu = inverse_link(law.link, eta, lib="pytensor")
    if law.likelihood == lack_of_fit.NAME:
        _lack_of_fit(law, design, eta, mu)
        return
    if design.fractional and law.likelihood in ("binomial", "beta_binomial"):
        _fractional_counts(law, design, eta, mu)
        return
    match law.likelihood:
        case "binomial":
            if law.link == "logit":
                pm.Binomial(
                    "obs", n=design.samples, logit_p=eta, observed=design.correct, dims="row"
                )
            else:
                pm.Binomial(
                    "obs",
                    n=design.samples,
                    p=pt.clip(mu, 1e-9, 1 - 1e-9),
                    observed=design.correct,
                    dims="row",
                )
        case "beta_binomial":
            kappa = pm.LogNormal(noise_name("kappa"), mu=3.0, sigma=1.5)
            p = pt.clip(mu, 1e-9, 1 - 1e-9)
            pm.BetaBinomial(
                "obs",
                n=design.samples,
                alpha=p * kappa,
                beta=(1 - p) * kappa,
                observed=design.correct,
                dims="row",
            )
        case "beta":
            kappa = pm.LogNormal(noise_name("kappa"), mu=3.0, sigma=1.5)
            p = pt.clip(mu, 1e-9, 1 - 1e-9)
            assert design.y is not None
            n = design.n
            y = (design.y * (n - 1) + 0.5) / n  # Smithson-Verkuilen squeeze keeps 0 and 1 inside
            pm.Beta("obs", alpha=p * kappa, beta=(1 - p) * kappa, observed=y, dims="row")
        case _:
            assert design.y is not None
            y = np.log(design.y) if law.transform == "log" else design.y
            loc = pt.log(mu) if law.transform == "log" else mu
            scale = float(np.std(y)) or 1.0
            sigma = pm.HalfNormal(noise_name("sigma"), sigma=scale)
            if law.likelihood == "student_t":
                nu = pm.Gamma(noise_name("nu"), alpha=2.0, beta=0.1)
                pm.StudentT("obs", nu=nu, mu=loc, sigma=sigma, observed=y, dims="row")
            else:
                pm.Normal("obs", mu=loc, sigma=sigma, observed=y, dims="row")


def _lack_of_fit(law: Law, design: Design, eta: Any, mu: Any) -> None:
    """Binomial counts around a law that misses each configuration by tau on the logit scale,
    the miss integrated out (`scalelaw.fits.lack_of_fit`); fractional successes are allowed."""
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy

    if law.link == "logit":
        theta = eta
    else:
        p = pt.clip(mu, 1e-9, 1 - 1e-9)
        theta = pt.log(p) - pt.log1p(-p)
    # a miss of 1 on the logit moves a 50% accuracy by about 0.23: a weakly informative scale
    tau = pm.HalfNormal(noise_name("tau"), sigma=1.0)

    def random(n: Any, theta: Any, tau: Any, rng: Any = None, size: Any = None) -> Any:
        return rng.binomial(n, lack_of_fit.draw_probability(theta, tau, rng, size)).astype(float)

    pm.CustomDist(
        "obs",
        design.samples,
        theta,
        tau,
        logp=lack_of_fit.pytensor_logp,
        random=random,
        observed=design.correct,
        dims="row",
    )


def _fractional_counts(law: Law, design: Design, eta: Any, mu: Any) -> None:
    """Binomial or beta-binomial over successes that are not whole (partial credit).

    The log-probabilities are the usual ones with factorials written as gamma functions, so a
    row scoring 2.5 of 5 contributes between its neighbours 2 and 3. Predictive draws are whole
    counts from the ordinary distribution.
    """
    import pymc as pm  # deferred: heavy
    import pytensor.tensor as pt  # deferred: heavy
    from pytensor.tensor.math import gammaln, softplus  # deferred: heavy

    def log_choose(k: Any, n: Any) -> Any:
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)

    n = design.samples
    if law.likelihood == "binomial":
        if law.link == "logit":
            theta = eta
        else:
            p = pt.clip(mu, 1e-9, 1 - 1e-9)
            theta = pt.log(p) - pt.log1p(-p)

        def binomial_logp(value: Any, n: Any, theta: Any) -> Any:
            return log_choose(value, n) - value * softplus(-theta) - (n - value) * softplus(theta)

        def binomial_random(n: Any, theta: Any, rng: Any = None, size: Any = None) -> Any:
            return rng.binomial(n, 1.0 / (1.0 + np.exp(-theta)), size=size).astype(float)

        pm.CustomDist(
            "obs",
            n,
            theta,
            logp=binomial_logp,
            random=binomial_random,
            observed=design.correct,
            dims="row",
        )
        return
    kappa = pm.LogNormal(noise_name("kappa"), mu=3.0, sigma=1.5)
    p = pt.clip(mu, 1e-9, 1 - 1e-9)

    def beta_binomial_logp(value: Any, n: Any, a: Any, b: Any) -> Any:
        from pytensor.tensor.special import betaln  # deferred: heavy

        return log_choose(value, n) + betaln(value + a, n - value + b) - betaln(a, b)

    def beta_binomial_random(n: Any, a: Any, b: Any, rng: Any = None, size: Any = None) -> Any:
        return rng.binomial(n, rng.beta(a, b, size=size), size=size).astype(float)

    pm.CustomDist(
        "obs",
        n,
        p * kappa,
        (1 - p) * kappa,
        logp=beta_binomial_logp,
        random=beta_binomial_random,
        observed=design.correct,
        dims="row",
    )


@dataclass
class Compiled:
    """A law's PyMC model on one design and nutpie's compiled sampler of it.

    Compiling is most of a small fit's time (`benchmarks/sampling_compile.py`), so a retry
    samples the compiled model again instead of building a new one."""

    model: Any
    sampler: Any


def compile_model(law: Law, design: Design, initvals: dict[str, Any] | None = None) -> Compiled:
    """Build the model and compile its sampler; chains start at `initvals` when given (no
    jitter: see the module's text), else where PyMC starts them."""
    import nutpie  # deferred: heavy

    model = build_model(law, design)
    start: dict[str, Any] = {}
    if initvals:
        free = {v.name for v in model.free_RVs}
        start = {
            "initial_points": {k: v for k, v in initvals.items() if k in free},
            "jitter_rvs": set(),
        }
    return Compiled(model, nutpie.compile_pymc_model(model, backend="numba", **start))


def chain_seed(seed: int) -> int:
    """nutpie's seed for a fit's `seed`, derived as `pm.sample` derives it, so that a fit's
    draws are those `pm.sample(random_seed=seed, nuts_sampler="nutpie")` gives."""
    return int(np.random.default_rng(seed).spawn(1)[0].integers(2**30))


def sample(
    law: Law,
    design: Design,
    settings: SampleSettings,
    *,
    initvals: dict[str, Any] | None = None,
    log_likelihood: bool = True,
    compiled: Compiled | None = None,
) -> Any:
    """Sample the posterior with nutpie; return an ArviZ DataTree (with the pointwise
    log-likelihood unless `log_likelihood` is False: it is rows x draws, see `loglik_fits`).

    `compiled` (from `compile_model` with the same `initvals`) is sampled again, not rebuilt."""
    import nutpie  # deferred: heavy
    import pymc as pm  # deferred: heavy
    from pymc.backends.arviz import patch_nutpie_idata  # deferred: heavy

    compiled = compiled or compile_model(law, design, initvals)
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled.sampler,
        draws=settings.draws,
        tune=max(settings.tune, 1),  # nutpie needs one tuning step
        chains=settings.chains,
        seed=chain_seed(settings.seed),
        save_warmup=False,
        progress_bar=settings.progressbar,
        target_accept=settings.target_accept,
        **settings.nuts_extra,
    )
    # the observed and constant data groups, as pm.sample adds them
    patch_nutpie_idata(idata, compiled.model, sampling_time=time.perf_counter() - start)
    if log_likelihood and "log_likelihood" not in idata.children:
        pm.compute_log_likelihood(idata, model=compiled.model, progressbar=False)
    return idata


def start_values(
    law: Law,
    design: Design,
    optimum: dict[str, np.ndarray],
    noise: dict[str, float],
    seed: int = 0,
) -> dict[str, Any]:
    """Initial values at the least-squares optimum, nudged inside open bounds and jittered by
    one part in a thousand (so chains do not start on a bound or on a saddle exactly)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}

    def inside(p: Param, value: np.ndarray) -> np.ndarray:
        value = value * (1.0 + 1e-3 * rng.standard_normal(np.shape(value)))
        span = (
            (p.upper - p.lower)
            if p.lower is not None and p.upper is not None
            else 1.0 + np.abs(value)
        )
        if p.lower is not None:
            value = np.maximum(value, p.lower + 1e-4 * span)
        if p.upper is not None:
            value = np.minimum(value, p.upper - 1e-4 * span)
        return value

    for p in law.params:
        value = np.asarray(optimum[p.name], dtype=float)[0]
        if p.name in design.groups:
            g = design.groups[p.name]
            if law.pooling == "partial":
                continue
            if g.reference is None:
                out[p.name] = inside(p, value)
            else:
                out[f"{p.name}_free"] = inside(p, np.delete(value, g.reference))
        else:
            out[p.name] = float(inside(p, value))
    if "sigma" in noise and noise["sigma"] > 0:
        out[noise_name("sigma")] = noise["sigma"]
    if "kappa" in noise:
        out[noise_name("kappa")] = float(np.clip(noise["kappa"], 1.0, 1e4))
    if "tau" in noise:
        out[noise_name("tau")] = float(np.clip(noise["tau"], 0.05, 5.0))
    return out


def is_centred(law: Law) -> bool:
    """Whether the law is sampled in the centred linear parametrisation."""
    form = linear_form(law)
    return form is not None and not _has_bounds(law, form)


def run(
    law: Law,
    design: Design,
    levels: dict[str, list[str]],
    options: Any,
    on_priors: Any = None,
) -> FitResult:
    """The Bayesian backend behind `scalelaw.fits.fit`: priors, starts, sampling, retry.

    `options.progress` hears each step: the least-squares start's (when the law needs one),
    the sampling, a retry and PSIS-LOO."""
    progress = getattr(options, "progress", None)
    announce(progress, 1 + bool(options.loo))
    needs_start = not is_centred(law)
    auto = any(p.prior is None for p in law.params)
    optimum: Any = None
    noise: dict[str, float] = {}
    if needs_start or auto:
        optimum, noise = least_squares_start(law, design, options)
    law, auto_names = resolve_priors(law, design, optimum)
    if on_priors is not None:
        on_priors(law, auto_names)
    needs_start = not is_centred(law)
    initvals = (
        start_values(law, design, optimum, noise, options.seed)
        if needs_start and optimum is not None
        else None
    )
    settings = SampleSettings(
        options.draws,
        options.tune,
        options.chains,
        options.seed,
        options.target_accept,
        options.progressbar,
        # a non-linear law on raw covariates has strongly correlated parameters (intercept
        # and slope of ln N ~ 23); nutpie's low-rank mass matrix adapts to those directions
        {"adaptation": "low_rank"} if needs_start else {},
    )
    budget = float(options.max_memory)
    compiled: Compiled | None = None  # the first run's, which a retry samples again

    def draw(settings: SampleSettings, what: str = "sampling") -> Any:
        nonlocal optimum, noise, compiled
        if progress:
            progress(
                f"{what}: {settings.chains} chain{'s' if settings.chains != 1 else ''} x "
                f"{settings.tune + settings.draws} steps ({settings.tune} tuning), "
                f"{design.n} rows"
            )
        whole = options.loo and loglik_fits(design.n, settings.chains * settings.draws, budget)
        try:
            compiled = compiled or compile_model(law, design, initvals)
            return sample(
                law, design, settings, initvals=initvals, log_likelihood=whole, compiled=compiled
            )
        except RuntimeError as first:  # PyMC's SamplingError, nutpie's failed initialisation
            # once more from the least-squares optimum (or, for a centred law, another seed)
            if optimum is None and not is_centred(law):
                optimum, noise = least_squares_start(law, design, options)
            start = (
                start_values(law, design, optimum, noise, options.seed + 1)
                if optimum is not None and not is_centred(law)
                else None
            )
            again = replace(settings, seed=settings.seed + 1)
            try:
                return sample(law, design, again, initvals=start, log_likelihood=whole)
            except RuntimeError:
                reason = (str(first).strip().splitlines() or [type(first).__name__])[0]
                raise InitialisationError(
                    f"{law.name}: the sampler could not start, also from the least-squares "
                    f"optimum ({reason}); try --backend lsq, or bounds and priors that keep the "
                    "law finite on the table"
                ) from None

    idata = draw(settings)
    diagnostics = sampling_diagnostics(idata, law)
    reasons = retry_reasons(diagnostics, settings)
    if reasons and options.retry:
        settings = retry_settings(settings, diagnostics)
        announce(progress, 1)
        idata = draw(settings, f"retry ({', '.join(reasons)})")
        diagnostics = sampling_diagnostics(idata, law)
        diagnostics["retry"] = {
            "reason": ", ".join(reasons),
            "target_accept": settings.target_accept,
            "tune": settings.tune,
            "draws": settings.draws,
            "first_tune": options.tune,
            "first_draws": options.draws,
        }
    if options.loo and progress:
        progress("PSIS-LOO")
    if options.loo and "log_likelihood" in idata.children:
        diagnostics.update(loo_diagnostics(idata))
    elif options.loo:
        loo, pointwise = chunked_loo(idata, law, design, budget)
        diagnostics.update(loo)
        idata[POINTWISE_LOO] = pointwise
    diagnostics["auto_priors"] = auto_names
    diagnostics["tune"] = settings.tune
    return FitResult(
        law=law,
        backend="bayes",
        draws=posterior_draws(idata, law),
        levels=levels,
        idata=idata,
        diagnostics=diagnostics,
        noise=noise_draws(idata),
    )


class InitialisationError(ScalelawError):
    """The sampler could not start, from its own start or from the least-squares optimum."""


def least_squares_start(law: Law, design: Design, options: Any) -> tuple[Any, dict[str, float]]:
    """The multi-start least-squares optimum and its noise: where the chains start."""
    best = lsq.fit(
        law,
        design,
        lsq.LsqSettings(
            bootstrap=0,
            seed=options.seed,
            refine=options.refine,
            starts=options.starts,
            huber_delta=1e-3 if law.transform == "log" else 0.05,
            progress=getattr(options, "progress", None),
        ),
    )
    return best.point, best.noise


def ess_needed(chains: int, draws: int) -> float:
    """Bulk ESS below this is too little (Vehtari et al. 2021: 100 per chain, at most 400)."""
    return min(400.0, 0.1 * chains * draws)


def slow_mixing(diagnostics: dict[str, Any], settings: SampleSettings) -> bool:
    """R-hat above 1.01 or too little bulk ESS: chains that have not mixed."""
    return diagnostics["rhat_max"] > 1.01 or diagnostics["ess_bulk_min"] < ess_needed(
        settings.chains, settings.draws
    )


def retry_reasons(diagnostics: dict[str, Any], settings: SampleSettings) -> list[str]:
    """Why a first run deserves one automatic retry."""
    out = []
    if diagnostics["rhat_max"] > 1.01:
        out.append(f"R-hat {diagnostics['rhat_max']:.3f}")
    if diagnostics["ess_bulk_min"] < ess_needed(settings.chains, settings.draws):
        out.append(f"bulk ESS {diagnostics['ess_bulk_min']:.0f}")
    if diagnostics["divergences"] > 0 and settings.target_accept < 0.99:
        out.append(f"{diagnostics['divergences']} divergences")
    return out


def retry_settings(settings: SampleSettings, diagnostics: dict[str, Any]) -> SampleSettings:
    """The settings of the one retry, by what went wrong in the first run."""
    out = replace(settings)
    # divergences: smaller steps; slow mixing (R-hat, ESS): longer adaptation and chains,
    # and somewhat smaller steps too, since the retry is final and divergences that first
    # appear in it could not be retried again
    if diagnostics["divergences"] > 0:
        out.target_accept = max(out.target_accept, 0.99)
    if slow_mixing(diagnostics, settings):
        out.tune *= 2
        out.draws *= 2
        out.target_accept = max(out.target_accept, 0.95)
    return out


def ignore_arviz_nan() -> None:
    """Inside a `warnings.catch_warnings()` block: R-hat and ESS of a constant draw (a group
    effect's pinned reference level) divide zero by zero inside ArviZ; the NaN is skipped by
    every maximum and minimum taken of them, not a problem to warn about."""
    warnings.filterwarnings(
        "ignore", "invalid value encountered", RuntimeWarning, module=r"arviz_stats\."
    )


def sampling_diagnostics(idata: Any, law: Law) -> dict[str, Any]:
    """R-hat and bulk ESS per parameter (law and noise), divergences, chains and draws."""
    import arviz as az  # deferred: heavy

    post = idata["posterior"]
    names = law.param_names + [
        noise_name(n) for n in NOISE_PARAMS if noise_name(n) in post.data_vars
    ]
    with warnings.catch_warnings():
        ignore_arviz_nan()
        rhat = az.rhat(idata, var_names=names)
        ess = az.ess(idata, var_names=names, method="bulk")
    rhat_by = {n: float(rhat[n].max()) for n in names}
    ess_by = {n: float(ess[n].min()) for n in names}
    return {
        "rhat_max": max(rhat_by.values()),
        "ess_bulk_min": min(ess_by.values()),
        "divergences": int(np.asarray(idata["sample_stats"]["diverging"].values).sum()),
        "chains": int(post.sizes["chain"]),
        "draws": int(post.sizes["draw"]),
        "rhat": rhat_by,
        "ess_bulk": ess_by,
    }


#: (draws x rows) arrays alive at the peak of a PSIS-LOO: the law's evaluation, the log
#: density, ArviZ's smoothed weights and sorting temporaries (a default fit of 201,600 rows
#: peaks at 2.9 GB with blocks sized for 20, 9.2 GB for 4: docs/fitting.md, "Large tables")
LOO_COPIES = 20


def loglik_fits(rows: int, draws: int, budget: float) -> bool:
    """Whether a full pointwise log-likelihood (and its PSIS-LOO) fits in `budget` bytes."""
    return 8.0 * rows * draws * LOO_COPIES <= budget


def chunked_loo(idata: Any, law: Law, design: Design, budget: float) -> tuple[dict[str, Any], Any]:
    """PSIS-LOO over blocks of rows, never holding more than `budget` bytes of log-likelihood.

    Each observation's leave-one-out estimate uses only its own column of the log-likelihood,
    so blocks of rows give exactly the full computation's pointwise values (ArviZ smooths each
    block; the relative efficiency is computed once from the whole posterior, as ArviZ does).
    Returns the diagnostics and a DataTree group with each row's ELPD-LOO and Pareto k.
    """

    import arviz as az  # deferred: heavy
    import xarray as xr  # deferred: heavy

    post = idata["posterior"]
    chains, per_chain = post.sizes["chain"], post.sizes["draw"]
    total = chains * per_chain
    draws = posterior_draws(idata, law)
    noise = noise_draws(idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(idata, group="posterior", method="mean")
    reff = float(np.hstack([np.ravel(ess[v].values) for v in ess.data_vars]).mean()) / total
    reff = reff if chains > 1 else 1.0
    blocks = row_blocks(design.n, total * LOO_COPIES, budget)
    step = blocks[0][1] - blocks[0][0]
    elpd_i, k_i, p_loo = [], [], 0.0
    try:
        for start, stop in blocks:
            block = design.rows(start, stop)
            ll = log_likelihood(law, block, draws, noise).reshape(chains, per_chain, -1)
            tree = xr.DataTree.from_dict(
                {
                    "posterior": xr.Dataset(
                        {"x": (("chain", "draw"), np.zeros((chains, per_chain)))}
                    ),
                    "log_likelihood": xr.Dataset({"obs": (("chain", "draw", "row"), ll)}),
                }
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                part = az.loo(tree, var_name="obs", pointwise=True, reff=reff)
            elpd_i.append(np.asarray(part.elpd_i).ravel())
            k_i.append(np.asarray(part.pareto_k).ravel())
            p_loo += float(part.p)
    except (ValueError, FloatingPointError) as e:
        return {"loo_error": str(e)}, xr.DataTree()
    elpd = np.concatenate(elpd_i)
    k = np.concatenate(k_i)
    note = (
        f"pointwise log-likelihood not kept ({design.n} rows x {total} draws: PSIS-LOO at once "
        f"would peak near {8.0 * design.n * total * LOO_COPIES / 1e9:.3g} GB, over the "
        f"{budget / 1e9:.3g} GB budget); "
        f"PSIS-LOO computed in blocks of {min(step, design.n)} rows"
    )
    out = {
        "elpd_loo": float(elpd.sum()),
        "elpd_loo_se": float(np.sqrt(elpd.size * np.var(elpd, ddof=1))),
        "p_loo": p_loo,
        "pareto_k_max": float(np.max(k)),
        "pareto_k_bad": int(np.sum(k > 0.7)),
        "loo_note": note,
    }
    return out, pointwise_loo_group(elpd, k)


def loo_diagnostics(idata: Any) -> dict[str, Any]:
    """PSIS-LOO: expected log predictive density and Pareto k, or why it failed."""
    import arviz as az  # deferred: heavy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            elpd = az.loo(idata, var_name="obs")
        except (ValueError, FloatingPointError) as e:
            # a degenerate fit (every score 0) has constant pointwise log-likelihoods,
            # whose Pareto tails cannot be fitted: report it, keep the fit
            return {"loo_error": str(e)}
    k = np.asarray(elpd.pareto_k).ravel()
    return {
        "elpd_loo": float(elpd.elpd),
        "elpd_loo_se": float(elpd.se),
        "p_loo": float(elpd.p),
        "pareto_k_max": float(np.max(k)),
        "pareto_k_bad": int(np.sum(k > 0.7)),
    }


def posterior_draws(idata: Any, law: Law) -> dict[str, np.ndarray]:
    """Posterior draws of each law parameter, flattened to (n_draws, ...)."""
    post = idata["posterior"]
    out: dict[str, np.ndarray] = {}
    for p in law.param_names:
        values = np.asarray(post[p].values, dtype=float)
        out[p] = values.reshape(-1, *values.shape[2:])
    return out


def noise_draws(idata: Any) -> dict[str, np.ndarray]:
    """Posterior draws of the likelihood's own parameters (sigma, nu, kappa)."""
    post = idata["posterior"]
    return {
        n: np.asarray(post[noise_name(n)].values, dtype=float).reshape(-1)
        for n in NOISE_PARAMS
        if noise_name(n) in post.data_vars
    }
