"""Branches: an ``if`` on a flag, an ``elif`` chain on a string, and one on a value.

The backward has the same ``if`` on the same test and takes the side the forward took; a
gradient a side gives nothing to is zeros there (``db`` when ``use_bias`` is False).
"""

import numpy as np


def dense(x: "N, D", W: "D, H", b: "H", use_bias: bool = True, activation: str = "tanh"):
    out = x @ W
    if use_bias:
        out = out + b
    if activation == "tanh":
        h = np.tanh(out)
    elif activation == "relu":
        h = np.maximum(out, 0.0)
    else:
        h = out
    loss = np.sum(h * h)
    return loss


def huber(prediction: float, target: float, delta: float = 1.0):
    residual = prediction - target
    if residual > delta:
        loss = delta * (residual - 0.5 * delta)
    elif residual < -delta:
        loss = -delta * (residual + 0.5 * delta)
    else:
        loss = 0.5 * residual * residual
    return loss
