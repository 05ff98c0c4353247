"""All name-making in one place.

Generated names derive from the user's names, never from a global counter: a later
binding of ``h`` is ``h_2``, a temporary inside ``a = ...`` is ``a_tanh``, the gradient of
``x`` is ``dx``. So editing one line does not rename anything elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable


class Namer:
    """Hands out names that collide with nothing taken before."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken: set[str] = set(taken)
        # Per base name, a suffix below which every ``base_N`` is taken: names are never
        # given back, so the search for ``h_10000`` starts there instead of at ``h_2``
        # (which made naming a long function's rebindings quadratic).
        self._suffix: dict[str, int] = {}

    def take(self, name: str) -> None:
        """Mark ``name`` as used (a parameter, a module name, a user variable)."""
        self._taken.add(name)

    def copy(self) -> Namer:
        """A namer that starts with the names taken so far, and goes on independently."""
        namer = Namer(self._taken)
        namer._suffix = dict(self._suffix)
        return namer

    def is_taken(self, name: str) -> bool:
        return name in self._taken

    def fresh(self, *candidates: str) -> str:
        """The first free candidate; else the last candidate with ``_2``, ``_3``, ..."""
        for candidate in candidates:
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
        base = candidates[-1]
        suffix = self._suffix.get(base, 2)
        while f"{base}_{suffix}" in self._taken:
            suffix += 1
        name = f"{base}_{suffix}"
        self._taken.add(name)
        self._suffix[base] = suffix + 1
        return name


def rebinding_name(namer: Namer, user_name: str) -> str:
    """Name of a later binding of ``user_name``: ``h_2``, ``h_3``, ... (the first binding
    keeps the user's name)."""
    return namer.fresh(user_name)


def temporary_name(namer: Namer, target: str, operation: str) -> str:
    """Name of a subexpression of ``target = ...`` split off as its own stage."""
    return namer.fresh(f"{target}_{operation}")


def piece_name(namer: Namer, list_name: str, position: int) -> str:
    """Name of a piece of ``parts = np.split(x, 3)``: ``parts0``, ``parts1``, ..."""
    return namer.fresh(f"{list_name}{position}")


def gradient_name(namer: Namer, variable: str) -> str:
    """``dx`` for ``x``; ``d_x`` if the forward code already uses ``dx``."""
    return namer.fresh(f"d{variable}", f"d_{variable}")


def backward_function_name(function: str) -> str:
    return f"{function}_backward"


def value_and_grad_function_name(function: str) -> str:
    return f"{function}_value_and_grad"


def forward_function_name(function: str) -> str:
    return f"{function}_forward"


def cached_backward_name(
    function: str, wrt: tuple[str, ...], parameters: tuple[str, ...], pairs: bool
) -> str:
    """The backward of ``function`` that reads its forward's cache, for the gradients
    ``wrt`` (``affine_cached_backward``; ``affine_backward`` when the module is made of
    forward/backward pairs; ``affine_cached_backward_wrt_w_b`` for some parameters only)."""
    name = backward_function_name(function) if pairs else f"{function}_cached_backward"
    if wrt and wrt != parameters:
        name += "_wrt_" + "_".join(wrt)
    return name
