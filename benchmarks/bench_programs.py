"""Run time of a composed program's backward (calls between functions) versus the same net flat.

The two-layer net of issue 11 (affine - relu - affine - softmax loss, labels ``y`` as data,
no regularisation; gradients w.r.t. W1, b1, W2, b2 via ``wrt``) is generated with
``gradgen.generate`` at run time in three spellings and exec'd:

- ``composed``: ``two_layer_loss`` calls ``affine``, ``relu`` and ``softmax_loss``, every
  callee's parameters annotated with shapes;
- ``composed_issue``: the issue's exact text: ``affine`` annotated, ``relu`` and
  ``softmax_loss`` not (as users write them; gradgen then cannot tell the callees' shapes);
- ``flat``: the same operations staged inline in one function, the way ``bench_arrays.py``'s
  twolayer is written (annotated);

and compared with ``hand``, a CS231n-style forward+backward written in one function
(``dscores = probs; dscores[range(N), y] -= 1``, the ReLU gate as ``dhidden *= h1 > 0``).
``softmax_loss`` is written with the flat function's stages (shifted, exps, sums, probs,
logp), so the composed and flat versions do the same arithmetic.

Two modes, each at (N, D, H, C) = (64, 100, 100, 10) and (1024, 512, 512, 10):

- ``recompute``: ``two_layer_loss_backward(X, y, W1, b1, W2, b2)`` (generated without
  pairs: it recomputes the forward; the composed one runs each callee's ``F_forward`` and
  then its ``F_cached_backward[_wrt_...]``). ``hand`` returns the gradients only.
- ``pairs``: generated with ``pairs=True``, timed as a training step would call it:
  ``two_layer_loss_forward(...)`` then ``two_layer_loss_backward(1.0, cache)``, both inside
  the timed call (``two_layer_loss_value_and_grad`` is exactly these two calls). ``hand``
  also computes the loss value here.

Before timing, once per size and mode: the gradients of every variant agree with ``hand``
(``np.allclose``, rtol 1e-10), the loss values too in the pairs mode, and the composed
backward runs each callee's forward once per call site (counted by wrapping the generated
``*_forward`` functions in a separate copy of the generated module): ``affine_forward`` 2,
``relu_forward`` 1, ``softmax_loss_forward`` 1 per ``two_layer_loss_backward`` call; with
pairs, the same per ``two_layer_loss_forward`` call and none in the backward.

Timing is ``bench_arrays.py``'s: interleaved rounds, one sample of a few calls per variant
per round, the order rotating (and reversing), ratios taken within a round. Printed: the
median time per call with the minor page faults per call, and the medians (quartiles) of
the per-round ratios composed/flat (target 1.05), composed/hand and flat/hand.
``--keep-freed-memory`` (see ``bench_arrays.py`` on page faults) keeps glibc from returning
freed arrays to the OS, so the ratios then measure work rather than page faults.

    python benchmarks/bench_programs.py                       # full run, ~1.5 min
    python benchmarks/bench_programs.py --keep-freed-memory   # no page-fault noise
    python benchmarks/bench_programs.py --quick               # smoke run: N=64, few rounds
    python benchmarks/bench_programs.py --show                # also print the generated code
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_arrays import (
    RTOL,
    TARGET,
    calibrate,
    copies,
    fmt_time,
    keep_freed_memory,
    time_interleaved,
)

import gradgen

WRT = {"two_layer_loss": ["W1", "b1", "W2", "b2"]}

COMPOSED_SOURCE = """\
import numpy as np


def affine(x: "N, D", w: "D, M", b: "M"):
    out = x @ w + b
    return out


def relu(x: "N, H"):
    return np.maximum(0, x)


def softmax_loss(x: "N, C", y: "N"):
    N = x.shape[0]
    shifted = x - np.max(x, axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    probs = exps / sums
    logp = np.log(probs[np.arange(N), y])
    loss = -np.sum(logp) / N
    return loss


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C"):
    h = relu(affine(X, W1, b1))
    scores = affine(h, W2, b2)
    loss = softmax_loss(scores, y)
    return loss
"""

# The issue's text: only affine (and the caller) annotated.
COMPOSED_ISSUE_SOURCE = COMPOSED_SOURCE.replace('def relu(x: "N, H"):', "def relu(x):").replace(
    'def softmax_loss(x: "N, C", y: "N"):', "def softmax_loss(x, y):"
)
assert COMPOSED_ISSUE_SOURCE.count(': "') == 3 + 6  # affine's three, the caller's six

FLAT_SOURCE = """\
import numpy as np


def two_layer_loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C"):
    N = X.shape[0]
    h1 = X @ W1 + b1
    a1 = np.maximum(0, h1)
    scores = a1 @ W2 + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    probs = exps / sums
    logp = np.log(probs[np.arange(N), y])
    loss = -np.sum(logp) / N
    return loss
"""

SOURCES = {
    "composed": COMPOSED_SOURCE,
    "composed_issue": COMPOSED_ISSUE_SOURCE,
    "flat": FLAT_SOURCE,
}

CALLEE_FORWARDS = {"affine_forward": 2, "relu_forward": 1, "softmax_loss_forward": 1}


def two_layer_hand(X, y, W1, b1, W2, b2, dloss=1.0, *, value=False):
    """CS231n-style forward + backward of the unregularised two-layer net: the gradients,
    or with ``value`` the loss and the gradients."""
    N = X.shape[0]
    h1 = X @ W1 + b1
    a1 = np.maximum(0, h1)
    scores = a1 @ W2 + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(shifted)
    probs = exps / np.sum(exps, axis=1, keepdims=True)
    if value:
        loss = -np.sum(np.log(probs[np.arange(N), y])) / N
    # backward
    dscores = probs
    dscores[np.arange(N), y] -= 1
    dscores *= dloss / N
    dW2 = a1.T @ dscores
    db2 = dscores.sum(axis=0)
    dhidden = dscores @ W2.T
    dhidden *= h1 > 0
    dW1 = X.T @ dhidden
    db1 = dhidden.sum(axis=0)
    return (loss, (dW1, db1, dW2, db2)) if value else (dW1, db1, dW2, db2)


def two_layer_step_hand(*args):
    return two_layer_hand(*args, value=True)


def make_args(size: tuple[int, int, int, int]) -> tuple[Any, ...]:
    N, D, H, C = size
    rng = np.random.default_rng(12345)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, size=N)
    W1 = rng.standard_normal((D, H)) / np.sqrt(D)
    b1 = 0.1 * rng.standard_normal(H)
    W2 = rng.standard_normal((H, C)) / np.sqrt(H)
    b2 = 0.1 * rng.standard_normal(C)
    return (X, y, W1, b1, W2, b2)


# --------------------------------------------------------------------------------------
# Generated variants
# --------------------------------------------------------------------------------------


def generate(name: str, pairs: bool) -> tuple[str, dict[str, Any]]:
    text = gradgen.generate(SOURCES[name], f"{name}.py", wrt=WRT, pairs=pairs)
    namespace: dict[str, Any] = {"__name__": f"{name}_backward"}
    exec(compile(text, f"<gradgen: {name}{' --pairs' if pairs else ''}>", "exec"), namespace)
    return text, namespace


def callable_of(namespace: dict[str, Any], pairs: bool) -> Callable[..., Any]:
    """The timed call: the backward (recomputing), or forward then backward (pairs)."""
    if not pairs:
        return namespace["two_layer_loss_backward"]
    forward, backward = namespace["two_layer_loss_forward"], namespace["two_layer_loss_backward"]

    def step(*args: Any) -> tuple[Any, Any]:
        value, cache = forward(*args)
        return value, backward(1.0, cache)

    return step


def count_forwards(name: str, pairs: bool, args: tuple[Any, ...]) -> None:
    """In a fresh copy of the generated module, wrap each ``*_forward`` with a counter and
    check each callee's forward runs once per call site, and never in a pair's backward."""
    _, namespace = generate(name, pairs)
    counts: Counter[str] = Counter()
    for fname, value in list(namespace.items()):
        if callable(value) and fname.endswith("_forward"):

            def counted(*a: Any, _name: str = fname, _f: Any = value, **k: Any) -> Any:
                counts[_name] += 1
                return _f(*a, **k)

            namespace[fname] = counted
    callees = {n for n in namespace if n.endswith("_forward")} - {"two_layer_loss_forward"}
    if name == "flat":
        assert not callees, callees
    if pairs:
        _, cache = namespace["two_layer_loss_forward"](*copies(args))
        expected = {"two_layer_loss_forward": 1} | (CALLEE_FORWARDS if name != "flat" else {})
        assert dict(counts) == expected, (name, dict(counts))
        counts.clear()
        namespace["two_layer_loss_backward"](1.0, cache)
        assert not counts, (name, "a pair's backward ran a forward", dict(counts))
    else:
        namespace["two_layer_loss_backward"](*copies(args))
        expected = CALLEE_FORWARDS if name != "flat" else {}
        assert dict(counts) == expected, (name, dict(counts))


def check(variants: dict[str, Callable[..., Any]], args: tuple[Any, ...], pairs: bool) -> float:
    """Every variant gives hand's gradients (and value, with pairs); no argument mutated.
    Returns the largest absolute gradient difference."""
    want = variants["hand"](*copies(args))
    worst = 0.0
    for name, fn in variants.items():
        got = fn(*copies(args))
        if pairs:
            assert np.allclose(got[0], want[0], rtol=RTOL), (name, got[0], want[0])
            got_grads, want_grads = got[1], want[1]
        else:
            got_grads, want_grads = got, want
        assert len(got_grads) == 4, (name, len(got_grads))
        for i, (g, w) in enumerate(zip(got_grads, want_grads, strict=True)):
            assert np.shape(g) == np.shape(w), (name, i, np.shape(g), np.shape(w))
            assert np.allclose(g, w, rtol=RTOL), (name, i, float(np.max(np.abs(g - w))))
            worst = max(worst, float(np.max(np.abs(g - w))))
        fresh = copies(args)
        fn(*fresh)
        for before, after in zip(args, fresh, strict=True):
            assert np.array_equal(before, after), f"{name} wrote to an argument"
    return worst


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------

RATIOS = [
    ("composed", "flat"),
    ("composed_issue", "flat"),
    ("composed", "hand"),
    ("composed_issue", "hand"),
    ("flat", "hand"),
]


def run(
    mode: str,
    size: tuple[int, int, int, int],
    variants: dict[str, Callable[..., Any]],
    rounds: int,
    sample: float,
) -> tuple[list[str], dict[str, float]]:
    pairs = mode == "pairs"
    args = make_args(size)
    label = "{} N={}, D={}, H={}, C={}".format(mode, *size)
    print(f"== {label}")
    for name in SOURCES:
        count_forwards(name, pairs, args)
    where = "two_layer_loss_forward" if pairs else "two_layer_loss_backward"
    print(
        f"   each callee forward ran once per call site in {where} "
        f"({', '.join(f'{k} x{v}' for k, v in CALLEE_FORWARDS.items())})"
        + ("; none in the pair's backward" if pairs else "")
    )
    worst = check(variants, args, pairs)
    print(
        f"   {'values and ' if pairs else ''}gradients agree with hand (np.allclose, "
        f"rtol={RTOL:g}; max abs diff {worst:.2g}); no argument written to"
    )
    for fn in variants.values():  # warm up
        fn(*args)
    number = calibrate(variants["hand"], args, sample)
    faults: dict[str, int] = {}
    times = time_interleaved(variants, args, number, rounds, faults)
    print(f"   {rounds} rounds x {number} call(s) per sample, interleaved, order rotating")
    for name in variants:
        print(
            f"     {name:<16} {fmt_time(statistics.median(times[name]))}"
            f"  ({faults[name] / (rounds * number):7.0f} faults/call)"
        )
    print(f"   median of per-round ratios (quartiles); target composed/flat <= {TARGET:.2f}:")
    missed = []
    medians = {}
    for a, b in RATIOS:
        ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
        med = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4)
        medians[f"{a}/{b}"] = med
        verdict = ""
        if b == "flat":
            verdict = "meets target" if med <= TARGET else "MISSES target"
            if med > TARGET:
                missed.append(f"{label}: {a}/flat {med:.3f}")
        print(f"     {a + '/' + b:<22} {med:6.3f}  ({q[0]:.3f} .. {q[2]:.3f})  {verdict}")
    print()
    return missed, medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N=64, few rounds")
    parser.add_argument("--show", action="store_true", help="print the generated code")
    parser.add_argument("--rounds-small", type=int, default=61, help="rounds at N=64")
    parser.add_argument("--rounds-large", type=int, default=31, help="rounds at N=1024")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="set glibc mallopt so freed memory is reused (no page-fault noise)",
    )
    ns = parser.parse_args(argv)
    malloc = keep_freed_memory() if ns.keep_freed_memory else "default"
    sizes = [
        ((64, 100, 100, 10), ns.rounds_small, 0.02),
        ((1024, 512, 512, 10), ns.rounds_large, 0.2),
    ]
    if ns.quick:
        sizes = [((64, 100, 100, 10), 5, 0.005)]

    env = {
        k: os.environ.get(k, "<unset>")
        for k in (
            "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS",
        )
    }
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, float64"
    )
    print("environment (left as found): " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"malloc: {malloc}")
    print("times: medians over interleaved rounds; on a shared machine read the ratios")
    print()

    missed: list[str] = []
    summary: list[tuple[str, dict[str, float]]] = []
    for mode in ("recompute", "pairs"):
        pairs = mode == "pairs"
        variants: dict[str, Callable[..., Any]] = {}
        for name in SOURCES:
            text, namespace = generate(name, pairs)
            if ns.show:
                print(f"---- generated from {name} ({mode}) ----")
                print(text)
            variants[name] = callable_of(namespace, pairs)
        variants["hand"] = two_layer_step_hand if pairs else two_layer_hand
        print(
            "#### timed call: "
            + (
                "two_layer_loss_forward(...) then two_layer_loss_backward(1.0, cache) "
                "(= F_value_and_grad); hand computes the loss too"
                if pairs
                else "two_layer_loss_backward(X, y, W1, b1, W2, b2) (recomputes the "
                "forward); hand returns the gradients only"
            )
        )
        print()
        for size, rounds, sample in sizes:
            m, medians = run(mode, size, variants, rounds, sample)
            missed += m
            summary.append((f"{mode} N={size[0]}", medians))

    print("summary (median per-round ratios):")
    print(f"  {'':<16}" + "".join(f"{a + '/' + b:>22}" for a, b in RATIOS))
    for label, medians in summary:
        print(f"  {label:<16}" + "".join(f"{medians[f'{a}/{b}']:>22.3f}" for a, b in RATIOS))
    print(f"target: composed/flat time ratio <= {TARGET:.2f}")
    if missed:
        print("missed:")
        for line in missed:
            print(f"  {line}")
    else:
        print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
