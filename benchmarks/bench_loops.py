"""Run time and peak memory of generated backwards with loops versus hand-written ones.

- ``rnn``: ``examples/sequences.py``'s ``rnn`` over time (N=64, T=50, D=H=128), its committed
  ``rnn_backward`` (which recomputes the forward loop, keeping each step's cache) against a
  CS231n-style ``rnn_forward`` + ``rnn_backward`` written by hand (a list of step caches,
  ``dh`` carried back, ``dWx += ...``).
- ``lstm``: ``examples/sequences.py``'s ``lstm`` over time (N=64, T=50, D=H=128, G=4H), its
  committed ``lstm_backward`` against the CS231n ``lstm_forward`` + ``lstm_backward`` written
  by hand (``lstm_step_forward`` keeping ``(x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c,
  tanh(next_c))`` per step, ``lstm_step_backward`` stacking the gates' gradients with
  ``np.hstack``).
- ``euler``: ``examples/iterations.py``'s ``oscillator_energy`` (300 Euler steps on Python
  floats), its committed backward against a hand-written scalar backward that keeps the
  steps' ``x`` and ``v`` in lists and walks them back.

Both versions are checked to agree first; then they are timed in one process, round by round
(which goes first alternating), and the median of the per-round ratios (generated / hand) is
printed. Lower is better; absolute
times on a shared machine mean little.

Memory (``rnn``, ``lstm``): the generated backward recomputes the forward, so like is
compared with like: the peak of Python-visible allocations (``tracemalloc``, which numpy
reports its arrays to) during one call of the generated ``*_backward`` against one call of
the hand-written forward followed by its backward (the caches of the forward are alive
during the backward in both). The arguments and ``dout`` are allocated before either.

    python benchmarks/bench_loops.py
"""

from __future__ import annotations

import importlib.util
import statistics
import time
import tracemalloc
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


def hand_lstm(x, h0, Wx, Wh, b, dout):  # type: ignore[no-untyped-def]
    return _hand_lstm_backward(dout, _hand_lstm_forward(x, h0, Wx, Wh, b))


def _sigmoid(a):  # type: ignore[no-untyped-def]
    return 1 / (1 + np.exp(-a))


def _hand_lstm_forward(x, h0, Wx, Wh, b):  # type: ignore[no-untyped-def]
    T, H = x.shape[1], h0.shape[1]
    h, c, caches = h0, np.zeros_like(h0), []
    for t in range(T):
        prev_h, prev_c = h, c
        a = x[:, t, :] @ Wx + prev_h @ Wh + b
        i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H])
        o, g = _sigmoid(a[:, 2 * H : 3 * H]), np.tanh(a[:, 3 * H :])
        c = f * prev_c + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        caches.append((x[:, t, :], prev_h, prev_c, Wx, Wh, i, f, o, g, c, tanh_c))
    return caches


def _hand_lstm_backward(dout, caches):  # type: ignore[no-untyped-def]
    N, T, H = dout.shape
    D = caches[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dh, dc = np.zeros((N, H)), np.zeros((N, H))
    dWx, dWh, db = np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)
    for t in reversed(range(T)):
        x, prev_h, prev_c, Wx, Wh, i, f, o, g, _, tanh_c = caches[t]
        dnext_h = dh + dout[:, t, :]
        do = dnext_h * tanh_c
        dnext_c = dc + dnext_h * o * (1 - tanh_c**2)
        da = np.hstack(
            (
                dnext_c * g * i * (1 - i),
                dnext_c * prev_c * f * (1 - f),
                do * o * (1 - o),
                dnext_c * i * (1 - g**2),
            )
        )
        dc = dnext_c * f
        dx[:, t, :] = da @ Wx.T
        dh = da @ Wh.T
        dWx += x.T @ da
        dWh += prev_h.T @ da
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
    """The median over ``rounds`` of generated's time / hand's, each round timing both, the
    one that goes first alternating (after one untimed call of each)."""
    generated(), hand()
    ratios = []
    for round_ in range(rounds):
        times = {}
        for name in ("generated", "hand") if round_ % 2 else ("hand", "generated"):
            call = generated if name == "generated" else hand
            start = time.perf_counter()
            call()
            times[name] = time.perf_counter() - start
        ratios.append(times["generated"] / times["hand"])
    return statistics.median(ratios)


def _peak(call: Callable[[], Any]) -> int:
    """The peak of traced allocations during ``call``, over what was allocated before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def _memory(generated: Callable[[], Any], hand: Callable[[], Any]) -> tuple[int, int]:
    """Peak bytes of each, the smaller of three runs (allocator noise)."""
    return min(_peak(generated) for _ in range(3)), min(_peak(hand) for _ in range(3))


def _report(name: str, ratio: float, memory: tuple[int, int]) -> None:
    generated, hand = memory
    print(
        f"{name:<28}generated/hand  time {ratio:.3f}  peak memory {generated / hand:.3f}"
        f"  ({generated / 2**20:.1f} MiB / {hand / 2**20:.1f} MiB)"
    )


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
    lstm_args = (
        args[0],
        args[1],
        0.1 * rng.standard_normal((D, 4 * H)),
        0.1 * rng.standard_normal((H, 4 * H)),
        rng.standard_normal(4 * H),
    )
    lstm_pair = sequences.lstm_backward(*lstm_args, dout), hand_lstm(*lstm_args, dout)
    for got, want in zip(*lstm_pair, strict=True):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12)

    def rnn_generated() -> Any:
        return sequences.rnn_backward(*args, dout)

    def rnn_hand() -> Any:
        return hand_rnn(*args, dout)

    def lstm_generated() -> Any:
        return sequences.lstm_backward(*lstm_args, dout)

    def lstm_hand() -> Any:
        return hand_lstm(*lstm_args, dout)

    rnn_memory = _memory(rnn_generated, rnn_hand)
    lstm_memory = _memory(lstm_generated, lstm_hand)
    rnn = _ratio(rnn_generated, rnn_hand, 41)
    lstm = _ratio(lstm_generated, lstm_hand, 41)
    _report("rnn  N=64 T=50 D=H=128", rnn, rnn_memory)
    _report("lstm N=64 T=50 D=H=128", lstm, lstm_memory)
    point = (1.0, 0.5, 2.0, 0.3)
    generated = iterations.oscillator_energy_backward(*point)
    for got, want in zip(generated, hand_euler(*point), strict=True):
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want))
    euler = _ratio(
        lambda: iterations.oscillator_energy_backward(*point), lambda: hand_euler(*point), 101
    )
    print(f"{'euler 300 scalar steps':<28}generated/hand  time {euler:.3f}")


if __name__ == "__main__":
    main()
