"""The numerical gradient check: a backward pass against central differences of its forward.

``gradgen check FORWARD.py`` generates the backward of every function of ``FORWARD.py`` (or
takes a hand-written or hand-edited one with ``--backward``), draws random float64
arguments and a random upstream gradient (never 1.0, so a forgotten ``* dout`` shows), and
compares each returned gradient with central differences of ``sum(upstream * F(...))``
(step ``1e-6``, scaled by the entry's magnitude). Unlike plain
``gradgen``, which only reads its input, the check **runs the forward code**: it loads the
forward file as a module (its top level runs, as on import) and calls the functions.

Arguments. A parameter annotated with a shape (``x: "N, D"``) gets an array of that shape;
each dimension name gets a small size (2 to 5, distinct, the same for every parameter of
the function), so that a transposed or mis-broadcast gradient cannot fit by accident.
``float`` means a Python float. A parameter the backward gives ``None`` (used only as an
index, like labels ``y``) gets random integers in ``0 .. smallest size - 1``. ``--shapes
x=2,3`` or ``--shapes N=4`` and ``--ints y=3`` override all of this. A flag (defaulting to
``True``/``False`` or annotated ``bool``) is checked both ways, a string (defaulting to one
or annotated ``str``) at its default, at each string it is compared with and at one equal to
none of them (the ``else`` side), a parameter defaulting to None and tested ``is None`` drawn
and as None; one parameter at a time: every side of an ``if`` on them is checked. A list a
loop goes over the items of is drawn at the shapes its literal annotation gives
(``layers: [("D, H", "H"), ("H, C", "C")]``), and each array of it checked as a parameter.
When the forward raises on the drawn sizes (``a[:, 3 * H :]`` needs ``G == 4 * H``), sizes where one
dimension is 1 to 4 times another are tried too; when it gives NaN or infinity (a log of a
negative number), other values are drawn, positive ones last. When some gradient is zero
everywhere at the drawn values (every ReLU inactive), which checks nothing, other values are
drawn; the report says so if that persists at every set of shapes tried (the softmax of a
number is the constant 1: a gradient zero there only is no sign of badly drawn values).

Shapes guessed. A parameter with no shape given (no annotation, no ``--shapes``, no number
default, not an integer) is tried as a number, and in a module that imports numpy also as
arrays: all such parameters ``(3,)``, all ``(2, 3)``, and mixed. These are guesses, so a set
of them is skipped, not failed, when the forward raises on it (or never gives finite
values), or when the forward runs but the backward raises one of gradgen's documented
refusals at run time: the ``ValueError("gradgen: ...")`` of a helper the generated module
defines (``_dot_ranks``: ``np.dot`` of a number, or above 2-D), raised by that helper of the
backward's own module. Anything else the backward raises is an error of the backward,
whatever the shapes. When no set of shapes can be checked, the function is an error that
says so, why, and how to give shapes. Shapes given (annotations, ``--shapes``) are used
exactly as given, and nothing is skipped: a refusal there, or a forward that never runs,
is an error.

Which line is wrong. A wrong gradient of a parameter is reported with the forward line
whose backward statements introduced the error. The backward is run instrumented: every
gradient it writes is copied after each statement. For gradgen's own backward, the name of
each variable's gradient and what each statement writes, from which forward statement, are
read from the compile (``gradgen.api.Compiled``), never from the generated text; a backward
given with ``--backward`` (or to ``gradgen.testing``) is read as written: gradients named as
gradgen names them or ``d<var>``, statements grouped by their ``# backprop`` comments.
Then, walking from the result back (last forward statement first), the adjoint of each
user-named variable ``v`` is compared with central differences of the result with respect
to ``v`` (the forward statements after ``v`` re-run from gradgen's staged form with ``v``
perturbed). The first variable whose adjoint disagrees, while the adjoints of everything
computed from it agree, got its error from the backward of a statement that *reads* it:
that statement's adjoint rule produced the wrong value, so that is the line reported::

    forward.py:9: the adjoint of 'h' disagrees (max rel. error 0.3): out = h * w

When several statements read ``v``, each one's share of ``dv`` (central differences of that
statement alone, weighted by the adjoint of what it computes) is compared with what its
backward added to ``dv``: the writes that come from it, or, in a backward given without
``# backprop`` comments, any single write. The last statement whose share is not what the
backward added is reported; when that cannot be told, every reading line is listed.

Tolerances. An entry passes when ``|backward - numeric| <= max(rtol * max(|backward|,
|numeric|), atol)``; the "max rel. error" shown is ``|backward - numeric| / max(|backward|,
|numeric|, atol / rtol)``, so a gradient passes exactly when it is at most ``rtol``.

Exit status: 0 every gradient matches, 1 some gradient does not (or the check could not
run the function), 2 usage error, 123 gradgen refuses the forward file.

The package, a module per job: ``command`` (the command line), ``filecheck`` (the functions
of a forward file), ``inputs`` (their arguments), ``callables`` (a Python function, for
``gradgen.testing``), ``run`` (one check), ``compare`` (numbers and central differences),
``instrument`` (the recording backward), ``forward`` and ``locate`` (naming the wrong line),
``results`` (what is reported).
"""

from __future__ import annotations

from gradgen.gradcheck.callables import check_callable
from gradgen.gradcheck.command import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    build_parser,
    main,
)
from gradgen.gradcheck.compare import DEFAULT_ATOL, DEFAULT_RTOL, STEP
from gradgen.gradcheck.inputs import Dims, parse_ints, parse_shapes
from gradgen.gradcheck.results import Culprit, FunctionReport, GradientCheck, UsageError

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "STEP",
    "Culprit",
    "Dims",
    "FunctionReport",
    "GradientCheck",
    "UsageError",
    "build_parser",
    "check_callable",
    "main",
    "parse_ints",
    "parse_shapes",
]
