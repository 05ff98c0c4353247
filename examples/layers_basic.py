"""The basic layers of a CS231n-style network: affine, ReLU, sigmoid, tanh, affine-ReLU.

Each forward function is written in staged style, one operation per line, and returns one
array. The shape annotations ("N, D") let gradgen write the backward as by hand: the bias
gradient is ``dout.sum(axis=0)``, the weight gradient ``x.T @ dout``.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np


def affine(x: "N, D", w: "D, M", b: "M"):
    xw = x @ w
    out = xw + b
    return out


def relu(x: "N, D"):
    out = np.maximum(0, x)
    return out


def sigmoid(x: "N, D"):
    out = 1 / (1 + np.exp(-x))
    return out


def tanh(x: "N, D"):
    out = np.tanh(x)
    return out


def affine_relu(x: "N, D", w: "D, M", b: "M"):
    xw = x @ w
    a = xw + b
    out = np.maximum(0, a)
    return out
