"""The two-layer net of the CS231n case study, written as a composition of layers.

``affine``, ``relu`` and ``softmax_loss`` are functions; ``two_layer_loss`` calls them, as
the assignments' network code does. gradgen generates each layer's backward once, and
``two_layer_loss_backward`` calls them in reverse order, naming each gradient after the
caller's variable (``dscores``, ``dh``). The labels ``y`` are data: they are used only as
indices, so their slot in the result is None.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

import gradgen


def affine(x: "N, D", w: "D, M", b: "M"):
    out = x @ w + b
    return out


def relu(x: "N, M"):
    out = np.maximum(0, x)
    return out


def softmax_loss(scores: "N, C", y: "N"):
    N = scores.shape[0]
    # Shifting by the row's maximum changes no probability: it only keeps exp from
    # overflowing, so no gradient flows through it.
    shift = gradgen.stop_gradient(np.max(scores, axis=1, keepdims=True))
    exp_scores = np.exp(scores - shift)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    correct_logprobs = -np.log(probs[np.arange(N), y])
    loss = np.sum(correct_logprobs) / N
    return loss


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C"):
    h = relu(affine(X, W1, b1))
    scores = affine(h, W2, b2)
    loss = softmax_loss(scores, y)
    return loss
