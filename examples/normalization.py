"""Normalization and regularization layers: batch normalization, layer normalization, dropout.

``batchnorm_train`` is staged like the well-known computational-graph derivation of its
backward pass (mu, xmu, sq, var, sqrtvar, ivar, xhat, gammax, out): gradgen writes one
adjoint statement per stage, in reverse, as that derivation does by hand.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

EPS = 1e-5


def batchnorm_train(x: "N, D", gamma: "D", beta: "D"):
    N = x.shape[0]
    mu = np.sum(x, axis=0) / N
    xmu = x - mu
    sq = xmu**2
    var = np.sum(sq, axis=0) / N
    sqrtvar = np.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    gammax = gamma * xhat
    out = gammax + beta
    return out


def layernorm(x: "N, D", gamma: "D", beta: "D"):
    mu = np.mean(x, axis=1, keepdims=True)
    xmu = x - mu
    sq = xmu**2
    var = np.mean(sq, axis=1, keepdims=True)
    sqrtvar = np.sqrt(var + EPS)
    xhat = xmu / sqrtvar
    out = gamma * xhat + beta
    return out


def dropout(x: "N, D", mask: "N, D", p: float):
    # Inverted dropout. The mask (1 where a unit is kept, 0 elsewhere) is a parameter, not
    # drawn here with np.random: the backward recomputes the forward, and would draw other
    # random numbers than the forward pass did. The caller draws the mask once and passes
    # the same one to the forward and to the backward.
    kept = x * mask
    out = kept / p
    return out
