"""A training step: value and gradients from gradgen's code versus the hand-written step.

Two ways gradgen offers the loss (or the layer's output) *and* its gradients without doing
the forward work twice are timed against a hand-written CS231n-style forward+backward that
also returns the value:

- ``value_and_grad``: the generated ``F_value_and_grad(..., d<out>)``;
- ``pair``: the generated ``F_forward(...) -> (value, cache)`` then
  ``F_backward(d<out>, cache)`` (generated with ``pairs=True``).

Cases (forward sources, inputs and timing machinery shared with ``bench_arrays.py``): the
two-layer-net loss at (N, D, H, C) = (64, 100, 100, 10) and (1024, 512, 512, 10), gradients
w.r.t. W1, b1, W2, b2; batchnorm at N=256, D=512. Printed per case: medians of per-round time
ratios against the hand-written step (target 1.05) and the peak memory of one call
(tracemalloc), with the ratios.

    python benchmarks/bench_training.py            # ~30 s
    python benchmarks/bench_training.py --quick    # small sizes, few rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_arrays import (
    BATCHNORM_SOURCE,
    EPS,
    TARGET,
    TWOLAYER_SOURCE,
    batchnorm_args,
    calibrate,
    copies,
    fmt_bytes,
    fmt_time,
    peak_memory,
    time_interleaved,
    twolayer_args,
)

import gradgen


def twolayer_hand(X, y, W1, b1, W2, b2, reg, dloss=1.0):
    """The CS231n two-layer net's loss function (assignment style): loss and gradients."""
    N = X.shape[0]
    h1 = X @ W1 + b1
    a1 = np.maximum(0, h1)
    scores = a1 @ W2 + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(shifted)
    probs = exps / np.sum(exps, axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(N), y])) / N
    loss += 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    # backward
    dscores = probs
    dscores[np.arange(N), y] -= 1
    dscores *= dloss / N
    dW2 = a1.T @ dscores
    dW2 += (reg * dloss) * W2
    db2 = dscores.sum(axis=0)
    dhidden = dscores @ W2.T
    dhidden *= h1 > 0
    dW1 = X.T @ dhidden
    dW1 += (reg * dloss) * W1
    db1 = dhidden.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def batchnorm_hand(x, gamma, beta, dout):
    """The notes' staged batchnorm forward + backward: output and gradients."""
    N = x.shape[0]
    mu = np.mean(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = np.mean(sq, axis=0)
    sqrtvar = np.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta
    # backward
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / sqrtvar * dsqrtvar
    dxmu += 2 * xmu * (dvar / N)
    dmu = -dxmu.sum(axis=0)
    dx = dxmu
    dx += dmu / N
    return out, (dx, dgamma, dbeta)


CASES: list[tuple[str, str, str, Callable[..., Any], Any, list[tuple[int, ...]], Any]] = [
    (
        "twolayer",
        TWOLAYER_SOURCE,
        "loss",
        twolayer_hand,
        twolayer_args,
        [(64, 100, 100, 10), (1024, 512, 512, 10)],
        {"loss": ["W1", "b1", "W2", "b2"]},
    ),
    (
        "batchnorm",
        BATCHNORM_SOURCE,
        "batchnorm",
        batchnorm_hand,
        batchnorm_args,
        [(256, 512)],
        None,
    ),
]


def generated_variants(source: str, function: str, wrt: Any) -> dict[str, Callable[..., Any]]:
    """``value_and_grad`` and ``pair`` (forward then backward), as plain callables."""
    default: dict[str, Any] = {}
    exec(gradgen.generate(source, f"{function}.py", wrt=wrt), default)
    paired: dict[str, Any] = {}
    exec(gradgen.generate(source, f"{function}.py", wrt=wrt, pairs=True), paired)
    forward, backward = paired[f"{function}_forward"], paired[f"{function}_backward"]

    def pair(*args: Any) -> tuple[Any, Any]:
        value, cache = forward(*args[:-1])
        return value, backward(args[-1], cache)

    return {"value_and_grad": default[f"{function}_value_and_grad"], "pair": pair}


def with_copies(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` called on fresh copies of its arguments: the hand-written step writes into
    arrays it computed only, but every variant pays the same copying cost."""
    return lambda *args: fn(*copies(args))


def agree(variants: dict[str, Callable[..., Any]], args: tuple[Any, ...]) -> None:
    want_value, want = variants["hand"](*copies(args))
    for name, fn in variants.items():
        value, got = fn(*copies(args))
        assert np.allclose(value, want_value, rtol=1e-10), name
        for g, w in zip(got, want, strict=True):
            assert np.allclose(g, w, rtol=1e-10), name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    args_ns = parser.parse_args(argv)
    rounds = 7 if args_ns.quick else 31
    missed: list[str] = []
    for name, source, function, hand, make_args, sizes, wrt in CASES:
        variants = {**generated_variants(source, function, wrt), "hand": hand}
        for size in sizes[:1] if args_ns.quick else sizes:
            args = make_args(size, np.random.default_rng(12345))
            label = f"{name} {size}"
            print(f"== {label}")
            agree(variants, args)
            print("   values and gradients agree with the hand-written step (rtol 1e-10)")
            for fn in variants.values():
                fn(*copies(args))  # warm up
            timed = {k: with_copies(f) for k, f in variants.items()}
            number = calibrate(timed["hand"], args, 0.05 if size[0] < 500 else 0.3)
            times = time_interleaved(timed, args, number, rounds, {})
            hand_peak = peak_memory(hand, copies(args))
            for variant in variants:
                print(f"   {variant:<16} {fmt_time(statistics.median(times[variant]))}")
            for variant in ("value_and_grad", "pair"):
                ratios = [g / h for g, h in zip(times[variant], times["hand"], strict=True)]
                median = statistics.median(ratios)
                peak = peak_memory(variants[variant], args) / hand_peak
                verdict = "meets" if median <= TARGET else "MISSES"
                print(
                    f"   {variant + '/hand':<16} time {median:.3f} ({verdict} {TARGET})"
                    f"   peak memory {peak:.3f}"
                )
                if median > TARGET:
                    missed.append(f"{label} {variant}/hand time {median:.3f}")
                if peak > 1.0:
                    missed.append(f"{label} {variant}/hand memory {peak:.3f}")
            print(f"   peak memory of the hand-written step: {fmt_bytes(hand_peak)}")
            print()
    print("missed:" if missed else "every target met")
    for line in missed:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
