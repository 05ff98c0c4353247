"""Run-time cost of gradgen's generated backward versus the hand-written CS231n code.

The backward of the CS231n staged example ("Backprop in practice: staged computation") is
generated with ``gradgen.generate`` at run time, exec'd, checked against the hand-written
forward+backward from the notes, and then both are timed side by side: in each round every
variant is timed once (``timeit``, ``--number`` calls per sample), the order of the variants
rotating from round to round, and the ratio generated/hand is taken within the round. The
medians over the rounds are printed. On a shared, noisy machine only these ratios mean
anything; the absolute times are printed for orientation.

    python benchmarks/bench_backward.py           # 40 rounds of 20,000 calls per variant
    python benchmarks/bench_backward.py --quick   # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import timeit

import gradgen

FORWARD_SOURCE = """\
import math


def f(x, y):
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden
    return f
"""

TARGET = 1.05


def f_backward_hand(x, y):
    """Forward and backward pass exactly as written in the CS231n notes."""
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden  # noqa: F841 (the notes compute it; the backward pass does not read it)
    # backprop f = num * invden
    dnum = invden
    dinvden = num
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den**2)) * dinvden
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden
    dxpysqr = (1) * dden
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr
    # backprop xpy = x + y
    dx = (1) * dxpy
    dy = (1) * dxpy
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx
    # backprop num = x + sigy
    dx += (1) * dnum
    dsigy = (1) * dnum
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += ((1 - sigy) * sigy) * dsigy
    return dx, dy


def f_backward_hand_df(x, y, df=1.0):
    """The notes' code with an explicit upstream gradient ``df``, as the generated code has:
    ``df`` is multiplied in where the backward pass starts (the two inputs of ``f``)."""
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    # backprop f = num * invden
    dnum = invden * df
    dinvden = num * df
    # backprop invden = 1.0 / den
    dden = (-1.0 / (den**2)) * dinvden
    # backprop den = sigx + xpysqr
    dsigx = (1) * dden
    dxpysqr = (1) * dden
    # backprop xpysqr = xpy**2
    dxpy = (2 * xpy) * dxpysqr
    # backprop xpy = x + y
    dx = (1) * dxpy
    dy = (1) * dxpy
    # backprop sigx = 1.0 / (1 + math.exp(-x))
    dx += ((1 - sigx) * sigx) * dsigx
    # backprop num = x + sigy
    dx += (1) * dnum
    dsigy = (1) * dnum
    # backprop sigy = 1.0 / (1 + math.exp(-y))
    dy += ((1 - sigy) * sigy) * dsigy
    return dx, dy


def f_backward_tidy(x, y, df=1.0):
    """Not from the notes: ``f_backward_hand_df`` without the ``(1) *`` factors and without
    computing ``f``, i.e. what a careful person would write. A reference for parity."""
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    dnum = invden * df
    dinvden = num * df
    dden = (-1.0 / den**2) * dinvden
    dxpy = (2 * xpy) * dden
    dx = dxpy + ((1 - sigx) * sigx) * dden + dnum
    dy = dxpy + ((1 - sigy) * sigy) * dnum
    return dx, dy


def generated_backward():
    """``f_backward`` from gradgen, generated now and exec'd; also its source text."""
    source = gradgen.generate(FORWARD_SOURCE, "cs231n_staged.py")
    namespace: dict[str, object] = {"__name__": "cs231n_staged_backward"}
    exec(compile(source, "<gradgen: cs231n_staged.py>", "exec"), namespace)
    return namespace["f_backward"], source


POINTS = [
    (3.0, -4.0),
    (0.5, 0.25),
    (-1.5, 2.0),
    (10.0, -0.1),
    (-7.0, -3.0),
    (0.0, 1e-3),
]


def check_gradients(generated) -> None:
    """All variants agree to 1e-12 (relative, or absolute near zero), including with df."""
    for x, y in POINTS:
        hand = f_backward_hand(x, y)
        for name, got in [
            ("generated", generated(x, y)),
            ("hand with df", f_backward_hand_df(x, y)),
            ("tidy", f_backward_tidy(x, y)),
        ]:
            for want, value in zip(hand, got, strict=True):
                assert math.isclose(value, want, rel_tol=1e-12, abs_tol=1e-12), (
                    name,
                    (x, y),
                    got,
                    hand,
                )
        for df in (0.5, -3.0):
            want = [df * g for g in hand]
            for name, got in [
                ("generated", generated(x, y, df)),
                ("hand with df", f_backward_hand_df(x, y, df)),
                ("tidy", f_backward_tidy(x, y, df)),
            ]:
                for w, value in zip(want, got, strict=True):
                    assert math.isclose(value, w, rel_tol=1e-12, abs_tol=1e-12), (
                        name,
                        (x, y, df),
                        got,
                        want,
                    )


def run(variants: dict[str, object], number: int, rounds: int) -> dict[str, list[float]]:
    """Per variant, one time per round (seconds per call); the order rotates each round."""
    names = list(variants)
    timers = {
        name: timeit.Timer("fn(x, y)", globals={"fn": fn, "x": 3.0, "y": -4.0})
        for name, fn in variants.items()
    }
    for timer in timers.values():  # warm up
        timer.timeit(number // 10 or 1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if (r // len(names)) % 2:
            order.reverse()
        for name in order:
            times[name].append(timers[name].timeit(number) / number)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 rounds of 2,000")
    parser.add_argument("--number", type=int, default=20000, help="calls per sample")
    parser.add_argument("--rounds", type=int, default=40, help="samples per variant")
    parser.add_argument("--show", action="store_true", help="print the generated source")
    args = parser.parse_args(argv)
    number, rounds = (2000, 6) if args.quick else (args.number, args.rounds)

    generated, source = generated_backward()
    if args.show:
        print(source)
    check_gradients(generated)
    print(f"gradients agree (to 1e-12) at {len(POINTS)} points, df in (1, 0.5, -3)")

    variants = {
        "generated": generated,
        "hand": f_backward_hand,
        "hand_df": f_backward_hand_df,
        "tidy": f_backward_tidy,
        "null": lambda x, y: None,  # call + timeit loop overhead, for orientation
    }
    times = run(variants, number, rounds)
    print(
        f"python {sys.version.split()[0]}; {rounds} rounds x {number} calls per variant, "
        "interleaved, order rotating"
    )
    print()
    print("median time per call (all called as fn(x, y), so df=1.0 by default):")
    descriptions = {
        "generated": "gradgen f_backward",
        "hand": "CS231n hand-written, no df",
        "hand_df": "CS231n hand-written, with df",
        "tidy": "hand, tidied (no (1)*, no f)",
        "null": "empty function (overhead)",
    }
    for name in variants:
        print(f"  {descriptions[name]:<30} {statistics.median(times[name]) * 1e9:8.1f} ns")
    print()
    null = times["null"]
    for reference in ("hand", "hand_df", "tidy"):
        ratios = [g / h for g, h in zip(times["generated"], times[reference], strict=True)]
        net = [
            (g - n) / (h - n)
            for g, h, n in zip(times["generated"], times[reference], null, strict=True)
        ]
        q = statistics.quantiles(ratios, n=4)
        print(
            f"generated/{reference:<8} median of per-round ratios: "
            f"{statistics.median(ratios):.3f}  (quartiles {q[0]:.3f} .. {q[2]:.3f}; "
            f"net of call overhead {statistics.median(net):.3f})"
        )
    print(f"target: ratio <= {TARGET:.2f}")
    verdict = statistics.median(
        [g / h for g, h in zip(times["generated"], times["hand"], strict=True)]
    )
    print(f"generated/hand {'meets' if verdict <= TARGET else 'misses'} the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
