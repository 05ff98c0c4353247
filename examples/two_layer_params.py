"""The two-layer net of CS231n with its weights in a dict, and a small net with its layers
in a list of ``(W, b)`` pairs: parameters that are containers of arrays.

``two_layer_loss`` reads ``params["W1"]``, ``params["b1"]``, ... as the assignments'
``TwoLayerNet.loss`` does; its backward returns the gradient as a dict with the same keys,
so a training step is ``for k in grads: params[k] -= lr * grads[k]``. The literal
annotation of ``params`` gives each array's shape (for ``gradgen check``; gradgen never
needs it). ``mlp_loss`` unpacks its list of layers; its gradient is a list of ``[dW, db]``
pairs. ``mlp_over_layers`` loops over a list of layers of any length (``for W, b in
layers:``); its backward walks the layers back, setting each one's ``[dW, db]``.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

import gradgen


def two_layer_loss(
    X: "N, D",
    y: "N",
    params: {"W1": "D, H", "b1": "H", "W2": "H, C", "b2": "C"},
    reg: float,
):
    h = np.maximum(0, X @ params["W1"] + params["b1"])
    scores = h @ params["W2"] + params["b2"]
    N = X.shape[0]
    shift = gradgen.stop_gradient(np.max(scores, axis=1, keepdims=True))
    exp_scores = np.exp(scores - shift)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    data_loss = np.sum(-np.log(probs[np.arange(N), y])) / N
    reg_loss = 0.5 * reg * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    loss = data_loss + reg_loss
    return loss


def mlp_loss(x: "N, D", layers: [("D, H", "H"), ("H, C", "C")], target: "N, C"):
    (W1, b1), (W2, b2) = layers
    h = np.tanh(x @ W1 + b1)
    out = h @ W2 + b2
    loss = 0.5 * np.sum((out - target) ** 2)
    return loss


def mlp_over_layers(x: "N, D", layers: [("D, H", "H"), ("H, C", "C")], target: "N, C"):
    h = x
    for W, b in layers:
        h = np.tanh(h @ W + b)
    loss = 0.5 * np.sum((h - target) ** 2)
    return loss
