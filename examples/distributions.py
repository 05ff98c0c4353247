"""Likelihoods written with special functions, and their gradients.

``call_price`` is the Black-Scholes price of a call, its normal CDF written with
``math.erf`` (its gradients are the Greeks). ``negative_binomial_nll`` is a count model whose
dispersion ``r`` enters through ``gammaln``: its gradient needs digamma, which the generated
code takes from ``scipy.special`` as the forward imports it. ``gaussian_nll`` and
``mixture_nll`` use ``scipy.stats.norm.logpdf`` and ``scipy.special.logsumexp`` (a mixture of
unit Gaussians, its log weights normalised by a log-sum-exp).
"""

# Shape annotations ("N", "K") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import math

import numpy as np
from scipy.special import gammaln, logsumexp
from scipy.stats import norm


def call_price(S: float, K: float, T: float, r: float, sigma: float):
    vol = sigma * math.sqrt(T)
    d1 = (math.log(S / K) + (r + 0.5 * sigma**2) * T) / vol
    d2 = d1 - vol
    N1 = 0.5 * (1.0 + math.erf(d1 / math.sqrt(2.0)))
    N2 = 0.5 * (1.0 + math.erf(d2 / math.sqrt(2.0)))
    return S * N1 - K * math.exp(-r * T) * N2


def negative_binomial_nll(log_mu: "N", log_r: float, y: "N"):
    mu = np.exp(log_mu)
    r = np.exp(log_r)
    log_p = (
        gammaln(y + r)
        - gammaln(r)
        - gammaln(y + 1)
        + r * np.log(r / (r + mu))
        + y * np.log(mu / (r + mu))
    )
    return -np.sum(log_p)


def gaussian_nll(x: "N", mu: float, log_sigma: float):
    return -np.sum(norm.logpdf(x, mu, np.exp(log_sigma)))


def mixture_nll(x: "N", means: "K", log_weights: "K"):
    log_w = log_weights - logsumexp(log_weights)
    log_components = norm.logpdf(x[:, None], means[None, :], 1.0) + log_w[None, :]
    return -np.sum(logsumexp(log_components, axis=1))
