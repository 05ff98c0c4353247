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
    if isinstance(like, float) and isinstance(grad, float):  # no array to fill
        return numpy.float64(grad)
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
    "_joined_piece": '''
def _joined_piece(grad, items, position, axis, ndmin):
    """The part of grad that items[position] became where numpy made each item
    at least ndmin-D and joined them along axis (np.vstack, np.hstack, np.dstack,
    np.column_stack), in the item's shape. np.hstack's axis (None) is the first
    for 1-D items, else the second."""
    if axis is None:
        axis = 0 if numpy.ndim(items[0]) <= 1 else 1
    sizes = [numpy.shape(i)[axis] if numpy.ndim(i) >= ndmin else 1 for i in items]
    start = sum(sizes[:position])
    piece = numpy.take(grad, numpy.arange(start, start + sizes[position]), axis)
    return numpy.reshape(piece, numpy.shape(items[position]))
''',
    "_untile": '''
def _untile(grad, like, reps):
    """grad of np.tile(like, reps): the copies summed back into like's shape."""
    reps = tuple(numpy.atleast_1d(reps))
    shape = numpy.shape(like)
    ndim = max(len(reps), len(shape))
    reps = (1,) * (ndim - len(reps)) + reps
    dims = (1,) * (ndim - len(shape)) + shape
    split = [n for pair in zip(reps, dims) for n in pair]  # (copy, entry) per axis
    copies = tuple(range(0, 2 * ndim, 2))
    return numpy.reshape(numpy.sum(numpy.reshape(grad, split), axis=copies), shape)
''',
    "_unrepeat": '''
def _unrepeat(grad, like, repeats, axis):
    """grad of np.repeat(like, repeats, axis): each entry's copies summed."""
    shape = numpy.shape(like)
    if axis is None:
        grad, axis = numpy.reshape(grad, (-1,)), 0
        dims = (numpy.size(like),)
    else:
        axis, dims = axis % len(shape), shape
    if numpy.size(repeats) == 1:  # as many copies of each: side by side
        split = dims[:axis] + (dims[axis], -1) + dims[axis + 1 :]
        summed = numpy.sum(numpy.reshape(grad, split), axis=axis + 1)
        return numpy.reshape(summed, shape)
    moved = numpy.moveaxis(grad, axis, 0)
    summed = numpy.zeros((dims[axis],) + moved.shape[1:], moved.dtype)
    numpy.add.at(summed, numpy.repeat(numpy.arange(dims[axis]), repeats), moved)
    return numpy.reshape(numpy.moveaxis(summed, 0, axis), shape)
''',
    "_undiagonal": '''
def _undiagonal(grad, like, offset, axis1, axis2):
    """grad of np.diagonal(like, offset, axis1, axis2): on that diagonal, zeros
    elsewhere."""
    out = numpy.zeros(numpy.shape(like), numpy.result_type(numpy.asarray(like), 1.0))
    planes = numpy.moveaxis(out, (axis1, axis2), (-2, -1))  # a view: written into
    steps = numpy.arange(numpy.shape(grad)[-1])
    planes[..., steps + max(-offset, 0), steps + max(offset, 0)] = grad
    return out
''',
    "_undiag": '''
def _undiag(grad, like, k):
    """grad of np.diag(like, k): a 1-D like made a matrix, a matrix's diagonal."""
    if numpy.ndim(like) == 1:
        return numpy.diag(grad, k)
    return _undiagonal(grad, like, k, 0, 1)
''',
    "_untake": '''
def _untake(grad, like, indices, axis):
    """grad of np.take(like, indices, axis): added back at the indices (repeated
    ones add up)."""
    out = numpy.zeros(numpy.shape(like), numpy.result_type(numpy.asarray(like), 1.0))
    if axis is None:
        numpy.add.at(numpy.reshape(out, (-1,)), indices, grad)  # a view of out
    else:
        axis %= out.ndim
        numpy.add.at(out, (slice(None),) * axis + (indices,), grad)
    return out
''',
    "_untake_along_axis": '''
def _untake_along_axis(grad, like, indices, axis):
    """grad of np.take_along_axis(like, indices, axis): added back at the indices
    (repeated ones add up)."""
    out = numpy.zeros(numpy.shape(like), numpy.result_type(numpy.asarray(like), 1.0))
    if axis is None:
        numpy.add.at(numpy.reshape(out, (-1,)), indices, grad)  # a view of out
        return out
    axis %= out.ndim
    index = []
    for dim, size in enumerate(out.shape):  # the entries each index entry read
        steps = (1,) * dim + (-1,) + (1,) * (out.ndim - dim - 1)
        index.append(numpy.reshape(numpy.arange(size), steps))
    index[axis] = indices
    numpy.add.at(out, tuple(index), grad)
    return out
''',
    "_unpad": '''
def _unpad(grad, pad_width):
    """grad of np.pad(like, pad_width): the part that was like."""
    grad = numpy.asarray(grad)  # np.pad of a number is a number
    widths = numpy.broadcast_to(pad_width, (grad.ndim, 2))
    return grad[tuple(slice(b, n - a) for (b, a), n in zip(widths, grad.shape))]
''',
    "_pad_values_grad": '''
def _pad_values_grad(grad, pad_width, values, padded):
    """grad of np.pad's constant_values: each value's padded entries summed. numpy
    pads axis after axis, each over what the axes before it padded (the corners
    are the later axis's). Padding a mask or whole numbers casts the values to
    their dtype: a step, with no gradient."""
    if not numpy.issubdtype(numpy.result_type(padded), numpy.inexact):
        return _unbroadcast(numpy.zeros((numpy.ndim(grad), 2)), values)
    grad = numpy.asarray(grad)  # np.pad of a number is a number
    ndim = grad.ndim
    widths = numpy.broadcast_to(pad_width, (ndim, 2))
    inner = [slice(b, n - a) for (b, a), n in zip(widths, grad.shape)]
    sums = numpy.zeros((ndim, 2), numpy.result_type(grad, 1.0))
    for axis, ((before, after), n) in enumerate(zip(widths, grad.shape)):
        for side, part in enumerate((slice(0, before), slice(n - after, n))):
            region = (slice(None),) * axis + (part,) + tuple(inner[axis + 1 :])
            sums[axis, side] = numpy.sum(grad[region])
    return _unbroadcast(sums, values)  # values: a number, a pair, pairs per axis
''',
    "_unslide": '''
def _unslide(grad, like, window_shape, axis):
    """grad of sliding_window_view(like, window_shape, axis): each window's entries
    added back where they were read, one offset in the window at a time."""
    shape = numpy.shape(like)
    windows = tuple(numpy.atleast_1d(window_shape))
    axes = range(len(shape)) if axis is None else numpy.atleast_1d(axis)
    axes = [a % len(shape) for a in axes]
    out = numpy.zeros(shape, numpy.result_type(numpy.asarray(like), 1.0))
    starts = numpy.shape(grad)[: len(shape)]  # the windows' first entries
    for offsets in numpy.ndindex(*windows):
        first = [0] * len(shape)
        for a, offset in zip(axes, offsets):
            first[a] += offset
        read = tuple(slice(f, f + n) for f, n in zip(first, starts))
        out[read] += grad[(Ellipsis,) + offsets]
    return out
''',
    "_ungradient": '''
def _ungradient(grad, like, axis):
    """grad of np.gradient(like, axis=axis) (unit spacing, edge_order 1)."""
    if axis is None:
        if numpy.ndim(like) != 1:
            raise ValueError(
                "np.gradient of an array of several axes without an axis gives"
                " a list: gradgen differentiates it along one axis (axis=...)"
            )
        axis = 0
    g = numpy.moveaxis(grad, axis, 0)
    w = numpy.concatenate((-g[:1], g[:1], g[1:-1] / 2, g[-1:], -g[-1:]))
    return numpy.moveaxis(w[:-2] - w[2:], 0, axis)
''',
    "_unrollaxis": '''
def _unrollaxis(grad, like, axis, start):
    """grad of np.rollaxis(like, axis, start): the axis moved back."""
    ndim = numpy.ndim(like)
    axis, start = axis % ndim, start + ndim if start < 0 else start
    start = start - 1 if axis < start else start
    return numpy.moveaxis(grad, start, axis)
''',
    "_or_zero": '''
def _or_zero(grad):
    """The upstream gradient of a number: 0.0 when None (it does not reach the loss)."""
    return 0.0 if grad is None else grad
''',
    "_matmul_dx": '''
def _matmul_dx(grad, x, y):
    """Gradient of x @ y with respect to x, by numpy's matmul rules."""
    if numpy.ndim(x) == 2 and numpy.ndim(y) == 2:  # the common case, nothing broadcast
        return grad @ numpy.transpose(y)
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
    if numpy.ndim(x) == 2 and numpy.ndim(y) == 2:  # the common case, nothing broadcast
        return numpy.transpose(x) @ grad
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
    # scipy.stats.dirichlet reads an x one row short of alpha as x with the row 1 - sum(x)
    # appended: that row depends on every other one.
    "_dirichlet_points": '''
def _dirichlet_points(x, alpha):
    """x as scipy.stats.dirichlet reads it: the last row 1 - sum(x) appended when x is one row
    short of alpha."""
    if len(x) == len(alpha) - 1:
        return numpy.concatenate([x, [1 - numpy.sum(x, axis=0)]])
    return x
''',
    "_dirichlet_dx": '''
def _dirichlet_dx(grad, x, alpha):
    """The gradient of dirichlet.logpdf(x, alpha) with respect to x, x full or one row short."""
    full = ((alpha - 1) / _dirichlet_points(x, alpha).T).T * grad
    if len(x) == len(alpha) - 1:  # the appended row's gradient flows back into every row
        return full[:-1] - full[-1]
    return full
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
    "_solve_db": '''
def _solve_db(grad, a, b):
    """Gradient of numpy.linalg.solve(a, b) with respect to b: a^-T grad."""
    vector = numpy.ndim(b) == 1  # numpy 2: b is a vector only where it is 1-D
    grad2 = grad[..., None] if vector else grad
    db = numpy.linalg.solve(numpy.swapaxes(a, -1, -2), grad2)
    return _unbroadcast(db[..., 0] if vector else db, b)
''',
    "_solve_da": '''
def _solve_da(grad, a, b, out):
    """Gradient of out = numpy.linalg.solve(a, b) with respect to a: -db out^T."""
    vector = numpy.ndim(b) == 1
    grad2 = grad[..., None] if vector else grad
    out2 = out[..., None] if vector else out
    db = numpy.linalg.solve(numpy.swapaxes(a, -1, -2), grad2)
    return _unbroadcast(-db @ numpy.swapaxes(out2, -1, -2), a)
''',
    "_cholesky_grad": '''
def _cholesky_grad(grad, lower):
    """Gradient of lower = numpy.linalg.cholesky(a), which reads a's lower triangle:
    s = L^-T phi(L^T grad) L^-1 (phi: the lower triangle, its diagonal halved), and
    the lower triangle of s + s^T, its diagonal halved."""
    half = 1 + numpy.eye(numpy.shape(lower)[-1])
    lower_t = numpy.swapaxes(lower, -1, -2)
    phi = numpy.tril(lower_t @ grad) / half
    s = numpy.linalg.solve(lower_t, numpy.swapaxes(numpy.linalg.solve(lower_t, phi), -1, -2))
    return numpy.tril(s + numpy.swapaxes(s, -1, -2)) / half
''',
    "_tensordot_axes": '''
def _tensordot_axes(x, y, axes):
    """The axes numpy.tensordot(x, y, axes) sums over, of x and of y, paired."""
    if isinstance(axes, int):
        return list(range(numpy.ndim(x) - axes, numpy.ndim(x))), list(range(axes))
    left, right = ([a] if isinstance(a, int) else list(a) for a in axes)
    return [a % numpy.ndim(x) for a in left], [b % numpy.ndim(y) for b in right]
''',
    "_tensordot_dx": '''
def _tensordot_dx(grad, x, y, axes):
    """Gradient of numpy.tensordot(x, y, axes) with respect to x."""
    summed_x, summed_y = _tensordot_axes(x, y, axes)
    free_x = [a for a in range(numpy.ndim(x)) if a not in summed_x]
    free_y = [b for b in range(numpy.ndim(y)) if b not in summed_y]
    kept = list(range(len(free_x), numpy.ndim(grad)))
    dx = numpy.tensordot(grad, y, axes=(kept, free_y))
    order = free_x + [summed_x[summed_y.index(b)] for b in sorted(summed_y)]
    return numpy.transpose(dx, numpy.argsort(order))
''',
    "_tensordot_dy": '''
def _tensordot_dy(grad, x, y, axes):
    """Gradient of numpy.tensordot(x, y, axes) with respect to y."""
    summed_x, summed_y = _tensordot_axes(x, y, axes)
    free_x = [a for a in range(numpy.ndim(x)) if a not in summed_x]
    free_y = [b for b in range(numpy.ndim(y)) if b not in summed_y]
    dy = numpy.tensordot(x, grad, axes=(free_x, list(range(len(free_x)))))
    order = [summed_y[summed_x.index(a)] for a in sorted(summed_x)] + free_y
    return numpy.transpose(dy, numpy.argsort(order))
''',
    "_inner_dx": '''
def _inner_dx(grad, x, y):
    """Gradient of numpy.inner(x, y) with respect to x."""
    if numpy.ndim(x) == 0 or numpy.ndim(y) == 0:
        return _unbroadcast(grad * y, x)  # a number: a product
    free_x, free_y = numpy.ndim(x) - 1, numpy.ndim(y) - 1
    summed = list(range(free_x, free_x + free_y))
    return numpy.tensordot(grad, y, axes=(summed, list(range(free_y))))
''',
    "_inner_dy": '''
def _inner_dy(grad, x, y):
    """Gradient of numpy.inner(x, y) with respect to y."""
    if numpy.ndim(x) == 0 or numpy.ndim(y) == 0:
        return _unbroadcast(grad * x, y)  # a number: a product
    free_x = list(range(numpy.ndim(x) - 1))
    return numpy.tensordot(grad, x, axes=(free_x, free_x))
''',
    "_eigh_dv": '''
def _eigh_dv(grad, w, v):
    """Gradient of w, v = numpy.linalg.eigh(a) from v's gradient (distinct
    eigenvalues): s = v (f * v^T grad) v^T, f = 1 / (w_j - w_i) off the diagonal; numpy
    reads a's lower triangle: the lower triangle of s + s^T, its diagonal halved."""
    eye = numpy.eye(numpy.shape(w)[-1])
    f = (1 - eye) / (numpy.expand_dims(w, -2) - numpy.expand_dims(w, -1) + eye)
    v_t = numpy.swapaxes(v, -1, -2)
    s = v @ (f * (v_t @ grad)) @ v_t
    return numpy.tril(s + numpy.swapaxes(s, -1, -2)) / (1 + eye)
''',
    "_svd_values_dx": '''
def _svd_values_dx(grad, a):
    """Gradient of numpy.linalg.svd(a, compute_uv=False): u diag(grad) vh."""
    u, _, vh = numpy.linalg.svd(a, full_matrices=False)
    return (u * numpy.expand_dims(grad, -2)) @ vh
''',
    "_svd_gaps": '''
def _svd_gaps(s):
    """f[i, j] = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it (distinct singular
    values)."""
    eye = numpy.eye(numpy.shape(s)[-1])
    squares = s**2
    return (1 - eye) / (numpy.expand_dims(squares, -2) - numpy.expand_dims(squares, -1) + eye)
''',
    "_svd_du": '''
def _svd_du(grad, u, s, vh):
    """Gradient of u, s, vh = numpy.linalg.svd(a, full_matrices=False) from u's
    gradient (distinct singular values, none 0): u (f * (u^T grad - grad^T u)) s vh,
    and the part of grad outside u's columns, (grad - u u^T grad) / s vh."""
    inner = numpy.swapaxes(u, -1, -2) @ grad
    j = _svd_gaps(s) * (inner - numpy.swapaxes(inner, -1, -2))
    return (u @ (j * numpy.expand_dims(s, -2)) + (grad - u @ inner) / numpy.expand_dims(s, -2)) @ vh
''',
    "_svd_dvh": '''
def _svd_dvh(grad, u, s, vh):
    """Gradient of u, s, vh = numpy.linalg.svd(a, full_matrices=False) from vh's
    gradient (distinct singular values, none 0): u s (f * (vh grad^T - grad vh^T)) vh,
    and the part of grad outside vh's rows, u (grad - grad vh^T vh) / s."""
    inner = vh @ numpy.swapaxes(grad, -1, -2)
    k = _svd_gaps(s) * (inner - numpy.swapaxes(inner, -1, -2))
    outside = grad - numpy.swapaxes(inner, -1, -2) @ vh
    return u @ (numpy.expand_dims(s, -1) * k @ vh + outside / numpy.expand_dims(s, -1))
''',
    "_solve_triangular_product": '''
def _solve_triangular_product(solved, out, a):
    """solved out^T for out = scipy.linalg.solve_triangular(a, b) of one matrix a and b a
    vector or a matrix (the outer product for a vector)."""
    if numpy.ndim(a) != 2 or numpy.ndim(out) > 2:
        raise ValueError(
            "the gradient of solve_triangular is written for one matrix a and b 1-D or 2-D"
        )
    rows = numpy.shape(a)[0]
    return numpy.reshape(solved, (rows, -1)) @ numpy.reshape(out, (rows, -1)).T
''',
    "_banded_transpose": '''
def _banded_transpose(ab, lower, upper):
    """The storage scipy.linalg.solve_banded reads of the transpose of the matrix ab
    stores with (lower, upper) bands: its bands are (upper, lower), each row shifted."""
    if numpy.ndim(ab) != 2:
        raise ValueError("the gradient of solve_banded is written for one banded matrix")
    columns = numpy.shape(ab)[1]
    transposed = numpy.zeros_like(ab)
    for row in range(lower + upper + 1):
        shift = upper - row
        if shift >= 0:
            transposed[lower + upper - row, : columns - shift] = ab[row, shift:]
        else:
            transposed[lower + upper - row, -shift:] = ab[row, : columns + shift]
    return transposed
''',
    "_banded_grad": '''
def _banded_grad(solved, out, ab, lower, upper):
    """Gradient of out = scipy.linalg.solve_banded((lower, upper), ab, b) with respect to
    ab, from solved = a^-T grad: -solved out^T on the band, in ab's storage (0 at the
    entries outside the matrix, which scipy does not read)."""
    if numpy.ndim(out) > 2:
        raise ValueError("the gradient of solve_banded is written for b 1-D or 2-D")
    rows = len(out)
    solved = numpy.reshape(solved, (rows, -1))
    out = numpy.reshape(out, (rows, -1))
    grad = numpy.zeros(numpy.shape(ab), dtype=numpy.result_type(ab, out))
    for row in range(lower + upper + 1):
        shift = upper - row
        if shift >= 0:
            grad[row, shift:] = -numpy.sum(solved[: rows - shift] * out[shift:], axis=1)
        else:
            grad[row, : rows + shift] = -numpy.sum(solved[-shift:] * out[: rows + shift], axis=1)
    return grad
''',
    "_matrices_unbroadcast": '''
def _matrices_unbroadcast(grad, like):
    """grad summed back over the stack scipy.linalg broadcast a matrix like along; a
    number or a vector is not a matrix scipy broadcasts as numpy does."""
    if numpy.ndim(like) < 2:
        raise ValueError("the gradient of solve_sylvester is written for matrices")
    return _unbroadcast(grad, like)
''',
    "_convolve_full": '''
def _convolve_full(grad, x, y):
    """grad of scipy.signal.convolve(x, y, mode) (or correlate) put back in the full
    result's place: zeros where the mode cut the full result, centred as scipy cuts it."""
    if numpy.ndim(grad) == 0:
        return grad  # of numbers: their product
    full = numpy.array(numpy.shape(x), dtype=int) + numpy.shape(y) - 1
    missing = full - numpy.shape(grad)
    before = missing // 2
    return numpy.pad(grad, list(zip(before, missing - before)))
''',
    "_spread_or_sum": '''
def _spread_or_sum(grad, like):
    """grad in like's shape, where numpy spread a dimension 1 of either over the
    other's (np.einsum's labels, its '...'): summed where like has the 1, spread where
    grad has it."""
    if numpy.shape(grad) == numpy.shape(like):
        return grad
    return numpy.broadcast_to(_unbroadcast(grad, like), numpy.shape(like))
''',
    "_kron_blocks": '''
def _kron_blocks(grad, x, y):
    """grad of numpy.kron(x, y) as blocks (x's axes and y's interleaved), and x and y
    with the leading 1s numpy gives the one of lower rank."""
    rank = max(numpy.ndim(x), numpy.ndim(y))
    xs = (1,) * (rank - numpy.ndim(x)) + numpy.shape(x)
    ys = (1,) * (rank - numpy.ndim(y)) + numpy.shape(y)
    blocks = numpy.reshape(grad, [d for pair in zip(xs, ys) for d in pair])
    return blocks, numpy.reshape(x, xs), numpy.reshape(y, ys), rank
''',
    "_kron_dx": '''
def _kron_dx(grad, x, y):
    """Gradient of numpy.kron(x, y) with respect to x."""
    blocks, _, y2, rank = _kron_blocks(grad, x, y)
    dx = numpy.tensordot(blocks, y2, axes=(list(range(1, 2 * rank, 2)), list(range(rank))))
    return numpy.reshape(dx, numpy.shape(x))
''',
    "_kron_dy": '''
def _kron_dy(grad, x, y):
    """Gradient of numpy.kron(x, y) with respect to y."""
    blocks, x2, _, rank = _kron_blocks(grad, x, y)
    dy = numpy.tensordot(x2, blocks, axes=(list(range(rank)), list(range(0, 2 * rank, 2))))
    return numpy.reshape(dy, numpy.shape(y))
''',
    "_mvn_covariance": '''
def _mvn_covariance(cov):
    """The covariance matrix scipy's multivariate_normal reads of cov: the
    symmetric matrix of its lower triangle, or the diagonal one of a 1-D cov."""
    if numpy.ndim(cov) == 1:
        return numpy.diag(cov)
    if numpy.ndim(cov) != 2:
        raise ValueError(
            "gradgen: the gradient of multivariate_normal takes cov as a matrix"
            " or its diagonal (1-D), not a number: write c * numpy.eye(d)"
        )
    return numpy.tril(cov) + numpy.tril(cov, -1).T
''',
    "_mvn_cov_gradient": '''
def _mvn_cov_gradient(grad, cov):
    """cov's gradient, of grad the symmetric matrix's: of the entries scipy
    reads (the diagonal of a 1-D cov; the lower triangle of a matrix)."""
    if numpy.ndim(cov) == 1:
        return numpy.diagonal(grad).copy()
    return numpy.tril(grad) * (2 - numpy.eye(len(cov)))
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
    "_joined_piece": Aliasing.NEW,
    "_untile": Aliasing.NEW,
    "_unrepeat": Aliasing.NEW,
    "_undiagonal": Aliasing.NEW,
    "_undiag": Aliasing.VIEW_OF_FIRST,  # the diagonal of a matrix grad is a view of it
    "_untake": Aliasing.NEW,
    "_untake_along_axis": Aliasing.NEW,
    "_unpad": Aliasing.VIEW_OF_FIRST,
    "_pad_values_grad": Aliasing.NEW,
    "_unslide": Aliasing.NEW,
    "_unrollaxis": Aliasing.VIEW_OF_FIRST,
    "_ungradient": Aliasing.NEW,
    "_matmul_dy": Aliasing.NEW,
    "_dot_dx": Aliasing.NEW,
    "_dot_dy": Aliasing.NEW,
    "_digamma": Aliasing.NEW,
    "_sinc_derivative": Aliasing.NEW,
    "_prod_others": Aliasing.NEW,
    "_dirichlet_points": Aliasing.VIEW_OF_FIRST,  # x itself when it is full
    "_dirichlet_dx": Aliasing.NEW,
    "_cumprod_dx": Aliasing.NEW,
    "_average_weights": Aliasing.VIEW_OF_FIRST,
    "_norm_dx": Aliasing.NEW,
    "_singular_norm_dx": Aliasing.NEW,
    "_solve_db": Aliasing.NEW,
    "_solve_da": Aliasing.NEW,
    "_cholesky_grad": Aliasing.NEW,
    "_tensordot_dx": Aliasing.NEW,
    "_tensordot_dy": Aliasing.NEW,
    "_kron_dx": Aliasing.NEW,
    "_spread_or_sum": Aliasing.VIEW_OF_FIRST,
    "_tensordot_axes": Aliasing.NEW,
    "_kron_blocks": Aliasing.NEW,
    "_eigh_dv": Aliasing.NEW,
    "_inner_dx": Aliasing.NEW,
    "_inner_dy": Aliasing.NEW,
    "_kron_dy": Aliasing.NEW,
    "_mvn_covariance": Aliasing.NEW,
    "_mvn_cov_gradient": Aliasing.NEW,
    "_svd_values_dx": Aliasing.NEW,
    "_svd_gaps": Aliasing.NEW,
    "_svd_du": Aliasing.NEW,
    "_svd_dvh": Aliasing.NEW,
    "_solve_triangular_product": Aliasing.NEW,
    "_convolve_full": Aliasing.NEW,
    "_matrices_unbroadcast": Aliasing.FIRST_OR_NEW,
    "_banded_transpose": Aliasing.NEW,
    "_banded_grad": Aliasing.NEW,
}

# The arguments of each helper that it reads for their shape and dtype alone (``like``).
HELPER_SHAPE_READS: dict[str, tuple[int, ...]] = {
    "_matrices_unbroadcast": (1,),
    "_convolve_full": (1, 2),
    "_unbroadcast": (1,),
    "_everywhere": (1,),
    "_upstream": (1,),
    "_untile": (1,),
    "_unrepeat": (1,),
    "_undiagonal": (1,),
    "_undiag": (1,),
    "_untake": (1,),
    "_untake_along_axis": (1,),
    "_pad_values_grad": (2, 3),
    "_unslide": (1,),
    "_unrollaxis": (1,),
    "_mvn_cov_gradient": (1,),
    "_ungradient": (1,),
}

# Helpers that call other helpers: defining one defines these too.
NEEDS: dict[str, tuple[str, ...]] = {
    "_item_gradient": ("_unbroadcast",),
    "_undiag": ("_undiagonal",),
    "_pad_values_grad": ("_unbroadcast",),
    "_matmul_dx": ("_unbroadcast",),
    "_matmul_dy": ("_unbroadcast",),
    "_dot_dx": ("_dot_ranks", "_matmul_dx"),
    "_dot_dy": ("_dot_ranks", "_matmul_dy"),
    "_norm_dx": ("_singular_norm_dx",),
    "_dirichlet_dx": ("_dirichlet_points",),
    "_solve_db": ("_unbroadcast",),
    "_solve_da": ("_unbroadcast",),
    "_tensordot_dx": ("_tensordot_axes",),
    "_tensordot_dy": ("_tensordot_axes",),
    "_kron_dx": ("_kron_blocks",),
    "_spread_or_sum": ("_unbroadcast",),
    "_inner_dx": ("_unbroadcast",),
    "_inner_dy": ("_unbroadcast",),
    "_kron_dy": ("_kron_blocks",),
    "_svd_du": ("_svd_gaps",),
    "_matrices_unbroadcast": ("_unbroadcast",),
    "_svd_dvh": ("_svd_gaps",),
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
