"""Variational inference with the reparameterization trick: a Gaussian q(z) = N(mu, sigma^2)
fitted to the posterior of a Bayesian linear regression (prior z ~ N(0, I), y ~ N(X z, I)).

The negative ELBO is estimated from one draw. The draw is written as noise that does not
depend on the parameters, transformed by them (z = mu + sigma * eps), so the gradient flows
through mu and sigma and never into the draw: ``rs.normal(mu, sigma)`` would be refused.
``negative_elbo`` draws, so gradgen writes ``negative_elbo_value_and_grad`` (the forward
once: one draw, its value reused by the backward) and no ``negative_elbo_backward``, which
would recompute the forward and draw other numbers. The generated module reads ``rs`` from
this one, so reseeding it (``rs.seed(0)``) repeats the draws.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np
import numpy.random as npr

rs = npr.RandomState(0)


def log_joint(z: "D", X: "N, D", y: "N"):
    resid = y - X @ z
    return -0.5 * np.sum(resid**2) - 0.5 * np.sum(z**2)


def gaussian_entropy(log_sigma: "D"):
    return np.sum(log_sigma) + 0.5 * log_sigma.shape[0] * (1.0 + np.log(2 * np.pi))


def negative_elbo(mu: "D", log_sigma: "D", X: "N, D", y: "N"):
    eps = rs.randn(mu.shape[0])
    z = mu + np.exp(log_sigma) * eps
    elbo = log_joint(z, X, y) + gaussian_entropy(log_sigma)
    return -elbo
