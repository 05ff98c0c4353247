"""Poisson regression: the negative log-likelihood of counts y at rates exp(X @ beta).

log p(y | mu) = y log(mu) - mu - log(y!), and log(y!) = gammaln(y + 1). gradgen has a rule
for ``scipy.special.gammaln`` but needs none here: the counts are data, so no gradient flows
through it, and it is computed as a constant. The backward is generated with respect to
``beta`` only (``wrt = { poisson_nll = ["beta"] }`` in pyproject.toml, or
``--wrt poisson_nll=beta``), and is the textbook ``X.T @ (mu - y)``.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np
from scipy.special import gammaln


def poisson_nll(beta: "D", X: "N, D", y: "N"):
    eta = X @ beta  # the log of each count's expected value
    mu = np.exp(eta)
    nll = np.sum(mu - y * eta + gammaln(y + 1))
    return nll
