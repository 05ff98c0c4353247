"""Classification losses: softmax (cross-entropy), multiclass SVM, and a two-layer net.

Each loss returns the mean over the N examples of a minibatch (a scalar), so the upstream
gradient of its backward defaults to 1.0. The labels ``y`` (integers in ``0..C-1``) are used only as
indices, so their slot in the backward's result is None.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np


def softmax_loss(x: "N, C", y: "N"):
    N = x.shape[0]
    shift = np.max(x, axis=1, keepdims=True)
    shifted = x - shift
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    log_sums = np.log(sums)
    log_probs = shifted - log_sums
    correct = log_probs[np.arange(N), y]
    loss = -np.sum(correct) / N
    return loss


def svm_loss(x: "N, C", y: "N"):
    N = x.shape[0]
    correct = x[np.arange(N), y]
    margins = np.maximum(0, x - correct[:, None] + 1.0)
    # The correct class has margin 1.0 against itself; it must not count. The mask is built
    # from the labels alone, so no gradient flows through it.
    classes = np.arange(x.shape[1])
    mask = classes[None, :] != y[:, None]
    kept = margins * mask
    loss = np.sum(kept) / N
    return loss


def two_layer_net_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C", reg: float):
    N = X.shape[0]
    # affine - relu - affine
    z1 = X @ W1 + b1
    h1 = np.maximum(0, z1)
    scores = h1 @ W2 + b2
    # softmax loss
    shift = np.max(scores, axis=1, keepdims=True)
    shifted = scores - shift
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    log_probs = shifted - np.log(sums)
    data_loss = -np.sum(log_probs[np.arange(N), y]) / N
    # L2 regularization
    reg_loss = 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    loss = data_loss + reg_loss
    return loss
