"""The staged computation of the CS231n backprop notes.

f(x, y) = (x + sigmoid(y)) / (sigmoid(x) + (x + y)**2), written one simple expression per
line. Its generated backward has the notes' statements, in the notes' order.
"""

import math


def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))  # sigmoid in numerator
    num = x + sigy  # numerator
    sigx = 1.0 / (1 + math.exp(-x))  # sigmoid in denominator
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr  # denominator
    invden = 1.0 / den
    f = num * invden  # done!
    return f
