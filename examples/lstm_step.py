"""An LSTM step that returns two values, and a caller that runs two steps.

``lstm_step`` is the step of the CS231n recurrent-networks assignment: the four gates come
from one product ``a = x @ Wx + prev_h @ Wh + b`` ("N, 4H"), sliced into the input, forget
and output gates and the candidate; it returns ``next_h, next_c``. Its backward takes one
upstream gradient per result, ``lstm_step_backward(..., *, dnext_h=None, dnext_c=None)``.
``lstm_two_steps`` unpacks the results of two steps sharing the weights and reduces the
last hidden state to a scalar loss: the weights' gradients add up over both steps, and the
second step's cell state, which reaches no loss, has a zero upstream.
"""

# Shape annotations ("N, D", "4H") are strings gradgen reads, not type expressions; c2, the
# second step's cell state, is unpacked but reaches no loss.
# ruff: noqa: F821, F722, RUF059

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step(x: "N, D", prev_h: "N, H", prev_c: "N, H", Wx: "D, 4H", Wh: "H, 4H", b: "4H"):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H : 2 * H])
    o = sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c


def lstm_two_steps(
    x1: "N, D",
    x2: "N, D",
    h0: "N, H",
    c0: "N, H",
    Wx: "D, 4H",
    Wh: "H, 4H",
    b: "4H",
    target: "N, H",
):
    h1, c1 = lstm_step(x1, h0, c0, Wx, Wh, b)
    h2, c2 = lstm_step(x2, h1, c1, Wx, Wh, b)
    diff = h2 - target
    loss = 0.5 * np.sum(diff * diff)
    return loss
