"""Small functions a generated module may define for itself (never imported from gradgen).

They are written with ``numpy.`` and ``math.``; the emitter spells those with the module's own
aliases (importing the library where the module does not). Each
is added only to modules whose backward code calls it. Lines stay short so that the
decorator can also define them inside a backward function, indented, as they are.
"""

from __future__ import annotations

from gradgen.rules import Aliasing

HELPERS: dict[str, str] = {
    "_unbroadcast": '''
def _unbroadcast(grad, like):
    """grad summed over the axes numpy broadcast like along."""
    shape = like.shape if isinstance(like, numpy.ndarray) else numpy.shape(like)
    if isinstance(grad, numpy.ndarray) and grad.shape == shape:
        return grad  # the common case, without a numpy call
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
    "_item_gradient": '''
def _item_gradient(grad, like):
    """The gradient of like, written into entries whose gradient is grad: summed
    where numpy broadcast it, in its shape (numpy drops its leading 1s)."""
    missing = numpy.ndim(like) - numpy.ndim(grad)
    if missing > 0:
        grad = numpy.reshape(grad, (1,) * missing + numpy.shape(grad))
    return _unbroadcast(grad, like)
''',
    "_keepdims": '''
def _keepdims(value, like, axis):
    """value, like reduced over axis, shaped as keepdims=True gives it."""
    if numpy.ndim(like) == 0:
        return value  # numpy reduces a number over axis 0 or -1 to itself
    return numpy.expand_dims(value, axis)
''',
    "_everywhere": '''
def _everywhere(grad, like):
    """grad as an array of like's shape: a number stands for every entry."""
    if isinstance(grad, numpy.ndarray) and grad.shape == numpy.shape(like):
        return grad
    return grad + numpy.zeros_like(like)
''',
    "_upstream": '''
def _upstream(grad, like):
    """The upstream gradient of like: zeros when None (like does not reach the loss)."""
    if grad is None:
        return numpy.zeros_like(like, dtype=numpy.result_type(like, 1.0))
    if isinstance(grad, numpy.ndarray) and grad.shape == numpy.shape(like):
        return grad
    return grad + numpy.zeros_like(like)
''',
    "_like": '''
def _like(value):
    """value's shape and dtype without its memory: a cache entry read for no more."""
    if type(value) is not numpy.ndarray or value.dtype.hasobject:
        return value
    zero, strides = numpy.zeros((), value.dtype), (0,) * value.ndim
    like = numpy.ndarray(value.shape, value.dtype, zero, strides=strides)
    like.flags.writeable = False  # one number seen everywhere: never written into
    return like
''',
    "_split_like": '''
def _split_like(grad, items, axis):
    """grad cut along axis into pieces as long as items are (np.concatenate's)."""
    sizes = [numpy.shape(item)[axis] for item in items]
    return numpy.split(grad, numpy.cumsum(sizes)[:-1], axis=axis)
''',
    "_or_zero": '''
def _or_zero(grad):
    """The upstream gradient of a number: 0.0 when None (it does not reach the loss)."""
    return 0.0 if grad is None else grad
''',
    "_matmul_dx": '''
def _matmul_dx(grad, x, y):
    """Gradient of x @ y with respect to x, by numpy's matmul rules."""
    x2 = numpy.expand_dims(x, 0) if numpy.ndim(x) == 1 else x
    y2 = numpy.expand_dims(y, -1) if numpy.ndim(y) == 1 else y
    grad2 = numpy.expand_dims(grad, -1) if numpy.ndim(y) == 1 else grad
    grad2 = numpy.expand_dims(grad2, -2) if numpy.ndim(x) == 1 else grad2
    dx = _unbroadcast(grad2 @ numpy.swapaxes(y2, -1, -2), x2)
    return numpy.reshape(dx, numpy.shape(x))
''',
    "_matmul_dy": '''
def _matmul_dy(grad, x, y):
    """Gradient of x @ y with respect to y, by numpy's matmul rules."""
    x2 = numpy.expand_dims(x, 0) if numpy.ndim(x) == 1 else x
    y2 = numpy.expand_dims(y, -1) if numpy.ndim(y) == 1 else y
    grad2 = numpy.expand_dims(grad, -1) if numpy.ndim(y) == 1 else grad
    grad2 = numpy.expand_dims(grad2, -2) if numpy.ndim(x) == 1 else grad2
    dy = _unbroadcast(numpy.swapaxes(x2, -1, -2) @ grad2, y2)
    return numpy.reshape(dy, numpy.shape(y))
''',
    "_dot_dx": '''
def _dot_dx(grad, x, y):
    """Gradient of numpy.dot(x, y) with respect to x (1-D or 2-D)."""
    _dot_ranks(x, y)
    return _matmul_dx(grad, x, y)
''',
    "_dot_dy": '''
def _dot_dy(grad, x, y):
    """Gradient of numpy.dot(x, y) with respect to y (1-D or 2-D)."""
    _dot_ranks(x, y)
    return _matmul_dy(grad, x, y)
''',
    "_dot_ranks": '''
def _dot_ranks(x, y):
    """np.dot above 2-D is not @: refuse rather than return a wrong gradient."""
    if not (1 <= numpy.ndim(x) <= 2 and 1 <= numpy.ndim(y) <= 2):
        raise ValueError("gradgen: np.dot is differentiated for 1-D and 2-D arrays; use @")
''',
    # The derivative of lgamma, which the math module lacks: the recurrence takes x to 10 or
    # more, where seven terms of the asymptotic series are exact in float64 (error < 1e-15).
    "_digamma": '''
def _digamma(x):
    """The digamma function, the derivative of lgamma (and gamma = exp(lgamma))."""
    if x < 0.5:  # reflected: digamma(1 - x) - pi / tan(pi * x), tan of period pi
        turn = math.tan(math.pi * (x - math.floor(x)))
        return _digamma(1.0 - x) - math.pi / turn
    total = 0.0
    while x < 10.0:  # digamma(x) = digamma(x + 1) - 1 / x; never x += 1: x may be an array
        total = total - 1.0 / x
        x = x + 1.0
    s = 1.0 / (x * x)
    tail = 1 / 240 - s * (1 / 132 - s * (691 / 32760 - s / 12))
    series = s * (1 / 12 - s * (1 / 120 - s * (1 / 252 - s * tail)))
    return total + math.log(x) - 0.5 / x - series
''',
    # (cos(pi x) - sinc(x)) / x loses its digits near 0, where the two nearly cancel; there
    # its Taylor series is exact in float64 (the first term left out is below 1e-17).
    "_sinc_derivative": '''
def _sinc_derivative(x):
    """The derivative of numpy.sinc at x."""
    x = numpy.asarray(x, dtype=numpy.result_type(x, 1.0))
    near = numpy.abs(x) < 0.02
    far = numpy.where(near, 1.0, x)
    slope = (numpy.cos(numpy.pi * far) - numpy.sinc(far)) / far
    s = (numpy.pi * x) ** 2
    taylor = -1 / 3 + s * (1 / 30 - s * (1 / 840 - s / 45360))
    return numpy.where(near, numpy.pi**2 * x * taylor, slope)
''',
    "_prod_others": '''
def _prod_others(x, axis):
    """Each entry of x replaced by the product of the others numpy.prod(x, axis)
    multiplies it with: products from either side, no division, so exact where x
    has zeros."""
    x = numpy.asarray(x, dtype=numpy.result_type(x, 1.0))
    rank = numpy.ndim(x)
    axes = range(rank) if axis is None else numpy.atleast_1d(axis)
    reduced = sorted({int(a) % rank for a in axes}) if rank else []
    kept = [a for a in range(rank) if a not in reduced]
    moved = numpy.transpose(x, kept + reduced)
    rows = numpy.reshape(moved, moved.shape[: len(kept)] + (-1,))
    ones = numpy.ones(rows.shape[:-1] + (1,), dtype=rows.dtype)
    left = numpy.cumprod(numpy.concatenate([ones, rows[..., :-1]], -1), -1)
    right = numpy.concatenate([ones, rows[..., :0:-1]], -1)
    right = numpy.cumprod(right, -1)[..., ::-1]
    others = numpy.reshape(left * right, moved.shape)
    return numpy.transpose(others, numpy.argsort(kept + reduced))
''',
    "_cumprod_dx": '''
def _cumprod_dx(grad, x, axis):
    """Gradient of numpy.cumprod(x, axis) with respect to x, no division by x (exact
    where x has zeros): entry i gets the sum over j >= i of grad[j] times the product
    of x[k] for k <= j, k != i, that is the product before i times a reversed
    running sum."""
    if axis is None or numpy.ndim(x) == 0:
        flat = _cumprod_dx(grad, numpy.ravel(x), 0)
        return numpy.reshape(flat, numpy.shape(x))
    x = numpy.asarray(x, dtype=numpy.result_type(x, 1.0))
    grad = numpy.moveaxis(grad + numpy.zeros_like(x), axis, -1)
    x = numpy.moveaxis(x, axis, -1)
    before = numpy.ones_like(x)
    before[..., 1:] = numpy.cumprod(x[..., :-1], axis=-1)
    after = numpy.zeros_like(x)
    running = numpy.zeros(x.shape[:-1], dtype=x.dtype)
    for i in range(x.shape[-1] - 1, -1, -1):
        running = grad[..., i] + running
        after[..., i] = running
        running = running * x[..., i]
    return numpy.moveaxis(before * after, -1, axis)
''',
    "_average_weights": '''
def _average_weights(w, x, axis):
    """The weights of numpy.average(x, axis, weights=w) lined up with x: as they
    are, or 1-D weights along axis."""
    if numpy.ndim(w) == numpy.ndim(x):
        return w
    shape = [1] * numpy.ndim(x)
    shape[axis] = -1
    return numpy.reshape(w, shape)
''',
    "_norm_dx": '''
def _norm_dx(x, ord, axis, norm):
    """d numpy.linalg.norm(x, ord, axis) / dx, where x's rank (which says whether
    the norm is of vectors or matrices) is known only when it runs; norm is the
    norm with the reduced axes kept."""
    if axis is None:
        axis = tuple(range(numpy.ndim(x)))
    if numpy.ndim(axis) == 0 or len(axis) == 1:
        if ord == 2:
            return x / norm
        if ord == 1:
            return numpy.sign(x)
        if ord in (numpy.inf, -numpy.inf):
            winners = numpy.abs(x) == norm
            count = numpy.sum(winners, axis=axis, keepdims=True)
            return numpy.sign(x) * winners / count
        if ord == 0:
            return numpy.zeros_like(x, dtype=numpy.result_type(x, 1.0))
        return numpy.sign(x) * (numpy.abs(x) / norm) ** (ord - 1)
    rows, columns = axis
    if ord in (1, -1, numpy.inf, -numpy.inf):
        summed, across = (rows, columns) if ord in (1, -1) else (columns, rows)
        sums = numpy.sum(numpy.abs(x), axis=summed, keepdims=True)
        winners = sums == norm
        count = numpy.sum(winners, axis=across, keepdims=True)
        return numpy.sign(x) * winners / count
    return _singular_norm_dx(x, ord, axis)
''',
    "_singular_norm_dx": '''
def _singular_norm_dx(x, ord, axis):
    """d numpy.linalg.norm(x, ord, axis) / dx for ord 2, -2 and "nuc" (the largest,
    the smallest and the sum of the singular values): u v^T of the singular
    vectors the norm reads (singular values distinct, and not 0 for "nuc")."""
    rows, columns = (-2, -1) if axis is None else axis
    moved = numpy.moveaxis(x, (rows, columns), (-2, -1))
    u, _, vt = numpy.linalg.svd(moved, full_matrices=False)
    if ord == 2:
        u, vt = u[..., :, :1], vt[..., :1, :]
    elif ord == -2:
        u, vt = u[..., :, -1:], vt[..., -1:, :]
    return numpy.moveaxis(u @ vt, (-2, -1), (rows, columns))
''',
}


# What each helper's result may share memory with (ownership.py): _unbroadcast and
# _everywhere hand back their first argument itself when its shape is already right;
# _everywhere's first argument is the caller's upstream, so its result is never written into.
HELPER_ALIASING: dict[str, Aliasing] = {
    "_unbroadcast": Aliasing.FIRST_OR_NEW,
    "_everywhere": Aliasing.VIEW_OF_FIRST,
    "_item_gradient": Aliasing.VIEW_OF_FIRST,
    "_upstream": Aliasing.VIEW_OF_FIRST,
    "_or_zero": Aliasing.VIEW_OF_FIRST,
    "_keepdims": Aliasing.VIEW_OF_FIRST,
    "_split_like": Aliasing.VIEW_OF_FIRST,
    "_like": Aliasing.VIEW_OF_FIRST,  # a read-only view (of a number of its own)
    "_matmul_dx": Aliasing.NEW,
    "_matmul_dy": Aliasing.NEW,
    "_dot_dx": Aliasing.NEW,
    "_dot_dy": Aliasing.NEW,
    "_digamma": Aliasing.NEW,
    "_sinc_derivative": Aliasing.NEW,
    "_prod_others": Aliasing.NEW,
    "_cumprod_dx": Aliasing.NEW,
    "_average_weights": Aliasing.VIEW_OF_FIRST,
    "_norm_dx": Aliasing.NEW,
    "_singular_norm_dx": Aliasing.NEW,
}

# The arguments of each helper that it reads for their shape and dtype alone (``like``).
HELPER_SHAPE_READS: dict[str, tuple[int, ...]] = {
    "_unbroadcast": (1,),
    "_everywhere": (1,),
    "_upstream": (1,),
}

# Helpers that call other helpers: defining one defines these too.
NEEDS: dict[str, tuple[str, ...]] = {
    "_item_gradient": ("_unbroadcast",),
    "_matmul_dx": ("_unbroadcast",),
    "_matmul_dy": ("_unbroadcast",),
    "_dot_dx": ("_dot_ranks", "_matmul_dx"),
    "_dot_dy": ("_dot_ranks", "_matmul_dy"),
    "_norm_dx": ("_singular_norm_dx",),
}


def with_needs(names: set[str]) -> set[str]:
    """``names`` and every helper they call, transitively."""
    found = set(names)
    pending = list(names)
    while pending:
        for needed in NEEDS.get(pending.pop(), ()):
            if needed not in found:
                found.add(needed)
                pending.append(needed)
    return found


def helper_source(name: str, aliases: dict[str, str]) -> list[str]:
    """The lines defining helper ``name``, with each library (numpy, math) spelled by its
    alias in ``aliases``."""
    text = HELPERS[name].strip("\n")
    for library, alias in aliases.items():
        text = text.replace(f"{library}.", f"{alias}.")
    return text.splitlines()


HELPER_LIBRARIES = ("numpy", "math")


def helper_libraries(name: str) -> tuple[str, ...]:
    """The libraries of ``HELPER_LIBRARIES`` helper ``name`` (or one it calls) spells."""
    texts = [HELPERS[needed] for needed in with_needs({name})]
    return tuple(lib for lib in HELPER_LIBRARIES if any(f"{lib}." in text for text in texts))
