"""A 2-D neuron with a sigmoid activation, from the CS231n backprop notes.

f(w, x) = 1 / (1 + exp(-(w0*x0 + w1*x1 + w2))). gradgen recognises the sigmoid written out
as one gate, whose local gradient is (1 - f) * f, computed from its own output.
"""

import math


def neuron(w0, w1, w2, x0, x1):
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1 + math.exp(-dot))
    return f
