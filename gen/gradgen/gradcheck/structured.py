"""Checking functions whose parameters are dicts, lists or tuples of arrays.

The check compares flat things: one gradient per parameter, an array or a number each. A
structured parameter (``params["W1"]``, ``(W1, b1), (W2, b2) = layers``; see
``gradgen.structure``) is checked as its leaves: the forward is called through a function
that builds the containers from the leaves, and the backward's gradient in the container's
structure is read back leaf by leaf. A leaf the gradient has no entry for (a key the
function never reads, a position it never reads) must have a zero gradient: it is compared
as 0.0 (as None, not differentiated, when it holds integers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from gradgen.gradcheck.instrument import Backward

if TYPE_CHECKING:
    from gradgen.structure import Structured

Key = int | str
Path = tuple[Key, ...]


@dataclass
class FlatBackward(Backward):
    """A backward taking and returning leaves: ``rebuild`` makes the arguments it is
    called with, ``flatten`` reads its gradients back per leaf."""

    rebuild: Callable[[Sequence[Any]], list[Any]] = field(default=lambda args: list(args))
    flatten: Callable[[Any], tuple[Any, ...]] = field(default=lambda raw: raw)

    @classmethod
    def around(
        cls,
        backward: Backward,
        rebuild: Callable[[Sequence[Any]], list[Any]],
        flatten: Callable[[Any], tuple[Any, ...]],
    ) -> FlatBackward:
        """``backward`` itself (its records, its instrumented function), flattened."""
        shared = {f.name: getattr(backward, f.name) for f in fields(Backward)}
        return cls(**shared, rebuild=rebuild, flatten=flatten)

    def call(self, args: Sequence[Any], upstream: Any) -> Any:
        return self.flatten(super().call(self.rebuild(args), upstream))


MISSING = object()


def lookup(value: Any, path: Path) -> Any:
    """The entry of ``value`` at ``path``, or ``MISSING`` where there is none."""
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return value


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple))


def _leaf_paths(value: Any, prefix: Path = ()) -> list[Path]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, (*prefix, k))]
    if isinstance(value, (list, tuple)):
        return [p for k, v in enumerate(value) for p in _leaf_paths(v, (*prefix, k))]
    return [prefix]


def _spelled(name: str, path: Path) -> str:
    return name + "".join(f"[{key!r}]" for key in path)


def _rebuilt(template: Any, leaves: dict[Path, Any], prefix: Path = ()) -> Any:
    if isinstance(template, dict):
        return {k: _rebuilt(v, leaves, (*prefix, k)) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        items = [_rebuilt(v, leaves, (*prefix, k)) for k, v in enumerate(template)]
        return items if isinstance(template, list) else type(template)(items)
    return leaves[prefix]


@dataclass(frozen=True)
class Flattening:
    """Arguments as they are given (some dicts, lists or tuples), and as leaves: one
    ``(parameter, path)`` per leaf, ``()`` for an argument that is no container."""

    parameters: tuple[str, ...]
    templates: tuple[Any, ...]
    leaves: tuple[tuple[int, Path], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Each leaf as the check reports it: ``params['W1']``, ``layers[0][1]``."""
        return tuple(_spelled(self.parameters[k], path) for k, path in self.leaves)

    def values(self, args: Sequence[Any]) -> list[Any]:
        return [lookup(args[k], path) for k, path in self.leaves]

    def rebuild(self, flat: Sequence[Any]) -> list[Any]:
        given: dict[int, dict[Path, Any]] = {}
        for (k, path), value in zip(self.leaves, flat, strict=True):
            given.setdefault(k, {})[path] = value
        return [_rebuilt(t, given.get(k, {})) for k, t in enumerate(self.templates)]

    def flat_names(self, wanted: Sequence[str]) -> tuple[str, ...]:
        """The leaves of the parameters ``wanted``, in that order."""
        names = self.names
        return tuple(
            names[i]
            for parameter in wanted
            for i, (k, _) in enumerate(self.leaves)
            if self.parameters[k] == parameter
        )

    def flatten(self, raw: Any, wanted: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The gradients ``raw`` (one per parameter ``wanted``) leaf by leaf; an entry the
        gradient does not have is 0.0 for a float leaf, None for another (not checked)."""
        if len(wanted) == 1:
            raw = (raw,)
        if not isinstance(raw, tuple) or len(raw) != len(wanted):
            return raw if isinstance(raw, tuple) else (raw,)  # the count is reported
        given = dict(zip(wanted, raw, strict=True))
        flat: list[Any] = []
        for parameter in wanted:
            for _i, (k, path) in enumerate(self.leaves):
                if self.parameters[k] != parameter:
                    continue
                entry = lookup(given[parameter], path)
                if entry is MISSING or (entry is None and path):
                    entry = 0.0 if _is_float(lookup(args[k], path)) else None
                flat.append(entry)
        return tuple(flat)


def _is_float(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (float, np.floating)) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "f"
    )


def flattening(parameters: Sequence[str], args: Sequence[Any]) -> Flattening | None:
    """How to check arguments some of which are dicts, lists or tuples; None if none is."""
    if not any(_is_container(a) for a in args):
        return None
    leaves = tuple(
        (k, path)
        for k, value in enumerate(args)
        for path in (_leaf_paths(value) if _is_container(value) else [()])
    )
    return Flattening(tuple(parameters), tuple(args), leaves)


def static_forward(
    structured: Sequence[Structured], arguments: Sequence[str], leaves: Sequence[str]
) -> Callable[[Sequence[Any]], list[Any]]:
    """Builds the arguments of a function with structured parameters (``arguments``, as
    written) from its leaves (in the order of ``leaves``, the staged parameters), by the
    paths the function reads: a dict per level read by keys, a list per level read by
    positions (None where a position is not read)."""
    by_name = {s.name: s for s in structured}

    def rebuild(flat: Sequence[Any]) -> list[Any]:
        given = dict(zip(leaves, flat, strict=True))
        built: list[Any] = []
        for name in arguments:
            parameter = by_name.get(name)
            if parameter is None:
                built.append(given[name])
                continue
            container: Any = None
            for leaf in parameter.leaves:
                container = _put(container, leaf.path, given[leaf.name])
            built.append(container)
        return built

    return rebuild


def _put(container: Any, path: Path, value: Any) -> Any:
    key = path[0]
    if container is None:
        container = {} if isinstance(key, str) else []
    rest = path[1:]
    if isinstance(key, str):
        container[key] = _put(container.get(key), rest, value) if rest else value
        return container
    while len(container) <= key:
        container.append(None)
    container[key] = _put(container[key], rest, value) if rest else value
    return container


def static_flatten(
    structured: Sequence[Structured], wanted: Sequence[str]
) -> Callable[[Any], tuple[Any, ...]]:
    """Reads the gradients a backward returns (per user parameter in ``wanted``) as one
    per leaf; an entry missing is reported as the backward's error, never passed."""
    by_name = {s.name: s for s in structured}

    def flatten(raw: Any) -> tuple[Any, ...]:
        if len(wanted) == 1:
            raw = (raw,)
        if not isinstance(raw, tuple) or len(raw) != len(wanted):
            return raw if isinstance(raw, tuple) else (raw,)
        flat: list[Any] = []
        for name, gradient in zip(wanted, raw, strict=True):
            parameter = by_name.get(name)
            if parameter is None:
                flat.append(gradient)
                continue
            for leaf in parameter.leaves:
                entry = lookup(gradient, leaf.path)
                if entry is MISSING:
                    raise ValueError(
                        f"the gradient of {name} has no entry {_spelled(name, leaf.path)}"
                    )
                flat.append(entry)
        return tuple(flat)

    return flatten
