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
import functools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_arrays import (
    BATCHNORM_SOURCE,
    TARGET,
    TWOLAYER_SOURCE,
    batchnorm_args,
    batchnorm_hand,
    calibrate,
    copies,
    fmt_bytes,
    fmt_time,
    peak_memory,
    time_interleaved,
    twolayer_args,
    twolayer_hand,
)

import gradgen

twolayer_step = functools.partial(twolayer_hand, value=True)
batchnorm_step = functools.partial(batchnorm_hand, value=True)


CASES: list[tuple[str, str, str, Callable[..., Any], Any, list[tuple[int, ...]], Any]] = [
    (
        "twolayer",
        TWOLAYER_SOURCE,
        "loss",
        twolayer_step,
        twolayer_args,
        [(64, 100, 100, 10), (1024, 512, 512, 10)],
        {"loss": ["W1", "b1", "W2", "b2"]},
    ),
    (
        "batchnorm",
        BATCHNORM_SOURCE,
        "batchnorm",
        batchnorm_step,
        batchnorm_args,
        [(256, 512)],
        None,
    ),
]


def generated_variants(source: str, function: str, wrt: Any) -> dict[str, Callable[..., Any]]:
    """``value_and_grad`` and ``pair`` (forward then backward), as plain callables."""
    default: dict[str, Any] = {}
    exec(gradgen.generate(source, f"{function}.py", wrt=wrt, value_and_grad=True), default)
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
