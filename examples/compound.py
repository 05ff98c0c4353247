"""Compound expressions and rebinding: gradgen splits each statement into stages.

The annotations say the parameters are scalars, so no gradient needs summing back over
broadcast axes. Temporaries are named after the variable they help compute (a_tanh,
a_add), so the backward stays readable; a rebound name gets a new name per binding (h, h_2).
"""

import numpy as np

EPS = 1e-5


def layer(x: float, y: float, z: float):
    a = np.tanh(x * y + 1.0) / (1.0 + z**2)
    h = a * 2
    h = h * h + np.log(np.abs(x) + EPS)
    return np.sqrt(h + 1.0)
