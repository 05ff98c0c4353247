"""Recurrent networks over time: the step functions, and loops calling them once per step.

``rnn`` is the CS231n assignment's ``rnn_forward``: a loop over the time steps, each calling
``rnn_step`` on one slice of the input and the previous hidden state, the states collected
with ``append`` and stacked; ``rnn_filled`` writes them into an array made for them
(``h[:, t, :] = next_h``), as the assignment's forward does. gradgen writes ``rnn_backward`` as the assignment's solution
does: a loop over the steps in reverse, calling the step's backward, adding into ``dWx``,
``dWh`` and ``db`` and carrying ``dh`` to the step before. ``lstm`` does the same with a
step that returns two states.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np


def rnn_step(x: "N, D", prev_h: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h


def rnn(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    T = x.shape[1]
    h = h0
    hs = []
    for t in range(T):
        h = rnn_step(x[:, t, :], h, Wx, Wh, b)
        hs.append(h)
    out = np.stack(hs, axis=1)
    return out


def rnn_filled(x: "N, T, D", h0: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    # The same RNN, the hidden states written into an array made for them.
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H))
    prev_h = h0
    for t in range(T):
        next_h = rnn_step(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = next_h
        prev_h = next_h
    return h


def lstm_step(x: "N, D", prev_h: "N, H", prev_c: "N, H", Wx: "D, G", Wh: "H, G", b: "G"):
    # G = 4 * H: the input, forget, output and candidate gates side by side.
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = 1 / (1 + np.exp(-a[:, :H]))
    f = 1 / (1 + np.exp(-a[:, H : 2 * H]))
    o = 1 / (1 + np.exp(-a[:, 2 * H : 3 * H]))
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c


def lstm(x: "N, T, D", h0: "N, H", Wx: "D, G", Wh: "H, G", b: "G"):
    T = x.shape[1]
    h = h0
    c = np.zeros_like(h0)
    hs = []
    for t in range(T):
        h, c = lstm_step(x[:, t, :], h, c, Wx, Wh, b)
        hs.append(h)
    return np.stack(hs, axis=1)
