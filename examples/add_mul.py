"""The first circuit of the CS231n backprop notes: f(x, y, z) = (x + y) * z.

At x = -2, y = 5, z = -4: f = -12 and the gradients are (-4, -4, 3).
"""


def f(x, y, z):
    q = x + y
    f = q * z
    return f
