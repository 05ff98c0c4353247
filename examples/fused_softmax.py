"""A linear classifier whose loss calls a fused softmax-cross-entropy, given as a user rule.

Staged, the softmax and the cross-entropy take a dozen backward statements; fused, their
gradient is one line: the probabilities, minus one at each correct class, over N. The user
writes that backward and declares it with ``@gradgen.backward_of``; gradgen does not look
into ``softmax_cross_entropy``, and the classifier's backward calls the user's. The
backward returns None for the labels, which have no gradient.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

import gradgen


def softmax_cross_entropy(scores: "N, C", y: "N") -> float:
    N = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    return loss


@gradgen.backward_of(softmax_cross_entropy)
def softmax_cross_entropy_backward(scores, y, dloss):
    N = scores.shape[0]
    probs = np.exp(scores - np.max(scores, axis=1, keepdims=True))
    probs /= np.sum(probs, axis=1, keepdims=True)
    probs[np.arange(N), y] -= 1.0
    dscores = probs * (dloss / N)
    return dscores, None


def linear_classifier_loss(W: "D, C", X: "N, D", y: "N", reg: float):
    scores = X @ W
    data_loss = softmax_cross_entropy(scores, y)
    reg_loss = reg * np.sum(W * W)
    loss = data_loss + reg_loss
    return loss
