"""Run time of gradgen's backward of a convolutional layer, versus hand-written.

The forward is ``conv_forward`` of ``examples/convolution.py`` (padding 1, stride 1, 3 x 3
filters: ``np.pad``, ``sliding_window_view`` and one ``np.einsum``), at CS231n's shapes:
x (50, 3, 32, 32), w (32, 3, 3, 3), b (32,), float64, a random upstream gradient. Its
backward is generated with ``gradgen.generate`` when this script runs and exec'd.

The reference is the backward a careful person writes for the same forward, in the same
function (the generated ``conv_forward_backward`` recomputes the forward, so the reference
does too): the windows again, ``db`` summed over N, H, W, ``dw`` and the windows'
gradient as einsums, and the windows' gradient added back into the padded input one
window offset at a time (nine slice additions), then the padding cut off.

The gradients are first checked to agree (``np.allclose``, rtol 1e-10). Then the two are
timed interleaved: in each round each variant is timed once (a few calls), the order
alternating, and the ratio generated / hand-written taken within the round. Printed: the
median time per call of each and the median and quartiles of the ratios (the issue's
target: at most 1.2). The machine is shared and noisy: read the ratios, not the times.

    python benchmarks/bench_conv.py           # 15 rounds
    python benchmarks/bench_conv.py --quick   # small shapes, 3 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import gradgen

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "convolution.py"


def hand_written(x: Any, w: Any, b: Any, dout: Any) -> tuple[Any, Any, Any]:
    """conv_forward's gradients as a person writes them (forward recomputed first)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    HH, WW = w.shape[2], w.shape[3]
    windows = sliding_window_view(padded, (HH, WW), axis=(2, 3))
    H, W = windows.shape[2], windows.shape[3]
    db = np.sum(dout, axis=(0, 2, 3))
    dw = np.einsum("nfhw,nchwij->fcij", dout, windows)
    dwindows = np.einsum("nfhw,fcij->nchwij", dout, w)
    dpadded = np.zeros_like(padded)
    for i in range(HH):
        for j in range(WW):
            dpadded[:, :, i : i + H, j : j + W] += dwindows[..., i, j]
    dx = dpadded[:, :, 1:-1, 1:-1]
    return dx, dw, db


def generated() -> Callable[..., tuple[Any, Any, Any]]:
    source = EXAMPLE.read_text(encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(gradgen.generate(source, str(EXAMPLE)), "conv_backward.py", "exec"), namespace)
    return namespace["conv_forward_backward"]


def per_call(f: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, 3 rounds")
    quick = parser.parse_args().quick
    N, C, H, W, F = (4, 3, 8, 8, 4) if quick else (50, 3, 32, 32, 32)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, C, H, W))
    w = rng.normal(size=(F, C, 3, 3))
    b = rng.normal(size=(F,))
    dout = rng.normal(size=(N, F, H, W))
    backward = generated()
    for mine, theirs, name in zip(
        backward(x, w, b, dout), hand_written(x, w, b, dout), ("dx", "dw", "db"), strict=True
    ):
        assert np.allclose(mine, theirs, rtol=1e-10, atol=1e-12), f"{name} differs"
    variants = {
        "generated": lambda: backward(x, w, b, dout),
        "hand-written": lambda: hand_written(x, w, b, dout),
    }
    calls = 2 if quick else 5
    for f in variants.values():
        f()  # warm up
    times: dict[str, list[float]] = {name: [] for name in variants}
    ratios: list[float] = []
    for round_ in range(3 if quick else 15):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        taken = {name: per_call(variants[name], calls) for name in order}
        for name, seconds in taken.items():
            times[name].append(seconds)
        ratios.append(taken["generated"] / taken["hand-written"])
    print(f"conv_forward backward at x {x.shape}, w {w.shape}, float64")
    for name, samples in times.items():
        print(f"  {name:13} {statistics.median(samples) * 1e3:8.2f} ms per call")
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(
        f"  ratio generated / hand-written: median {statistics.median(ratios):.3f} "
        f"(quartiles {quartiles[0]:.3f} .. {quartiles[2]:.3f}; target <= 1.2)"
    )


if __name__ == "__main__":
    main()
