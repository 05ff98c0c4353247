"""The ownership pass: ``+=`` and scatters write only into arrays the backward owns alone.

Each case is a short list of adjoint statements as the reverse pass makes them (``=`` for a
first contribution, ``+=`` for later ones) and the statements the pass must turn them into.
Programs that fail numerically without the pass are in ``test_properties.py`` (FIXED_BUGS).
"""

from __future__ import annotations

import pytest

from gradgen.expr import BinOp, Call, Expr, Func, Name, Sequence_, Subscript, UnaryOp, number
from gradgen.helpers import HELPER_ALIASING, HELPERS
from gradgen.ir import AdjointStatement, Kind
from gradgen.ownership import protect_shared
from gradgen.shapes import Shape

NUMPY = "numpy"


def _call(name: str, *args: Expr, lib: str = NUMPY) -> Call:
    return Call(Func(lib, name, None), args)


def _fresh(name: str) -> Expr:
    """An expression that allocates: ``2 * x``."""
    return BinOp("*", number(2), Name(name))


def _kinds(
    statements: list[AdjointStatement],
    returned: dict[str, Shape | None] | None = None,
) -> list[tuple[str, Kind]]:
    protected = protect_shared(statements, "dout", returned or {})
    return [(s.target, s.kind) for s in protected]


def s(target: str, kind: Kind, expr: Expr) -> AdjointStatement:
    return AdjointStatement(target, kind, expr, 0)


CASES = [
    pytest.param(
        [s("dx", Kind.ASSIGN, _fresh("a")), s("dx", Kind.ADD, _fresh("b"))],
        {},
        [("dx", Kind.ASSIGN), ("dx", Kind.ADD)],
        id="a-fresh-array-is-written-into",
    ),
    pytest.param(
        [s("dx", Kind.ASSIGN, Name("dout")), s("dx", Kind.ADD, _fresh("b"))],
        {},
        [("dx", Kind.ASSIGN), ("dx", Kind.ADD_NEW)],
        id="the-upstream-is-never-written-into",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, Name("dt")),
            s("dy", Kind.ASSIGN, Name("dt")),
            s("dx", Kind.ADD, _fresh("b")),
            s("dz", Kind.ASSIGN, _fresh("dy")),
        ],
        {},
        [
            ("dt", Kind.ASSIGN),
            ("dx", Kind.ASSIGN),
            ("dy", Kind.ASSIGN),
            ("dx", Kind.ADD_NEW),
            ("dz", Kind.ASSIGN),
        ],
        id="one-object-two-names-the-other-read-later",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, Name("dt")),
            s("dy", Kind.ASSIGN, _call("reshape", Name("dt"), Name("shape"))),
            s("dx", Kind.ADD, _fresh("b")),
        ],
        {"dy": None},
        [
            ("dt", Kind.ASSIGN),
            ("dx", Kind.ASSIGN),
            ("dy", Kind.ASSIGN),
            ("dx", Kind.ADD_NEW),
            ("dy", Kind.COPY),  # a view is never handed back: the caller gets its own array
        ],
        id="a-reshape-view-of-it-is-returned-later",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, _call("_unbroadcast", Name("dt"), Name("x"), lib="helper")),
            s("dq", Kind.ASSIGN, _call("_unbroadcast", Name("dt"), Name("q"), lib="helper")),
            s("du", Kind.ASSIGN, _call("transpose", Name("dq"))),
            s("dx", Kind.ADD, _fresh("b")),
            s("dw", Kind.ASSIGN, _fresh("du")),
        ],
        {},
        [
            ("dt", Kind.ASSIGN),
            ("dx", Kind.ASSIGN),
            ("dq", Kind.ASSIGN),
            ("du", Kind.ASSIGN),
            ("dx", Kind.ADD_NEW),
            ("dw", Kind.ASSIGN),
        ],
        id="unbroadcast-hands-back-its-argument-and-a-transpose-views-it",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dp", Kind.ASSIGN, _call("broadcast_to", Name("dt"), Name("shape"))),
            s("dt", Kind.ADD, _fresh("b")),
            s("dz", Kind.ASSIGN, _fresh("dp")),
        ],
        {},
        [("dt", Kind.ASSIGN), ("dp", Kind.ASSIGN), ("dt", Kind.ADD_NEW), ("dz", Kind.ASSIGN)],
        id="a-broadcast-view-read-later",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dr", Kind.ASSIGN, Subscript(Name("dt"), (number(0),))),
            s("dt", Kind.ADD, _fresh("b")),
            s("dz", Kind.ASSIGN, _fresh("dr")),
        ],
        {},
        [("dt", Kind.ASSIGN), ("dr", Kind.ASSIGN), ("dt", Kind.ADD_NEW), ("dz", Kind.ASSIGN)],
        id="an-index-view-read-later",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dr", Kind.ASSIGN, _call("someday", Name("dt"))),
            s("dt", Kind.ADD, _fresh("b")),
            s("dz", Kind.ASSIGN, _fresh("dr")),
        ],
        {},
        [("dt", Kind.ASSIGN), ("dr", Kind.ASSIGN), ("dt", Kind.ADD_NEW), ("dz", Kind.ASSIGN)],
        id="an-unknown-function-may-return-its-argument",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dr", Kind.ASSIGN, _call("reshape", Name("dt"), Name("shape"))),
            s("dt", Kind.ADD, _fresh("b")),
        ],
        {},
        [("dt", Kind.ASSIGN), ("dr", Kind.ASSIGN), ("dt", Kind.ADD)],
        id="a-view-nobody-reads-again-is-no-obstacle",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, Name("dt")),
            AdjointStatement("dx", Kind.SCATTER, Name("g"), 0, (number(0),)),
            s("dz", Kind.ASSIGN, _fresh("dt")),
        ],
        {},
        [
            ("dt", Kind.ASSIGN),
            ("dx", Kind.ASSIGN),
            ("dx", Kind.COPY),
            ("dx", Kind.SCATTER),
            ("dz", Kind.ASSIGN),
        ],
        id="a-scatter-into-a-shared-object-copies-first",
    ),
    pytest.param(
        [
            s("dt", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, Name("dt")),
            s("dy", Kind.ASSIGN, _call("transpose", Name("dt"))),
        ],
        {"dx": (3, 3), "dy": (3, 3)},
        [("dt", Kind.ASSIGN), ("dx", Kind.ASSIGN), ("dy", Kind.ASSIGN), ("dy", Kind.COPY)],
        id="returned-gradients-that-share-memory-are-copied",
    ),
    pytest.param(
        [
            s("ds", Kind.ASSIGN, _fresh("a")),
            s("dx", Kind.ASSIGN, Name("ds")),
            s("dw", Kind.ASSIGN, Name("ds")),
        ],
        {"dx": (), "dw": ()},
        [("ds", Kind.ASSIGN), ("dx", Kind.ASSIGN), ("dw", Kind.ASSIGN)],
        id="gradients-of-numbers-from-arithmetic-are-immutable-numbers",
    ),
    pytest.param(
        [
            s("ds", Kind.ASSIGN, _call("where", Name("c"), Name("dout"), number(0))),
            s("ds", Kind.ADD, _fresh("b")),
            s("dx", Kind.ASSIGN, Name("ds")),
            s("dw", Kind.ASSIGN, Name("ds")),
        ],
        {"dx": (), "dw": ()},
        [
            ("ds", Kind.ASSIGN),
            ("ds", Kind.ADD),
            ("dx", Kind.ASSIGN),
            ("dw", Kind.ASSIGN),
            ("dw", Kind.ASSIGN),  # dw = np.copy(dw): np.where of numbers is a 0-d array
        ],
        id="gradients-of-numbers-that-are-one-0d-array-are-copied",
    ),
    *(
        pytest.param(
            [
                s("da", Kind.ASSIGN, Name("dout")),
                s("db", Kind.ASSIGN, Name("dout")),
                s("dx", Kind.ASSIGN, _call(join, Sequence_((Name("da"), Name("db")), "[]"))),
                s("dx", Kind.ADD, _fresh("b")),
                s("da", Kind.ADD, _fresh("b")),
            ],
            {"dx": (4,)},
            [
                ("da", Kind.ASSIGN),
                ("db", Kind.ASSIGN),
                ("dx", Kind.ASSIGN),
                ("dx", Kind.ADD),
                ("da", Kind.ADD_NEW),
            ],
            # np.split's adjoint joins the pieces' gradients: a copy the backward owns,
            # whatever the pieces' gradients share (here the upstream)
            id=f"{join}-of-gradients-is-a-new-array",
        )
        for join in ("concatenate", "hstack", "vstack", "dstack", "stack")
    ),
]


@pytest.mark.parametrize(("statements", "returned", "expected"), CASES)
def test_writes_only_into_what_the_backward_owns(
    statements: list[AdjointStatement],
    returned: dict[str, Shape | None],
    expected: list[tuple[str, Kind]],
) -> None:
    assert _kinds(statements, returned) == expected


def test_numbers_are_immutable_so_every_accumulation_is_in_place() -> None:
    statements = [s("dx", Kind.ASSIGN, Name("dout")), s("dx", Kind.ADD, _fresh("b"))]
    protected = protect_shared(statements, "dout", {"dx": None}, numbers=True)
    assert [p.kind for p in protected] == [Kind.ASSIGN, Kind.ADD]


def test_every_helper_says_what_its_result_shares() -> None:
    """A helper missing from HELPER_ALIASING is taken to share memory with its arguments
    (safe, but slower code): every helper that returns an array is classified."""
    returning_nothing = {"_dot_ranks"}
    assert set(HELPER_ALIASING) == set(HELPERS) - returning_nothing


def test_a_subtraction_into_a_shared_array_keeps_its_sign() -> None:
    statements = [
        s("dx", Kind.ASSIGN, Name("dout")),
        s("dx", Kind.SUBTRACT, _fresh("b")),
    ]
    protected = protect_shared(statements, "dout", {})
    assert protected[-1].kind is Kind.ADD_NEW
    assert protected[-1].expr == UnaryOp("-", _fresh("b"))
