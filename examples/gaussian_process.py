"""The negative log marginal likelihood of a Gaussian process, and its hyperparameters'
gradients.

A squared-exponential kernel with a length scale and a signal variance, plus noise. The
Cholesky factor ``L`` of the kernel matrix gives both the data-fit term (through two
solves) and the log determinant; ``slogdet`` is the other common spelling of the latter.
"""

# ruff: noqa: F821

import numpy as np


def gp_nll(log_length: float, log_signal: float, log_noise: float, X: "N, D", y: "N"):
    length = np.exp(log_length)
    signal = np.exp(log_signal)
    noise = np.exp(log_noise)
    diffs = X[:, None, :] - X[None, :, :]
    sqdist = np.sum(diffs**2, axis=2) / length**2
    K = signal * np.exp(-0.5 * sqdist) + noise * np.eye(X.shape[0])
    L = np.linalg.cholesky(K)
    z = np.linalg.solve(L, y)
    data_fit = 0.5 * np.sum(z**2)
    complexity = np.sum(np.log(np.diagonal(L)))
    nll = data_fit + complexity + 0.5 * X.shape[0] * np.log(2 * np.pi)
    return nll


def gp_nll_slogdet(log_length: float, log_signal: float, log_noise: float, X: "N, D", y: "N"):
    length = np.exp(log_length)
    signal = np.exp(log_signal)
    noise = np.exp(log_noise)
    diffs = X[:, None, :] - X[None, :, :]
    sqdist = np.sum(diffs**2, axis=2) / length**2
    K = signal * np.exp(-0.5 * sqdist) + noise * np.eye(X.shape[0])
    alpha = np.linalg.solve(K, y)
    sign, logdet = np.linalg.slogdet(K)
    nll = 0.5 * (y @ alpha) + 0.5 * logdet + 0.5 * X.shape[0] * np.log(2 * np.pi)
    return nll
