"""Generated backwards of code written as users write it, against hand-written backwards.

The forward files here carry no shape annotations and import both ``math`` and ``numpy as
np`` at the top, as real modules do:

- ``staged``: the CS231n notes' staged example ``f(x, y)`` (numbers, ``math.exp``);
- ``neuron``: the notes' 2-D sigmoid neuron on numbers;
- ``twolayer``: affine - relu - affine - softmax loss with ``probs = exps / np.sum(exps,
  axis=1, keepdims=True)``, ``-np.mean(np.log(probs[np.arange(N), y]))`` and L2 terms, at
  N=64 and N=1024 (gradients of W1, b1, W2, b2);
- ``chain``: seven rounds of ``tanh``, ``exp``, ``* b``, ``+ a`` on two 1-D arrays, 1e3 and
  1e6 entries, with an upstream ``dout``;
- ``batchnorm``: the notes' staged train-mode batchnorm with ``eps=1e-5`` as a default and a
  sum-of-squares loss, 256 x 512.

Each generated ``F_backward`` is first checked against the hand-written one (rtol 1e-10, no
argument written to), then both are timed interleaved round by round (the order rotating);
printed: the median of the per-round ratios generated/hand with its target, and for the
large workloads the peak memory of one call (tracemalloc) generated/hand. The machine is
shared and noisy: only ratios measured side by side mean anything.

    python benchmarks/bench_as_written.py           # ~1 min
    python benchmarks/bench_as_written.py --quick   # smoke run
    python benchmarks/bench_as_written.py --show    # also print the generated code
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_arrays import calibrate, check, copies, peak_memory, time_interleaved
from bench_backward import FORWARD_SOURCE
from bench_backward import f_backward_hand_df as staged_hand

import gradgen

HEADER = "import math\n\nimport numpy as np\n\n\n"

# The seed's staged example as bench_backward.py has it, without its import line.
STAGED = FORWARD_SOURCE.split("\n\n\n", 1)[1]

NEURON = """\
def neuron(w0, w1, w2, x0, x1):
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1 + math.exp(-dot))
    return f
"""

TWOLAYER = """\
def loss(W1, b1, W2, b2, X, y, reg):
    N = X.shape[0]
    h = np.maximum(0, X @ W1 + b1)
    scores = h @ W2 + b2
    scores = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(scores)
    probs = exps / np.sum(exps, axis=1, keepdims=True)
    data_loss = -np.mean(np.log(probs[np.arange(N), y]))
    reg_loss = 0.5 * reg * np.sum(W1 * W1) + 0.5 * reg * np.sum(W2 * W2)
    return data_loss + reg_loss
"""

CHAIN = (
    "def chain(a, b):\n    h = a\n"
    + ("    t = np.tanh(h)\n    e = np.exp(t)\n    m = e * b\n    h = m + a\n" * 7)
    + "    return h\n"
)

BATCHNORM = """\
def batchnorm(x, gamma, beta, eps=1e-5):
    N, D = x.shape
    mu = 1.0 / N * np.sum(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = 1.0 / N * np.sum(sq, axis=0)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    gammax = gamma * xhat
    out = gammax + beta
    return np.sum(out * out)
"""


def neuron_hand(w0: float, w1: float, w2: float, x0: float, x1: float, df: float = 1.0) -> Any:
    """The notes' neuron: ``ddot = (1 - f) * f``, then each input's gradient by name."""
    dot = w0 * x0 + w1 * x1 + w2
    f = 1.0 / (1 + math.exp(-dot))
    ddot = (1 - f) * f * df
    dw0 = x0 * ddot
    dw1 = x1 * ddot
    dw2 = 1.0 * ddot
    dx0 = w0 * ddot
    dx1 = w1 * ddot
    return dw0, dw1, dw2, dx0, dx1


def twolayer_hand(W1: Any, b1: Any, W2: Any, b2: Any, X: Any, y: Any, reg: float) -> Any:
    """The CS231n assignment's loss gradient (``dscores = probs; dscores[...] -= 1``)."""
    N = X.shape[0]
    h1 = X @ W1 + b1
    h = np.maximum(0, h1)
    scores = h @ W2 + b2
    scores = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(scores)
    probs = exps / np.sum(exps, axis=1, keepdims=True)
    dscores = probs
    dscores[np.arange(N), y] -= 1
    dscores /= N
    dW2 = h.T @ dscores
    dW2 += reg * W2
    db2 = dscores.sum(axis=0)
    dh = dscores @ W2.T
    dh *= h1 > 0
    dW1 = X.T @ dh
    dW1 += reg * W1
    db1 = dh.sum(axis=0)
    return dW1, db1, dW2, db2


def chain_hand(a: Any, b: Any, dout: Any) -> Any:
    """The rounds forward keeping what the backward reads (t and e), then back round by
    round in the notes' staged style: a gradient per forward value, named after it."""
    h = a
    cache = []
    for _ in range(7):
        t = np.tanh(h)
        e = np.exp(t)
        m = e * b
        h = m + a
        cache.append((t, e))
    dh = dout
    da = np.zeros_like(a)
    db = np.zeros_like(b)
    for t, e in reversed(cache):
        dm = dh
        da += dh
        de = b * dm
        db += e * dm
        dt = e * de
        dh = (1 - t**2) * dt
    da += dh
    return da, db


def batchnorm_hand(x: Any, gamma: Any, beta: Any, eps: float = 1e-5) -> Any:
    """The notes' staged batchnorm backward with the loss's ``dout = 2 * out``."""
    N = x.shape[0]
    mu = 1.0 / N * np.sum(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = 1.0 / N * np.sum(sq, axis=0)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta
    dout = 2 * out
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    divar = np.sum(dxhat * xmu, axis=0)
    dxmu = dxhat * ivar
    dsqrtvar = -1.0 / (sqrtvar**2) * divar
    dvar = 0.5 * 1.0 / np.sqrt(var + eps) * dsqrtvar
    dsq = 1.0 / N * dvar
    dxmu += 2 * xmu * dsq
    dmu = -np.sum(dxmu, axis=0)
    dx = dxmu
    dx += 1.0 / N * dmu
    return dx, dgamma, dbeta


def scalar_args(count: int) -> Callable[[tuple[int, ...], np.random.Generator], tuple[Any, ...]]:
    def make(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
        return tuple(float(v) for v in rng.uniform(-1.5, 1.5, count))

    return make


def twolayer_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    N, D, H, C = size
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, size=N)
    W1 = rng.standard_normal((D, H)) / np.sqrt(D)
    W2 = rng.standard_normal((H, C)) / np.sqrt(H)
    return (W1, 0.1 * rng.standard_normal(H), W2, 0.1 * rng.standard_normal(C), X, y, 0.1)


def chain_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    (n,) = size
    return (rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n), rng.standard_normal(n))


def batchnorm_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    N, D = size
    x = 3.0 + 2.0 * rng.standard_normal((N, D))
    return (x, 1.0 + 0.1 * rng.standard_normal(D), 0.1 * rng.standard_normal(D))


# name, source, function, wrt, hand, arguments, sizes, target, measure memory
WORKLOADS: list[tuple[Any, ...]] = [
    ("staged", STAGED, "f", None, staged_hand, scalar_args(2), [()], 1.05, False),
    ("neuron", NEURON, "neuron", None, neuron_hand, scalar_args(5), [()], 1.05, False),
    (
        "twolayer N=64",
        TWOLAYER,
        "loss",
        ["W1", "b1", "W2", "b2"],
        twolayer_hand,
        twolayer_args,
        [(64, 100, 100, 10)],
        1.10,
        False,
    ),
    ("chain 1e3", CHAIN, "chain", None, chain_hand, chain_args, [(1000,)], 1.10, False),
    (
        "batchnorm",
        BATCHNORM,
        "batchnorm",
        ["x", "gamma", "beta"],
        batchnorm_hand,
        batchnorm_args,
        [(256, 512)],
        1.0,
        True,
    ),
    (
        "twolayer N=1024",
        TWOLAYER,
        "loss",
        ["W1", "b1", "W2", "b2"],
        twolayer_hand,
        twolayer_args,
        [(1024, 512, 512, 10)],
        1.0,
        True,
    ),
    ("chain 1e6", CHAIN, "chain", None, chain_hand, chain_args, [(1_000_000,)], 1.0, True),
]


def generated(name: str, source: str, function: str, wrt: list[str] | None) -> tuple[Any, str]:
    text = gradgen.generate(HEADER + source, f"{function}.py", wrt=wrt and {function: wrt})
    namespace: dict[str, Any] = {"__name__": f"{function}_backward"}
    exec(compile(text, f"<gradgen: {name}>", "exec"), namespace)
    return namespace[f"{function}_backward"], text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small sizes only")
    parser.add_argument("--show", action="store_true", help="print the generated code")
    parser.add_argument("--rounds", type=int, default=31)
    options = parser.parse_args(argv)
    rounds = 5 if options.quick else options.rounds
    sample = 0.005 if options.quick else 0.03
    missed = []
    print(f"{'workload':<18} {'time gen/hand (quartiles)':<30} {'target':>6} {'memory':>8}")
    for name, source, function, wrt, hand, make, sizes, target, memory in WORKLOADS:
        if options.quick and memory and name != "batchnorm":
            continue
        backward, text = generated(name, source, function, wrt)
        if options.show:
            print(text)
        args = make(sizes[0], np.random.default_rng(7))
        variants = {"hand": hand, "gen": backward}
        check(variants, copies(args))
        for fn in variants.values():
            fn(*args)
        number = calibrate(hand, args, sample)
        times = time_interleaved(variants, args, number, rounds, {})
        ratios = [g / h for g, h in zip(times["gen"], times["hand"], strict=True)]
        median = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4)
        mem = ""
        if memory:
            peak = peak_memory(backward, args) / peak_memory(hand, args)
            mem = f"{peak:8.2f}"
            if peak > 1.05:
                missed.append(f"{name}: memory {peak:.2f} > 1.05")
        print(f"{name:<18} {median:6.3f} ({q[0]:.3f} .. {q[2]:.3f}){'':<9} {target:6.2f} {mem}")
        if median > target:
            missed.append(f"{name}: time {median:.3f} > {target}")
    print("missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
