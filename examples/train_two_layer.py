"""Train a tiny two-layer network with forward/backward pairs, chained by hand.

This is the layer API of the CS231n assignments: each layer's ``forward`` returns its output
and a cache, each ``backward`` takes the upstream gradient and that cache, and the network
calls them in order, then in reverse order. Here the layers are forward functions and
``@gradgen.differentiable(pairs=True)`` writes their ``forward``/``backward`` pairs when this
module is imported; nothing in the backward pass is written by hand.

    python examples/train_two_layer.py

This file is a script, not a forward file for the command line (it has a loop), so it opts
out of the folder mapping with the comment line below.
"""

# gradgen: skip-file
# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np

import gradgen


@gradgen.differentiable(pairs=True)
def affine(x: "N, D", w: "D, M", b: "M"):
    out = x @ w + b
    return out


@gradgen.differentiable(pairs=True)
def relu(x: "N, M"):
    out = np.maximum(0, x)
    return out


@gradgen.differentiable(pairs=True)
def softmax_loss(scores: "N, C", y):
    N = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_norm = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_norm
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    return loss


def spirals(points: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n toy data set: ``classes`` interleaved spiral arms in the plane."""
    X = np.zeros((points * classes, 2))
    y = np.zeros(points * classes, dtype=int)
    for k in range(classes):
        rows = slice(points * k, points * (k + 1))
        radius = np.linspace(0.0, 1.0, points)
        angle = np.linspace(k * 4.0, (k + 1) * 4.0, points) + rng.normal(size=points) * 0.2
        X[rows] = np.c_[radius * np.sin(angle), radius * np.cos(angle)]
        y[rows] = k
    return X, y


def train(
    steps: int = 2000, hidden: int = 64, learning_rate: float = 1.0, seed: int = 0
) -> tuple[list[float], float]:
    """Full-batch gradient descent on the spirals; returns the losses and the accuracy."""
    rng = np.random.default_rng(seed)
    X, y = spirals(100, 3, rng)
    W1 = 0.5 * rng.normal(size=(2, hidden))
    b1 = np.zeros(hidden)
    W2 = 0.5 * rng.normal(size=(hidden, 3))
    b2 = np.zeros(3)
    losses = []
    for _ in range(steps):
        # forward, keeping each layer's cache
        h, affine1_cache = affine.forward(X, W1, b1)
        a, relu_cache = relu.forward(h)
        scores, affine2_cache = affine.forward(a, W2, b2)
        loss, loss_cache = softmax_loss.forward(scores, y)
        losses.append(float(loss))
        # backward, layer by layer in reverse order
        dscores, _ = softmax_loss.backward(1.0, loss_cache)  # labels get None
        da, dW2, db2 = affine.backward(dscores, affine2_cache)
        dh = relu.backward(da, relu_cache)
        _, dW1, db1 = affine.backward(dh, affine1_cache)
        # the gradients are the caller's own arrays: updating in place is safe
        W1 -= learning_rate * dW1
        b1 -= learning_rate * db1
        W2 -= learning_rate * dW2
        b2 -= learning_rate * db2
    scores = np.maximum(0, X @ W1 + b1) @ W2 + b2
    accuracy = float(np.mean(np.argmax(scores, axis=1) == y))
    return losses, accuracy


if __name__ == "__main__":
    losses, accuracy = train()
    for step in range(0, len(losses), 250):
        print(f"step {step:5d}  loss {losses[step]:.4f}")
    print(f"final loss {losses[-1]:.4f}, training accuracy {accuracy:.1%}")
