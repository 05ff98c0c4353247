"""Small functions a generated module may define for itself (never imported from gradgen).

They are written with ``numpy.``; the emitter spells that with the module's own alias. Each
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
    "_solve_db": ("_unbroadcast",),
    "_solve_da": ("_unbroadcast",),
    "_tensordot_dx": ("_tensordot_axes",),
    "_tensordot_dy": ("_tensordot_axes",),
    "_kron_dx": ("_kron_blocks",),
    "_spread_or_sum": ("_unbroadcast",),
    "_inner_dx": ("_unbroadcast",),
    "_inner_dy": ("_unbroadcast",),
    "_kron_dy": ("_kron_blocks",),
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


def helper_source(name: str, numpy_alias: str) -> list[str]:
    """The lines defining helper ``name``, with numpy spelled ``numpy_alias``."""
    text = HELPERS[name].strip("\n").replace("numpy.", f"{numpy_alias}.")
    return text.splitlines()


def helper_uses_numpy(name: str) -> bool:
    """Does helper ``name`` (or one it calls) spell a numpy function?"""
    return any("numpy." in HELPERS[needed] for needed in with_needs({name}))
