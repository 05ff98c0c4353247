"""Parameters that are dicts, lists or tuples of arrays, read without running anything.

A parameter is *structured* when the function reads entries of it by constant keys and
positions (``params["W1"]``, ``params[0]["W"]``, ``layers[1]``) or unpacks it
(``W1, b1 = params``, ``(W1, b1), (W2, b2) = params``, ``W, b = params[1]``), or when its
annotation says it is a container (``params: dict``, ``layers: list``, or a literal of
shapes: ``params: {"W1": "D, H", "b1": "H"}``). Each distinct access path is a *leaf*: the
function is read as if the leaf were a parameter of its own, named after the user's name
for it where there is one (``W1`` in ``W1, b1 = params``, ``W1 = params["W1"]`` or
``params["W1"]``). So shapes, the reverse pass, ownership and calls see plain names; only
the edges change: the generated functions take the container, bind the leaves they read at
their top (``W1 = params["W1"]``) and return the gradient in the container's structure.

Every use of a structured parameter must be such a read: passing it whole to a function,
arithmetic on it, a non-constant or negative index, ``len(params)`` are refused where they
are written. Without a string key, an unpacking or an annotation, ``x[0]`` stays what it is
in array code: an index into an array. A position after a key or position
(``params["W"][0]``) is a row of an array or an entry of a list: refused unless an unpacking
or a literal annotation says which; where the annotation gives a path a shape, the keys
after it index that array.

The gradient's structure: a dict for a level read by string keys or annotated as one, with
one entry per key read, in the order first read (keys never read get no entry); a list for
a level read as a sequence, whatever the sequence type was: as long as the unpacking says
when one is unpacked, else up to the last position read, with ``None`` for positions never read. A
container the function never reads is an unused parameter: its gradient is 0.0.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import libcst as cst

from gradgen.cstwalk import descendants
from gradgen.shapes import Shape, parse_annotation

Key = int | str
Path = tuple[Key, ...]

# Annotations that say a parameter is a container of arrays.
_CONTAINER_TYPES = frozenset(
    {"dict", "list", "tuple", "Mapping", "Sequence", "MutableMapping", "Dict", "List", "Tuple"}
)
_MAPPING_TYPES = frozenset({"dict", "Mapping", "MutableMapping", "Dict"})

SUPPORTED = (
    "gradgen reads a dict, list or tuple of arrays by constant keys and positions "
    '(params["W1"], params[0]["W"]) and by unpacking (W1, b1 = params; '
    "(W1, b1), (W2, b2) = params)"
)


@dataclass(frozen=True)
class Leaf:
    """One array inside a structured parameter: its path and the name it is read under."""

    name: str
    path: Path
    shape: Shape | None = None  # from a literal annotation of shapes


@dataclass(frozen=True)
class Structured:
    """A parameter that is a container of arrays, and the leaves the function reads."""

    name: str
    leaves: tuple[Leaf, ...]  # in the order first read
    lengths: tuple[tuple[Path, int], ...] = ()  # sequences unpacked: their length
    mappings: tuple[Path, ...] = ()  # levels the annotation says are dicts (``params: dict``)

    def read(self, leaf: Leaf) -> str:
        """How the generated code reads ``leaf``: ``params["W1"]``, ``params[0][1]``."""
        return self.name + "".join(f"[{_key_text(key)}]" for key in leaf.path)

    def gradient(self, gradients: Mapping[str, str]) -> str:
        """The gradient in the parameter's structure, from each leaf's gradient (its
        name, "0.0" or "None"), as the generated code writes it."""
        return self._level((), gradients)

    def _level(self, prefix: Path, gradients: Mapping[str, str]) -> str:
        leaf = next((f for f in self.leaves if f.path == prefix), None)
        if leaf is not None:
            return gradients[leaf.name]
        keys = list(dict.fromkeys(f.path[len(prefix)] for f in self.leaves if _under(f, prefix)))
        if keys and (isinstance(keys[0], str) or prefix in self.mappings):
            entries = ", ".join(
                f"{_key_text(k)}: {self._level((*prefix, k), gradients)}" for k in keys
            )
            return "{" + entries + "}"
        length = dict(self.lengths).get(prefix)
        if length is None:
            length = max(k for k in keys if isinstance(k, int)) + 1
        items = [
            self._level((*prefix, k), gradients) if k in keys else "None" for k in range(length)
        ]
        return "[" + ", ".join(items) + "]"


def _under(leaf: Leaf, prefix: Path) -> bool:
    return len(leaf.path) > len(prefix) and leaf.path[: len(prefix)] == prefix


def _key_text(key: Key) -> str:
    return json.dumps(key, ensure_ascii=False) if isinstance(key, str) else str(key)


def user_names(names: tuple[str, ...], structured: tuple[Structured, ...]) -> list[str]:
    """Leaf names as the parameters they belong to, each once, in order."""
    owner = {leaf.name: s.name for s in structured for leaf in s.leaves}
    return list(dict.fromkeys(owner.get(name, name) for name in names))


def grouped(
    names: tuple[str, ...], gradients: tuple[str, ...], structured: tuple[Structured, ...]
) -> tuple[str, ...]:
    """Per user parameter (in the order of ``names``, leaves of one parameter together),
    its gradient as returned: a structured one's in its structure."""
    if not structured:
        return gradients
    given = dict(zip(names, gradients, strict=True))
    owner = {leaf.name: s for s in structured for leaf in s.leaves}
    returned: list[str] = []
    done: set[str] = set()
    for name in names:
        parent = owner.get(name)
        if parent is None:
            returned.append(given[name])
        elif parent.name not in done:
            done.add(parent.name)
            returned.append(parent.gradient(given))
    return tuple(returned)


# --- reading the function ------------------------------------------------------------------


@dataclass
class _Read:
    parameter: str
    path: Path
    node: cst.CSTNode  # the Subscript read, or the statement binding it whole
    statement: int  # the index of the statement it is in
    bound_as: str | None = None  # the name it is bound to whole (W1 = params["W1"])


@dataclass
class Layout:
    """What the fence needs to read a function with structured parameters."""

    structured: dict[str, Structured] = field(default_factory=dict)
    # A read (a Subscript node, by id) -> the leaf's name.
    reads: dict[int, str] = field(default_factory=dict)
    # A statement (by id) that only binds leaves: the names it binds -> each one's leaf.
    bindings: dict[int, list[tuple[str, str]]] = field(default_factory=dict)

    def leaf_of(self, node: cst.CSTNode) -> str | None:
        return self.reads.get(id(node))


def find_structure(
    params: cst.Parameters,
    statements: list[cst.BaseSmallStatement],
    taken: set[str],
    module_functions: set[str],
    refuse: Callable[[cst.CSTNode, str], None],
) -> Layout:
    """Which parameters are structured, their leaves, and where each is read; every other
    use of a structured parameter refused. ``taken``: module-level names, which a leaf's
    name must not hide."""
    names = [p.name.value for p in params.params]
    annotations = {p.name.value: _annotation(p.annotation) for p in params.params}
    finder = _Finder(set(names), module_functions, {n: set(a[1]) for n, a in annotations.items()})
    for index, statement in enumerate(statements):
        finder.statement(index, statement)
    layout = Layout()
    for param in params.params:
        name = param.name.value
        reads = [r for r in finder.reads if r.parameter == name]
        declared, shapes, mappings = annotations[name]
        keyed = any(isinstance(key, str) for r in reads for key in r.path)
        # A container read at a negative or non-constant index is refused, not indexed.
        container = name in finder.container or (declared and name in finder.indexed)
        if not ((declared and reads) or keyed or name in finder.unpacked or container):
            continue  # x[0] of an array; a container never read is a parameter unused
        problems = [
            (node, f"'{name}' is a structured parameter: it cannot be assigned again")
            for node in finder.rebound.get(name, [])
        ] or finder.bare.get(name, [])  # once rebound, its later uses are of another value
        for node, message in problems:
            refuse(node, message)
        sequences = {path[:depth] for path in shapes for depth in range(len(path))}
        leaves = _leaves(name, reads, finder.lengths.get(name, {}), sequences, mappings, refuse)
        if leaves is None or problems:
            # Refused: its reads stand for the parameter, so nothing is reported twice.
            layout.reads.update((id(r.node), name) for r in reads if r.bound_as is None)
            layout.reads.update((id(node), name) for node in finder.opaque.get(name, []))
            layout.bindings.update({key: [] for key in finder.binds.get(name, {})})
            continue
        chosen = _leaf_names(name, leaves, finder, finder.names | set(names) | taken)
        layout.structured[name] = Structured(
            name,
            tuple(Leaf(chosen[path], path, shapes.get(path)) for path in leaves),
            tuple(finder.lengths.get(name, {}).items()),
            tuple(sorted(mappings, key=len)),
        )
        for read in reads:
            if read.bound_as is None:
                layout.reads[id(read.node)] = chosen[read.path]
        for statement_id, bound in finder.binds.get(name, {}).items():
            layout.bindings[statement_id] = [(n, chosen[p]) for n, p in bound]
    return layout


def _annotation(
    annotation: cst.Annotation | None,
) -> tuple[bool, dict[Path, Shape | None], set[Path]]:
    """Does the annotation say the parameter is a container? The shapes a literal
    annotation gives its leaves (``{"W1": "D, H"}``, ``[("D, H", "H"), ...]``), and the
    levels it says are dicts."""
    if annotation is None:
        return False, {}, set()
    node = annotation.annotation
    if isinstance(node, cst.Subscript):
        node = node.value
    if isinstance(node, (cst.Name, cst.Attribute)):
        name = node.value if isinstance(node, cst.Name) else node.attr.value
        return name in _CONTAINER_TYPES, {}, {()} if name in _MAPPING_TYPES else set()
    if isinstance(node, (cst.Dict, cst.List, cst.Tuple)):
        shapes: dict[Path, Shape | None] = {}
        mappings: set[Path] = set()
        _literal_shapes(node, (), shapes, mappings)
        return True, shapes, mappings
    return False, {}, set()


def _literal_shapes(
    node: cst.BaseExpression,
    path: Path,
    shapes: dict[Path, Shape | None],
    mappings: set[Path],
) -> None:
    if isinstance(node, cst.SimpleString) and isinstance(node.evaluated_value, str):
        shapes[path] = parse_annotation(node.evaluated_value)
    elif isinstance(node, cst.Name) and node.value in ("float", "int"):
        shapes[path] = ()
    elif isinstance(node, cst.Dict):
        mappings.add(path)
        for element in node.elements:
            if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
                key = element.key.evaluated_value
                if isinstance(key, str):
                    _literal_shapes(element.value, (*path, key), shapes, mappings)
    elif isinstance(node, (cst.List, cst.Tuple)):
        for position, item in enumerate(node.elements):
            if isinstance(item, cst.Element):
                _literal_shapes(item.value, (*path, position), shapes, mappings)


def _constant_key(element: cst.SubscriptElement) -> Key | None:
    part = element.slice
    if not isinstance(part, cst.Index):
        return None
    value = part.value
    if isinstance(value, cst.SimpleString) and isinstance(value.evaluated_value, str):
        return value.evaluated_value
    if isinstance(value, cst.Integer):
        return int(value.value.replace("_", ""), 0)
    return None


def _chain(node: cst.Subscript) -> tuple[cst.Name, Path] | None:
    """``params["a"][0]`` -> (params, ("a", 0)): a name read by constant keys only."""
    keys: list[Key] = []
    current: cst.BaseExpression = node
    while isinstance(current, cst.Subscript):
        if len(current.slice) != 1 or current.lpar:
            return None
        key = _constant_key(current.slice[0])
        if key is None:
            return None
        keys.append(key)
        current = current.value
    if not isinstance(current, cst.Name) or current.lpar:
        return None
    return current, tuple(reversed(keys))


def _root(node: cst.Subscript) -> tuple[cst.Name | None, bool]:
    """The name a chain of subscripts starts from, and whether a key in it is a string
    (``layers[-1]["W"]``: a container's, whatever the other keys are)."""
    current: cst.BaseExpression = node
    keyed = False
    while isinstance(current, cst.Subscript):
        keyed = keyed or any(isinstance(_constant_key(e), str) for e in current.slice)
        current = current.value
    return (current if isinstance(current, cst.Name) else None), keyed


class _Finder:
    """Every use of the parameters in the body: reads by constant keys, unpackings, and
    any other use (refused if the parameter turns out to be structured)."""

    def __init__(
        self, parameters: set[str], module_functions: set[str], arrays: dict[str, set[Path]]
    ) -> None:
        self.parameters = parameters
        self.arrays = arrays  # parameter -> the paths its annotation says are arrays
        self.container: set[str] = set()  # read as a container only can be, if refused
        self.indexed: set[str] = set()  # indexed at a negative or non-constant index
        # Subscripts of a parameter not by constant keys: if it is refused, each stands
        # for it, so that one refusal covers the whole of layers[-1]["W"].
        self.opaque: dict[str, list[cst.CSTNode]] = {}
        self.module_functions = module_functions
        self.reads: list[_Read] = []
        self.bare: dict[str, list[tuple[cst.CSTNode, str]]] = {}
        self.rebound: dict[str, list[cst.CSTNode]] = {}
        self.unpacked: set[str] = set()  # parameters unpacked somewhere
        self.lengths: dict[str, dict[Path, int]] = {}
        # parameter -> statement id -> (name bound, leaf path)
        self.binds: dict[str, dict[int, list[tuple[str, Path]]]] = {}
        self.names: set[str] = set()  # every name the body mentions
        self.bound_at: dict[str, list[int]] = {}  # name -> statements binding it
        self.read_at: dict[str, list[int]] = {}  # name -> statements reading it
        self._statement = -1

    def statement(self, index: int, statement: cst.BaseSmallStatement) -> None:
        self._statement = index
        bound: list[str] = []
        if isinstance(statement, cst.Assign) and len(statement.targets) == 1:
            bound = _target_names(statement.targets[0].target)
        elif isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
            bound = _target_names(statement.target)
        for name in bound:
            self.bound_at.setdefault(name, []).append(index)
            if name in self.parameters:
                self.rebound.setdefault(name, []).append(statement)
        for node in _all_names(statement):
            self.names.add(node.value)
            if node.value not in bound:
                self.read_at.setdefault(node.value, []).append(index)
        if isinstance(statement, cst.Assign) and len(statement.targets) == 1:
            target = statement.targets[0].target
            if isinstance(target, (cst.Tuple, cst.List)) and isinstance(
                statement.value, cst.Subscript
            ):
                root, _ = _root(statement.value)
                if root is not None and root.value in self.parameters:
                    self.container.add(root.value)  # unpacked: W, b = layers[-1]
            if not self._structured_assignment(statement, target):
                self.expression(statement.value, "")
            return
        for child in statement.children:
            if isinstance(child, cst.BaseExpression):
                self.expression(child, "")
            else:
                self._walk_children(child, "")

    def _structured_assignment(self, statement: cst.Assign, target: cst.BaseExpression) -> bool:
        """``W1 = params["W1"]``, ``W1, b1 = params``, ``W, b = params[1]``: bound whole."""
        value = statement.value
        chain: tuple[cst.Name, Path] | None = None
        if isinstance(value, cst.Name) and not value.lpar:
            chain = value, ()
        elif isinstance(value, cst.Subscript):
            chain = _chain(value)
        if chain is None or chain[0].value not in self.parameters:
            return False
        parameter, path = chain[0].value, chain[1]
        if self._array_depth(parameter, path) < len(path):
            return False  # w0 = params["W"][0], "W" an array: indexing it
        bound: list[tuple[str, Path]] = []
        if isinstance(target, cst.Name) and path:
            bound.append((target.value, path))
        elif isinstance(target, (cst.Tuple, cst.List)):
            self.unpacked.add(parameter)
            if not self._unpack(parameter, target, path, bound):
                self.binds.setdefault(parameter, {})[id(statement)] = []  # refused here
                return True
        else:
            return False  # x = params: a bare use; params[0] = ...: refused by the fence
        self.binds.setdefault(parameter, {})[id(statement)] = bound
        for name, leaf in bound:
            self.reads.append(_Read(parameter, leaf, statement, self._statement, name))
        return True

    def _unpack(
        self,
        parameter: str,
        target: cst.Tuple | cst.List,
        path: Path,
        bound: list[tuple[str, Path]],
    ) -> bool:
        lengths = self.lengths.setdefault(parameter, {})
        count = len(target.elements)
        if lengths.setdefault(path, count) != count:
            self._problem(
                parameter,
                target,
                f"'{_spelled(parameter, path)}' is unpacked into {count} names here and "
                f"{lengths[path]} elsewhere: a sequence has one length",
            )
            return False
        for position, element in enumerate(target.elements):
            value = element.value
            if isinstance(element, cst.StarredElement):
                self._problem(
                    parameter,
                    element,
                    f"starred unpacking of '{parameter}' is not supported: name each entry",
                )
                return False
            if isinstance(value, cst.Name):
                bound.append((value.value, (*path, position)))
            elif isinstance(value, (cst.Tuple, cst.List)):
                if not self._unpack(parameter, value, (*path, position), bound):
                    return False
            else:
                self._problem(
                    parameter,
                    value,
                    f"unpacking '{parameter}' supports names and tuples of names only",
                )
                return False
        return True

    def _array_depth(self, parameter: str, path: Path) -> int:
        """How much of ``path`` reaches an array the annotation gives a shape: the keys
        after it index that array."""
        arrays = self.arrays.get(parameter, set())
        return next((d for d in range(1, len(path)) if path[:d] in arrays), len(path))

    def _problem(self, parameter: str, node: cst.CSTNode, message: str) -> None:
        self.bare.setdefault(parameter, []).append((node, message))

    def expression(self, node: cst.CSTNode, context: str) -> None:
        if isinstance(node, cst.Subscript):
            chain = _chain(node)
            if chain is not None and chain[0].value in self.parameters:
                parameter, path = chain[0].value, chain[1]
                depth = self._array_depth(parameter, path)
                read: cst.BaseExpression = node
                for _ in range(len(path) - depth):  # params["W"][0]: the leaf params["W"]
                    assert isinstance(read, cst.Subscript)
                    read = read.value
                self.reads.append(_Read(parameter, path[:depth], read, self._statement))
                return
            root, keyed = _root(node)
            if root is not None and root.value in self.parameters:
                self.opaque.setdefault(root.value, []).append(node)
                if keyed:
                    self.container.add(root.value)
                if node.value is root:
                    self.indexed.add(root.value)
            inner = _why_not_constant(node)
            self.expression(node.value, inner or "array indexing")
            for element in node.slice:
                self._walk_children(element, "")
            return
        if isinstance(node, cst.Name):
            if node.value in self.parameters:
                self.bare.setdefault(node.value, []).append(
                    (node, _bare_message(node.value, context))
                )
            return
        if isinstance(node, cst.Attribute):
            self.expression(node.value, "an attribute")
            return
        if isinstance(node, cst.Call):
            callee = node.func
            name = callee.value if isinstance(callee, cst.Name) else None
            if isinstance(callee, cst.Attribute):
                self.expression(callee.value, "a method call")
            else:
                self.expression(callee, "")
            inner = f"an argument of '{name}'" if name in self.module_functions else "an argument"
            for arg in node.args:
                self.expression(arg.value, inner)
            return
        self._walk_children(node, "an operand")

    def _walk_children(self, node: cst.CSTNode, context: str) -> None:
        for child in node.children:
            if isinstance(child, cst.BaseExpression):
                self.expression(child, context)
            elif not isinstance(child, (cst.Arg,)):
                self._walk_children(child, context)
            else:
                self.expression(child.value, context)


def _why_not_constant(node: cst.Subscript) -> str:
    """Why ``params[...]`` is not a read by constant keys (for the message)."""
    if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        value = node.slice[0].slice.value
        if isinstance(value, cst.UnaryOperation) and isinstance(value.expression, cst.Integer):
            return "a negative index"
        if not isinstance(value, (cst.Integer, cst.SimpleString)):
            return "a non-constant index"
    return "an index that is not one constant key or position"


def _bare_message(name: str, context: str) -> str:
    what = {
        "": "used whole",
        "a negative index": "read at a negative index (which needs its length: unpack it)",
        "a non-constant index": "read at an index that is not a constant",
        "array indexing": "indexed as an array",
        "an attribute": "used with an attribute",
        "a method call": "used with a method",
        "an operand": "used in arithmetic",
        "an argument": "passed whole to a function (len() too)",
    }.get(context)
    if what is None:  # an argument of one of the module's functions
        return (
            f"'{name}' is a structured parameter (a dict, list or tuple of arrays), passed whole "
            f'as {context}: pass its arrays instead (f(x, {name}["W"], {name}["b"])); ' + SUPPORTED
        )
    return (
        f"'{name}' is a structured parameter (a dict, list or tuple of arrays), {what} here: "
        + SUPPORTED
    )


def _spelled(parameter: str, path: Path) -> str:
    return parameter + "".join(f"[{_key_text(k)}]" for k in path)


def _all_names(node: cst.CSTNode) -> Iterator[cst.Name]:
    # In no particular order: the caller collects them by statement.
    return (found for found in descendants(node) if isinstance(found, cst.Name))


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for element in target.elements for n in _target_names(element.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _leaves(
    name: str,
    reads: list[_Read],
    lengths: Mapping[Path, int],
    sequences: set[Path],
    mappings: set[Path],
    refuse: Callable[[cst.CSTNode, str], None],
) -> list[Path] | None:
    """The leaf paths in the order first read; refuses paths that do not fit together.
    ``sequences``: the levels a literal annotation says are containers."""
    first: dict[Path, cst.CSTNode] = {}
    for read in reads:  # in the order of the source
        first.setdefault(read.path, read.node)
    paths = list(first)
    if () in first:
        refuse(first[()], _bare_message(name, ""))
        return None
    ok = True
    levels: dict[Path, dict[type, cst.CSTNode]] = {}
    for path in paths:
        for depth in range(len(path)):
            prefix = path[:depth]
            if prefix in first:
                refuse(
                    first[prefix],
                    f"'{_spelled(name, prefix)}' is read both as an array and as a container "
                    "of arrays",
                )
                ok = False
            key = path[depth]
            levels.setdefault(prefix, {}).setdefault(type(key), first[path])
            if depth and isinstance(key, int) and prefix not in lengths and prefix not in sequences:
                node = first[path]
                refuse(
                    node.value if isinstance(node, cst.Assign) else node,
                    _ambiguous(name, prefix, key),
                )
                ok = False
            length = lengths.get(prefix)
            if isinstance(key, int) and length is not None and key >= length:
                refuse(
                    first[path],
                    f"'{_spelled(name, path[: depth + 1])}' is past the end of "
                    f"'{_spelled(name, prefix)}', which is unpacked into {length} names",
                )
                ok = False
    for prefix, kinds in levels.items():
        where = list(kinds.values())[-1]
        if len(kinds) > 1:
            refuse(
                where,
                f"'{_spelled(name, prefix)}' is read both by keys and by positions: each "
                "level is a dict or a sequence",
            )
            ok = False
        elif (str in kinds or prefix in mappings) and prefix in lengths:
            refuse(
                where,
                f"'{_spelled(name, prefix)}' is read by keys and unpacked: unpacking a dict "
                "gives its keys, not its arrays",
            )
            ok = False
    return paths if ok else None


def _ambiguous(name: str, prefix: Path, key: int) -> str:
    """``params["W"][0]`` with nothing saying what ``params["W"]`` is: a row of an array or
    an entry of a list."""
    spelled = _spelled(name, prefix)
    array, sequence = '"R, D"', '["D", "D"]'
    if all(isinstance(k, str) for k in prefix):
        for k in reversed(prefix):
            array, sequence = f"{{{_key_text(k)}: {array}}}", f"{{{_key_text(k)}: {sequence}}}"
    else:
        array, sequence = f"{{...: {array}}}", f"{{...: {sequence}}}"
    return (
        f"'{spelled}[{key}]' is ambiguous: '{spelled}' may be an array ([{key}] a row of it) "
        f"or a list of arrays. Bind the array first (W = {spelled}, then W[{key}]), or "
        f"annotate '{name}' with its shapes, which say which it is ({name}: {array} for an "
        f"array, {name}: {sequence} for a list)"
    )


_IDENTIFIER = re.compile(r"[^0-9A-Za-z_]+")


def _leaf_names(
    parameter: str, paths: list[Path], finder: _Finder, taken: set[str]
) -> dict[Path, str]:
    """Each leaf's name: the user's name for it where there is exactly one place binding
    it whole (``W1 = params["W1"]``, ``W1, b1 = params``) and the name is bound nowhere
    else; else its last key (``W1`` for ``params["W1"]``) when free; else one built from
    the parameter and the path (``params_0_1``)."""
    chosen: dict[Path, str] = {}
    used: set[str] = set()
    candidates: dict[Path, list[tuple[str, int]]] = {}
    for read in finder.reads:
        if read.parameter == parameter and read.bound_as is not None:
            candidates.setdefault(read.path, []).append((read.bound_as, read.statement))
    for path in paths:
        names = candidates.get(path, [])
        if len(names) != 1:
            continue
        name, statement = names[0]
        # Bound there only, read nowhere before: the leaf can carry the user's name from
        # the top of the function on.
        if (
            finder.bound_at.get(name) == [statement]
            and not [s for s in finder.read_at.get(name, []) if s < statement]
            and name not in finder.parameters
            and name not in used
        ):
            chosen[path] = name
            used.add(name)
    for path in paths:
        if path in chosen:
            continue
        options = []
        last = path[-1]
        if isinstance(last, str) and last.isidentifier() and not keyword.iskeyword(last):
            options.append(last)
        parts = [_IDENTIFIER.sub("_", str(k)).strip("_") or str(i) for i, k in enumerate(path)]
        options.append(f"{parameter}_{'_'.join(parts)}")
        free = next((o for o in options if o not in taken and o not in used), None)
        if free is None:
            base, suffix = options[-1], 2
            while f"{base}_{suffix}" in taken or f"{base}_{suffix}" in used:
                suffix += 1
            free = f"{base}_{suffix}"
        chosen[path] = free
        used.add(free)
    return chosen
