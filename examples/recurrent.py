"""Recurrent cells: one time step of a vanilla RNN, an LSTM and a GRU.

x is the input at this step ("N, D"), prev_h the previous hidden state ("N, H"). The LSTM
computes its four gates with one product, ``a = x @ Wx + prev_h @ Wh + b`` ("N, 4H"), and
slices it; the GRU keeps its update, reset and candidate weights apart. Each step returns
the next hidden state; its backward takes the gradient of that state.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np


def rnn_step(x: "N, D", prev_h: "N, H", Wx: "D, H", Wh: "H, H", b: "H"):
    xw = x @ Wx
    hw = prev_h @ Wh
    a = xw + hw + b
    next_h = np.tanh(a)
    return next_h


def lstm_step(x: "N, D", prev_h: "N, H", prev_c: "N, H", Wx: "D, G", Wh: "H, G", b: "G"):
    # G = 4 * H: the input, forget, output and candidate gates side by side.
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    ai = a[:, :H]
    af = a[:, H : 2 * H]
    ao = a[:, 2 * H : 3 * H]
    ag = a[:, 3 * H :]
    i = 1 / (1 + np.exp(-ai))
    f = 1 / (1 + np.exp(-af))
    o = 1 / (1 + np.exp(-ao))
    g = np.tanh(ag)
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h


def gru_step(
    x: "N, D",
    prev_h: "N, H",
    Wz: "D, H",
    Uz: "H, H",
    bz: "H",
    Wr: "D, H",
    Ur: "H, H",
    br: "H",
    Wn: "D, H",
    Un: "H, H",
    bn: "H",
):
    az = x @ Wz + prev_h @ Uz + bz
    z = 1 / (1 + np.exp(-az))
    ar = x @ Wr + prev_h @ Ur + br
    r = 1 / (1 + np.exp(-ar))
    an = x @ Wn + (r * prev_h) @ Un + bn
    n = np.tanh(an)
    next_h = (1 - z) * n + z * prev_h
    return next_h
