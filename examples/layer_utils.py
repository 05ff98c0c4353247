"""The CS231n layer utilities, conv-free: layers as functions, and layers made of layers.

``affine``, ``relu`` and ``batchnorm`` (train mode, staged as the computational graph of
the notes' derivation: mu, xmu, sq, var, sqrtvar, ivar, xhat, gammax, out) are the building
blocks; ``affine_relu`` and ``affine_bn_relu`` call them, as the assignments'
``layer_utils.py`` does. gradgen writes each building block's backward once, and the
backward of a composed layer calls them in reverse order, with the gradients named after its
own variables (``da_bn``, ``da``) and each call's cache named after its result.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

EPS = 1e-5


def affine(x: "N, D", w: "D, M", b: "M"):
    out = x @ w + b
    return out


def relu(x: "N, D"):
    out = np.maximum(0, x)
    return out


def batchnorm(x: "N, D", gamma: "D", beta: "D"):
    N = x.shape[0]
    # step 1: the mean of each feature
    mu = np.sum(x, axis=0) / N
    # step 2: subtract it from every example
    xmu = x - mu
    # steps 3-5: the variance, and its square root with eps for numerical stability
    sq = xmu**2
    var = np.sum(sq, axis=0) / N
    sqrtvar = np.sqrt(var + EPS)
    # steps 6-7: normalize
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    # steps 8-9: scale and shift
    gammax = gamma * xhat
    out = gammax + beta
    return out


def affine_relu(x: "N, D", w: "D, M", b: "M"):
    a = affine(x, w, b)
    out = relu(a)
    return out


def affine_bn_relu(x: "N, D", w: "D, M", b: "M", gamma: "M", beta: "M"):
    a = affine(x, w, b)
    a_bn = batchnorm(a, gamma, beta)
    out = relu(a_bn)
    return out
