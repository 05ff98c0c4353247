"""Scaled dot-product attention, one head: softmax(q @ k.T / sqrt(D)) @ v.

q, k and v hold one D-dimensional query, key and value per position ("T, D"). The softmax
runs along the last axis, shifted by its maximum for numerical safety (the shift does not
change the result, and the gradient that flows into it sums to zero). ``attention``
returns the attended values (an array: its backward takes their gradient);
``attention_loss`` reduces them against a target to a scalar.

The scale is ``math.sqrt(D)``, a Python float, not ``np.sqrt(D)``: that is a float64 numpy
scalar, which would turn float32 scores (and so every gradient) into float64.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import math

import numpy as np


def attention(q: "T, D", k: "T, D", v: "T, D"):
    D = q.shape[1]
    scores = q @ k.T / math.sqrt(D)
    shift = np.max(scores, axis=-1, keepdims=True)
    shifted = scores - shift
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=-1, keepdims=True)
    weights = exps / sums
    out = weights @ v
    return out


def attention_loss(q: "T, D", k: "T, D", v: "T, D", target: "T, D"):
    D = q.shape[1]
    scores = q @ k.T / math.sqrt(D)
    shift = np.max(scores, axis=-1, keepdims=True)
    shifted = scores - shift
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=-1, keepdims=True)
    weights = exps / sums
    out = weights @ v
    diff = out - target
    loss = 0.5 * np.sum(diff * diff)
    return loss
