"""The Bayesian backend: builds a PyMC model from a `Law` and samples it with nutpie.

Laws that are linear in their parameters are sampled in a centred and scaled parametrisation
(each feature standardised, the intercept taken at the feature means) and mapped back to the
law's own parameters; the law's priors are kept exactly, as potentials on the original scale
(the map is linear, so its Jacobian is constant). This removes the strong posterior correlation
between intercept and slopes that raw ``ln N ~ 23`` features create.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelaw.fits.design import Design, linear_form
from scalelaw.fits.law import Law, Param, Prior


@dataclass
class SampleSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 0
    target_accept: float = 0.9
    progressbar: bool = False


def _prior_logp(prior: Prior, value: Any) -> Any:
    import pymc as pm

    dist = _dist(prior)
    return pm.logp(dist, value)


def _dist(prior: Prior) -> Any:
    import pymc as pm

    kw = prior.kwargs
    match prior.dist:
        case "normal":
            return pm.Normal.dist(**kw)
        case "student_t":
            return pm.StudentT.dist(**kw)
        case "halfnormal":
            return pm.HalfNormal.dist(**kw)
        case "lognormal":
            return pm.LogNormal.dist(**kw)
        case "uniform":
            return pm.Uniform.dist(**kw)
        case "exponential":
            return pm.Exponential.dist(**kw)
        case _:
            return pm.Gamma.dist(**kw)


def _free_param(p: Param, shape: tuple[int, ...] = (), initval: Any = None) -> Any:
    """A parameter with its prior, truncated to its bounds where the prior's support is wider."""
    import pymc as pm

    kw = p.prior.kwargs
    natural = {
        "normal": (None, None),
        "student_t": (None, None),
        "halfnormal": (0.0, None),
        "lognormal": (0.0, None),
        "exponential": (0.0, None),
        "gamma": (0.0, None),
        "uniform": (kw.get("lower"), kw.get("upper")),
    }[p.prior.dist]
    tighter = (p.lower is not None and (natural[0] is None or p.lower > natural[0])) or (
        p.upper is not None and (natural[1] is None or p.upper < natural[1])
    )
    extra: dict[str, Any] = {"shape": shape} if shape else {}
    if initval is not None:
        extra["initval"] = initval
    if not tighter:
        dist_cls = {
            "normal": pm.Normal,
            "student_t": pm.StudentT,
            "halfnormal": pm.HalfNormal,
            "lognormal": pm.LogNormal,
            "uniform": pm.Uniform,
            "exponential": pm.Exponential,
            "gamma": pm.Gamma,
        }[p.prior.dist]
        return dist_cls(p.name, **kw, **extra)
    return pm.Truncated(p.name, _dist(p.prior), lower=p.lower, upper=p.upper, **extra)


def _group_vector(name: str, p: Param, levels: int, reference: int | None, pooling: str) -> Any:
    """Per-level values of a group effect: fixed (one level pinned at 0) or partially pooled."""
    import pymc as pm
    import pytensor.tensor as pt

    if pooling == "partial":
        scale = p.prior.kwargs.get("sigma", 1.0)
        tau = pm.HalfNormal(f"{name}_sd", sigma=scale)
        raw = pm.Normal(f"{name}_z", 0.0, 1.0, shape=levels)
        return pm.Deterministic(name, tau * raw, dims=f"{name}_level")
    if reference is None:
        return _free_param(p, (levels,))
    free = _free_param(Param(f"{name}_free", p.prior, p.lower, p.upper), (levels - 1,))
    full = pt.concatenate([free[:reference], pt.zeros(1), free[reference:]])
    return pm.Deterministic(name, full, dims=f"{name}_level")


def build_model(law: Law, design: Design, *, initvals: dict[str, float] | None = None) -> Any:
    """The PyMC model of `law` on `design` (observations included)."""
    import pymc as pm
    import pytensor.tensor as pt

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
                    start = (initvals or {}).get(p.name)
                    env[p.name] = _free_param(p, initval=start)
            eta = law.expr.evaluate(env, lib="pytensor")
        eta = pt.broadcast_to(eta, (design.n,))
        _likelihood(law, design, eta)
    return model


def _has_bounds(law: Law, form: Any) -> bool:
    names = [s for s, _ in form.slopes] + ([form.intercept] if form.intercept else [])
    return any(
        law.param(n).lower is not None
        or law.param(n).upper is not None
        or not law.param(n).prior.location_scale
        for n in names
    )


def _linear_eta(law: Law, form: Any, design: Design, env: dict[str, Any]) -> Any:
    import pymc as pm
    import pytensor.tensor as pt

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
    import pymc as pm
    import pytensor.tensor as pt

    from scalelaw.fits.law import inverse_link

    mu = inverse_link(law.link, eta, lib="pytensor")
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
            kappa = pm.LogNormal("kappa", mu=3.0, sigma=1.5)
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
            kappa = pm.LogNormal("kappa", mu=3.0, sigma=1.5)
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
            sigma = pm.HalfNormal("sigma", sigma=scale)
            if law.likelihood == "student_t":
                nu = pm.Gamma("nu", alpha=2.0, beta=0.1)
                pm.StudentT("obs", nu=nu, mu=loc, sigma=sigma, observed=y, dims="row")
            else:
                pm.Normal("obs", mu=loc, sigma=sigma, observed=y, dims="row")


def _fractional_counts(law: Law, design: Design, eta: Any, mu: Any) -> None:
    """Binomial or beta-binomial over successes that are not whole (partial credit).

    The log-probabilities are the usual ones with factorials written as gamma functions, so a
    row scoring 2.5 of 5 contributes between its neighbours 2 and 3. Predictive draws are whole
    counts from the ordinary distribution.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.tensor.math import gammaln, softplus

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
    kappa = pm.LogNormal("kappa", mu=3.0, sigma=1.5)
    p = pt.clip(mu, 1e-9, 1 - 1e-9)

    def beta_binomial_logp(value: Any, n: Any, a: Any, b: Any) -> Any:
        from pytensor.tensor.special import betaln

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


def sample(
    law: Law,
    design: Design,
    settings: SampleSettings,
    *,
    initvals: dict[str, float] | None = None,
) -> Any:
    """Sample the posterior with nutpie; return an ArviZ DataTree with log-likelihood."""
    import pymc as pm

    model = build_model(law, design, initvals=initvals)
    with model:
        idata = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            random_seed=settings.seed,
            nuts_sampler="nutpie",
            progressbar=settings.progressbar,
            nuts={"target_accept": settings.target_accept},
            compute_convergence_checks=False,
        )
    if "log_likelihood" not in idata.children:
        # Start values make a model that PyMC cannot transform; an identical one without them can.
        plain = model if not initvals else build_model(law, design)
        pm.compute_log_likelihood(idata, model=plain, progressbar=False)
    return idata


def posterior_draws(idata: Any, law: Law) -> dict[str, np.ndarray]:
    """Posterior draws of each law parameter, flattened to (n_draws, ...)."""
    post = idata["posterior"]
    out: dict[str, np.ndarray] = {}
    for p in law.param_names:
        values = np.asarray(post[p].values, dtype=float)
        out[p] = values.reshape(-1, *values.shape[2:])
    return out
