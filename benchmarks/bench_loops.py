"""Run time of generated backwards with loops versus hand-written ones, side by side.

- ``rnn``: ``examples/sequences.py``'s ``rnn`` over time (N=64, T=50, D=H=128), its committed
  ``rnn_backward`` (which recomputes the forward loop, keeping each step's cache) against a
  CS231n-style ``rnn_forward`` + ``rnn_backward`` written by hand (a list of step caches,
  ``dh`` carried back, ``dWx += ...``).
- ``euler``: ``examples/iterations.py``'s ``oscillator_energy`` (300 Euler steps on Python
  floats), its committed backward against a hand-written scalar backward that keeps the
  steps' ``x`` and ``v`` in lists and walks them back.

Both versions are checked to agree first; then they are timed alternately in one process and
the median of the per-round ratios (generated / hand) is printed. Lower is better; absolute
times on a shared machine mean little.

    python benchmarks/bench_loops.py
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_rnn(x, h0, Wx, Wh, b, dout):  # type: ignore[no-untyped-def]
    T = x.shape[1]
    h, caches = h0, []
    for t in range(T):
        prev = h
        h = np.tanh(x[:, t, :] @ Wx + prev @ Wh + b)
        caches.append((x[:, t, :], prev, h))
    dx, dh = np.zeros_like(x), np.zeros_like(h0)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    for t in reversed(range(T)):
        xt, prev, h = caches[t]
        da = (1 - h**2) * (dh + dout[:, t, :])
        dx[:, t, :] = da @ Wx.T
        dh = da @ Wh.T
        dWx += xt.T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
    return dx, dh, dWx, dWh, db


def hand_euler(x0, v0, k, c):  # type: ignore[no-untyped-def]
    dt = 0.01
    x, v, xs, vs = x0, v0, [], []
    for _ in range(300):
        xs.append(x)
        vs.append(v)
        a = -k * x - c * v
        x, v = x + dt * v, v + dt * a
    dx, dv = k * x, v
    dk, dc = 0.5 * x * x, 0.0
    for step in reversed(range(300)):
        x, v = xs[step], vs[step]
        da = dt * dv
        dx, dv = dx - k * da, dv + dt * dx - c * da
        dk -= x * da
        dc -= v * da
    return dx, dv, dk, dc


def _ratio(generated: Callable[[], Any], hand: Callable[[], Any], rounds: int) -> float:
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        generated()
        middle = time.perf_counter()
        hand()
        end = time.perf_counter()
        ratios.append((middle - start) / (end - middle))
    return statistics.median(ratios)


def main() -> None:
    sequences = _load(ROOT / "generated" / "sequences.py")
    iterations = _load(ROOT / "generated" / "iterations.py")
    rng = np.random.default_rng(0)
    N, T, D, H = 64, 50, 128, 128
    args = (
        rng.standard_normal((N, T, D)),
        rng.standard_normal((N, H)),
        0.1 * rng.standard_normal((D, H)),
        0.1 * rng.standard_normal((H, H)),
        rng.standard_normal(H),
    )
    dout = rng.standard_normal((N, T, H))
    for got, want in zip(sequences.rnn_backward(*args, dout), hand_rnn(*args, dout), strict=True):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12)
    rnn = _ratio(lambda: sequences.rnn_backward(*args, dout), lambda: hand_rnn(*args, dout), 21)
    print(f"rnn   N=64 T=50 D=H=128  generated/hand  {rnn:.3f}")
    point = (1.0, 0.5, 2.0, 0.3)
    generated = iterations.oscillator_energy_backward(*point)
    for got, want in zip(generated, hand_euler(*point), strict=True):
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want))
    euler = _ratio(
        lambda: iterations.oscillator_energy_backward(*point), lambda: hand_euler(*point), 101
    )
    print(f"euler 300 scalar steps   generated/hand  {euler:.3f}")


if __name__ == "__main__":
    main()
