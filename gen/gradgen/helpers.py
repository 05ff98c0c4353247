"""Small functions a generated module may define for itself (never imported from gradgen).

They are written with ``numpy.``; the emitter spells that with the module's own alias. Each
is added only to modules whose backward code calls it. Lines stay short so that the
decorator can also define them inside a backward function, indented, as they are.
"""

from __future__ import annotations

HELPERS: dict[str, str] = {
    "_unbroadcast": '''
def _unbroadcast(grad, like):
    """grad summed over the axes numpy broadcast like along."""
    shape = numpy.shape(like)
    if numpy.shape(grad) == shape:
        return grad
    extra = numpy.ndim(grad) - len(shape)
    if extra > 0:
        grad = numpy.sum(grad, axis=tuple(range(extra)))
    kept = tuple(
        i
        for i, size in enumerate(shape)
        if size == 1 and numpy.shape(grad)[i] != 1
    )
    if kept:
        grad = numpy.sum(grad, axis=kept, keepdims=True)
    return grad
''',
    "_matmul_dx": '''
def _matmul_dx(grad, x, y):
    """Gradient of x @ y with respect to x (1-D or 2-D)."""
    x2 = numpy.atleast_2d(x)
    y2 = numpy.reshape(y, (numpy.shape(y)[0], -1))
    grad2 = numpy.reshape(grad, (x2.shape[0], y2.shape[1]))
    return numpy.reshape(grad2 @ y2.T, numpy.shape(x))
''',
    "_matmul_dy": '''
def _matmul_dy(grad, x, y):
    """Gradient of x @ y with respect to y (1-D or 2-D)."""
    x2 = numpy.atleast_2d(x)
    y2 = numpy.reshape(y, (numpy.shape(y)[0], -1))
    grad2 = numpy.reshape(grad, (x2.shape[0], y2.shape[1]))
    return numpy.reshape(x2.T @ grad2, numpy.shape(y))
''',
}


def helper_source(name: str, numpy_alias: str) -> list[str]:
    """The lines defining helper ``name``, with numpy spelled ``numpy_alias``."""
    text = HELPERS[name].strip("\n").replace("numpy.", f"{numpy_alias}.")
    return text.splitlines()
