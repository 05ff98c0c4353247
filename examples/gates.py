"""The add, mul and max gates of the CS231n notes' "patterns in backward flow".

add passes its gradient to every input unchanged, max routes it to the larger input, mul
scales it by the other input. At x = 3, y = -4, z = 2, w = -1 the gradients are
(-8, 6, 2, 0).
"""


def circuit(x, y, z, w):
    xy = x * y
    zw = max(z, w)
    s = xy + zw
    f = s * 2
    return f
