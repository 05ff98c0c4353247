"""A convolutional layer and max-pooling written with windows and einsum.

The shapes are CS231n's ``conv_forward_naive``: ``x`` is (N, C, H, W), ``w`` is (F, C, HH,
WW), ``b`` is (F,). ``sliding_window_view`` gives every HH x WW window of the padded input
as a view (no copy), and one ``einsum`` contracts each window with each filter: the
convolution as one line, without the four nested loops of the naive version.
"""

# Shape annotations ("N, C, H, W") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_forward(x: "N, C, H, W", w: "F, C, 3, 3", b: "F"):
    # stride 1, padding 1: the output keeps the input's height and width for 3 x 3 filters
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    HH, WW = w.shape[2], w.shape[3]
    windows = sliding_window_view(padded, (HH, WW), axis=(2, 3))  # (N, C, H, W, HH, WW)
    out = np.einsum("nchwij,fcij->nfhw", windows, w) + b[None, :, None, None]
    return out


def max_pool_forward(x: "N, C, H, W"):
    # 2 x 2 windows, stride 2: every other window of the stride-1 ones
    windows = sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2]
    out = np.max(windows, axis=(4, 5))
    return out


def conv_relu_pool(x: "N, C, H, W", w: "F, C, 3, 3", b: "F"):
    a = conv_forward(x, w, b)
    r = np.maximum(a, 0)
    out = max_pool_forward(r)
    return out
