"""Run time and peak memory of gradgen's generated backward on numpy code, versus hand-written.

Three forward functions, written in the staged CS231n style, are turned into backward
functions with ``gradgen.generate`` at run time, once with shape annotations on the
parameters and once without, and exec'd. Each is compared with a hand-written
forward+backward doing the same work in one function (the generated ``F_backward``
recomputes the forward, so the fair reference computes it too) and returning the same
gradients:

- ``twolayer``: affine - relu - affine - softmax loss + 0.5*reg*(sum W1^2 + sum W2^2);
  gradients w.r.t. W1, b1, W2, b2 (``wrt``), float64, at (N, D, H, C) = (64, 100, 100, 10)
  and (1024, 512, 512, 10). The reference is the CS231n notes' code (``dscores = probs;
  dscores[range(N), y] -= 1``), with the ReLU gate as ``dhidden *= h1 > 0`` (the notes'
  boolean-mask assignment ``dhidden[h1 <= 0] = 0`` is several times slower on numpy 2.4)
  and without the loss value, which the generated code does not return either;
- ``batchnorm``: train-mode batch normalisation, staged (mu, xmu, sq, var, sqrtvar, ivar,
  xhat, gammax, out) at N=256, D=512 with a random upstream ``dout``; gradients w.r.t. x,
  gamma, beta. The reference is the notes' staged backward, with broadcasting where the
  notes write ``np.ones((N, D))``;
- ``chain``: a 30-line elementwise chain (+, *, tanh, exp of small values, the sigmoid
  written out, ``np.maximum(0, .)``, division by ``1 + v*v``) on 1e3 and 1e6 elements with
  a random ``dout``; the reference is written by hand line by line in the same stages.

For each case the gradients are first checked to agree (``np.allclose``, rtol 1e-10), then
the variants are timed interleaved: in each round every variant is timed once (a sample of
a few calls), the order rotating (and reversing) from round to round, and the ratio
generated/hand is taken within the round. Printed: the median time per call of each
variant, the median (and quartiles) of the per-round ratios with the target 1.05, and the
peak memory of one call of each (``tracemalloc``: numpy reports its array buffers to
tracemalloc, so the peak includes every temporary array and the returned gradients).

The machine this was written for is shared and noisy (2 cores): read the ratios, not the
absolute times. ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` and the BLAS thread variables
are left as the environment sets them, and printed.

Page faults. With glibc's default malloc, arrays of 128 KiB and more freed at the end of a
call are often returned to the OS (mmap'd chunks, or the heap top trimmed), so the next
call page-faults them in again: that can cost more than the arithmetic (4-6x at
batchnorm's size), and whether a variant pays it depends on whether its allocations cross
the trim threshold, so a small change can flip it. The minor faults per call are printed
next to each time. ``--keep-freed-memory`` sets ``mallopt`` so that freed memory is kept
and reused (no faults in steady state): the ratios then measure the work done.

    python benchmarks/bench_arrays.py                       # full run, default malloc
    python benchmarks/bench_arrays.py --keep-freed-memory   # full run, no page faults
    python benchmarks/bench_arrays.py --quick               # smoke run: small sizes only
    python benchmarks/bench_arrays.py --show                # also print the generated code
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import re
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import gradgen

TARGET = 1.05
RTOL = 1e-10

# --------------------------------------------------------------------------------------
# Forward sources (annotated). The unannotated variant is the same text with the
# annotations removed (see ``strip_annotations``).
# --------------------------------------------------------------------------------------

TWOLAYER_SOURCE = """\
import numpy as np


def loss(X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, C", b2: "C", reg: float):
    N = X.shape[0]
    h1 = X @ W1 + b1
    a1 = np.maximum(0, h1)
    scores = a1 @ W2 + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = np.sum(exps, axis=1, keepdims=True)
    probs = exps / sums
    logp = np.log(probs[np.arange(N), y])
    data_loss = -np.sum(logp) / N
    reg_loss = 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    loss = data_loss + reg_loss
    return loss
"""

BATCHNORM_SOURCE = """\
import numpy as np

EPS = 1e-5


def batchnorm(x: "N, D", gamma: "D", beta: "D"):
    mu = np.mean(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = np.mean(sq, axis=0)
    sqrtvar = np.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    gammax = gamma * xhat
    out = gammax + beta
    return out
"""

CHAIN_SOURCE = """\
import numpy as np


def chain(a: "N", b: "N", c: "N"):
    t1 = a * b
    t2 = t1 + c
    t3 = np.tanh(t2)
    t4 = t3 * a
    t5 = 0.1 * b
    t6 = np.exp(t5)
    t7 = t4 + t6
    s1 = 1.0 / (1.0 + np.exp(-t7))
    t8 = s1 * c
    t9 = t8 - 0.5
    r1 = np.maximum(0, t9)
    t10 = r1 + t3
    t11 = t10 * t10
    den1 = 1.0 + t11
    q1 = t2 / den1
    t12 = q1 * b
    t13 = np.tanh(t12)
    t14 = t13 + s1
    t15 = 0.2 * t14
    t16 = np.exp(t15)
    t17 = t16 * t4
    t18 = t17 - c
    r2 = np.maximum(0, t18)
    t19 = r2 * q1
    s2 = 1.0 / (1.0 + np.exp(-t19))
    t20 = s2 + t13
    t21 = a * a
    den2 = 1.0 + t21
    q2 = t20 / den2
    out = q2 * t6
    return out
"""

EPS = 1e-5


def strip_annotations(source: str) -> str:
    """The same module with the parameter annotations (``: "N, D"``, ``: float``) removed."""
    out = []
    for line in source.splitlines(keepends=True):
        if line.startswith("def "):
            line = re.sub(r':\s*(?:"[^"]*"|float)', "", line)
        out.append(line)
    return "".join(out)


# --------------------------------------------------------------------------------------
# Hand-written references: forward + backward in one function, same gradients.
# --------------------------------------------------------------------------------------


def twolayer_hand(X, y, W1, b1, W2, b2, reg, dloss=1.0, *, value=False):
    """The CS231n two-layer net's loss function (assignment style): the gradients, or with
    ``value`` the loss and the gradients (a training step)."""
    N = X.shape[0]
    h1 = X @ W1 + b1
    a1 = np.maximum(0, h1)
    scores = a1 @ W2 + b2
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    exps = np.exp(shifted)
    probs = exps / np.sum(exps, axis=1, keepdims=True)
    if value:
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
    dhidden *= h1 > 0  # the notes' dhidden[h1 <= 0] = 0 is ~5x slower at 1024x512
    dW1 = X.T @ dhidden
    dW1 += (reg * dloss) * W1
    db1 = dhidden.sum(axis=0)
    return (loss, (dW1, db1, dW2, db2)) if value else (dW1, db1, dW2, db2)


def batchnorm_hand(x, gamma, beta, dout, *, value=False):
    """The notes' staged batchnorm forward + backward (broadcast instead of np.ones); with
    ``value`` also the output."""
    N = x.shape[0]
    mu = np.mean(x, axis=0)
    xmu = x - mu
    sq = xmu**2
    var = np.mean(sq, axis=0)
    sqrtvar = np.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = gamma * xhat + beta if value else None
    # backward
    dbeta = dout.sum(axis=0)
    dgammax = dout
    dgamma = (dgammax * xhat).sum(axis=0)
    dxhat = dgammax * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / sqrtvar * dsqrtvar
    dsq = dvar / N  # (D,): broadcast over the N rows below
    dxmu += 2 * xmu * dsq
    dmu = -dxmu.sum(axis=0)
    dx = dxmu
    dx += dmu / N
    return (out, (dx, dgamma, dbeta)) if value else (dx, dgamma, dbeta)


def chain_hand(a, b, c, dout):
    """The chain's forward and its backward written by hand, stage by stage."""
    t1 = a * b
    t2 = t1 + c
    t3 = np.tanh(t2)
    t4 = t3 * a
    t5 = 0.1 * b
    t6 = np.exp(t5)
    t7 = t4 + t6
    s1 = 1.0 / (1.0 + np.exp(-t7))
    t8 = s1 * c
    t9 = t8 - 0.5
    r1 = np.maximum(0, t9)
    t10 = r1 + t3
    t11 = t10 * t10
    den1 = 1.0 + t11
    q1 = t2 / den1
    t12 = q1 * b
    t13 = np.tanh(t12)
    t14 = t13 + s1
    t15 = 0.2 * t14
    t16 = np.exp(t15)
    t17 = t16 * t4
    t18 = t17 - c
    r2 = np.maximum(0, t18)
    t19 = r2 * q1
    s2 = 1.0 / (1.0 + np.exp(-t19))
    t20 = s2 + t13
    t21 = a * a
    den2 = 1.0 + t21
    q2 = t20 / den2
    # backward: out = q2 * t6
    dq2 = t6 * dout
    dt6 = q2 * dout
    # q2 = t20 / den2
    dt20 = dq2 / den2
    dden2 = -t20 / den2**2 * dq2
    # den2 = 1 + t21; t21 = a * a
    da = 2 * a * dden2
    # t20 = s2 + t13 (ds2 and dt13 are dt20; ds2 is read before dt13 is added to)
    ds2 = dt20
    dt13 = dt20
    # s2 = sigmoid(t19)
    dt19 = (1 - s2) * s2 * ds2
    # t19 = r2 * q1
    dr2 = q1 * dt19
    dq1 = r2 * dt19
    # r2 = max(0, t18); t18 = t17 - c
    dt17 = (t18 > 0) * dr2
    dc = -dt17
    # t17 = t16 * t4
    dt16 = t4 * dt17
    dt4 = t16 * dt17
    # t16 = exp(t15); t15 = 0.2 * t14
    dt14 = 0.2 * (t16 * dt16)
    # t14 = t13 + s1
    dt13 += dt14
    ds1 = dt14
    # t13 = tanh(t12)
    dt12 = (1 - t13**2) * dt13
    # t12 = q1 * b
    dq1 += b * dt12
    db = q1 * dt12
    # q1 = t2 / den1
    dt2 = dq1 / den1
    dden1 = -t2 / den1**2 * dq1
    # den1 = 1 + t11; t11 = t10 * t10
    dt10 = 2 * t10 * dden1
    # t10 = r1 + t3
    dr1 = dt10
    dt3 = dt10
    # r1 = max(0, t9); t9 = t8 - 0.5
    dt8 = (t9 > 0) * dr1
    # t8 = s1 * c
    ds1 += c * dt8
    dc += s1 * dt8
    # s1 = sigmoid(t7)
    dt7 = (1 - s1) * s1 * ds1
    # t7 = t4 + t6
    dt4 += dt7
    dt6 += dt7
    # t6 = exp(t5); t5 = 0.1 * b
    db += 0.1 * (t6 * dt6)
    # t4 = t3 * a
    dt3 += a * dt4
    da += t3 * dt4
    # t3 = tanh(t2)
    dt2 += (1 - t3**2) * dt3
    # t2 = t1 + c; t1 = a * b
    dc += dt2
    da += b * dt2
    db += a * dt2
    return da, db, dc


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def twolayer_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    N, D, H, C = size
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, size=N)
    W1 = rng.standard_normal((D, H)) / np.sqrt(D)
    b1 = 0.1 * rng.standard_normal(H)
    W2 = rng.standard_normal((H, C)) / np.sqrt(H)
    b2 = 0.1 * rng.standard_normal(C)
    reg = 0.1
    return (X, y, W1, b1, W2, b2, reg, 1.0)


def batchnorm_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    N, D = size
    x = 3.0 + 2.0 * rng.standard_normal((N, D))
    gamma = 1.0 + 0.1 * rng.standard_normal(D)
    beta = 0.1 * rng.standard_normal(D)
    dout = rng.standard_normal((N, D))
    return (x, gamma, beta, dout)


def chain_args(size: tuple[int, ...], rng: np.random.Generator) -> tuple[Any, ...]:
    (n,) = size
    a = rng.uniform(-1.5, 1.5, n)
    b = rng.uniform(-1.5, 1.5, n)
    c = rng.uniform(-2.0, 2.0, n)
    dout = rng.standard_normal(n)
    return (a, b, c, dout)


# --------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    source: str
    function: str
    hand: Callable[..., Any]
    make_args: Callable[[tuple[int, ...], np.random.Generator], tuple[Any, ...]]
    sizes: list[tuple[tuple[int, ...], bool]]  # (size, is_small)
    size_label: Callable[[tuple[int, ...]], str]
    wrt: dict[str, list[str]] | None = None


CASES = [
    Case(
        "twolayer",
        TWOLAYER_SOURCE,
        "loss",
        twolayer_hand,
        twolayer_args,
        [((64, 100, 100, 10), True), ((1024, 512, 512, 10), False)],
        lambda s: "N={}, D={}, H={}, C={}".format(*s),
        wrt={"loss": ["W1", "b1", "W2", "b2"]},
    ),
    Case(
        "batchnorm",
        BATCHNORM_SOURCE,
        "batchnorm",
        batchnorm_hand,
        batchnorm_args,
        [((256, 512), True)],
        lambda s: "N={}, D={}".format(*s),
    ),
    Case(
        "chain",
        CHAIN_SOURCE,
        "chain",
        chain_hand,
        chain_args,
        [((1000,), True), ((1_000_000,), False)],
        lambda s: f"n={s[0]:.0e}".replace("e+0", "e"),
    ),
]


def generated(case: Case, annotated: bool) -> tuple[Callable[..., Any], str]:
    """``F_backward`` generated now (from the annotated or stripped source) and its text."""
    source = case.source if annotated else strip_annotations(case.source)
    filename = f"{case.name}{'' if annotated else '_unannotated'}.py"
    text = gradgen.generate(source, filename, wrt=case.wrt)
    namespace: dict[str, Any] = {"__name__": f"{case.name}_backward"}
    exec(compile(text, f"<gradgen: {filename}>", "exec"), namespace)
    return namespace[f"{case.function}_backward"], text


def check(variants: dict[str, Callable[..., Any]], args: tuple[Any, ...]) -> float:
    """Every variant gives the hand-written gradients (allclose, rtol 1e-10, default atol);
    returns the largest absolute difference seen."""
    want = variants["hand"](*copies(args))
    worst = 0.0
    for name, fn in variants.items():
        got = fn(*copies(args))
        assert len(got) == len(want), (name, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert np.shape(g) == np.shape(w), (name, i, np.shape(g), np.shape(w))
            if not np.allclose(g, w, rtol=RTOL):
                err = np.max(np.abs(np.asarray(g) - w) / (np.abs(w) + 1e-300))
                raise AssertionError(f"{name}: gradient {i} differs (max rel err {err:.3g})")
            worst = max(worst, float(np.max(np.abs(np.asarray(g) - w))))
    # and the arguments were not written to
    fresh = copies(args)
    for fn in variants.values():
        fn(*fresh)
    for before, after in zip(args, fresh, strict=True):
        if isinstance(before, np.ndarray):
            assert np.array_equal(before, after), "an argument was mutated"
    return worst


def copies(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def per_call(fn: Callable[..., Any], args: tuple[Any, ...], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn(*args)
    return (time.perf_counter() - start) / number


def calibrate(fn: Callable[..., Any], args: tuple[Any, ...], sample: float) -> int:
    """Calls per sample so that one sample takes about ``sample`` seconds."""
    t = min(per_call(fn, args, 1) for _ in range(3))
    return max(1, round(sample / t))


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_interleaved(
    variants: dict[str, Callable[..., Any]],
    args: tuple[Any, ...],
    number: int,
    rounds: int,
    faults: dict[str, int],
) -> dict[str, list[float]]:
    """One sample per variant per round, the order rotating (and reversing) each round.

    ``faults`` receives, per variant, the minor page faults taken during its samples.
    """
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        faults[name] = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(names)
            order = names[shift:] + names[:shift]
            if (r // len(names)) % 2:
                order.reverse()
            for name in order:
                before = minor_faults()
                times[name].append(per_call(variants[name], args, number))
                faults[name] += minor_faults() - before
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def peak_memory(fn: Callable[..., Any], args: tuple[Any, ...]) -> int:
    """tracemalloc's peak (bytes) above the level before one call, result included."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = fn(*args)
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - before


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.1f} us"
    return f"{seconds * 1e3:9.2f} ms"


def fmt_bytes(n: int) -> str:
    if n < 1 << 20:
        return f"{n / 1024:9.1f} KiB"
    return f"{n / (1 << 20):9.2f} MiB"


DESCRIPTIONS = {
    "gen": "generated (annotated)",
    "gen_unannot": "generated (unannotated)",
    "hand": "hand-written fwd+bwd",
}


def run_case(
    case: Case,
    size: tuple[int, ...],
    variants: dict[str, Callable[..., Any]],
    rounds: int,
    sample: float,
) -> list[str]:
    """Check, time and measure one case at one size; print; return the missed targets."""
    rng = np.random.default_rng(12345)
    args = case.make_args(size, rng)
    label = f"{case.name} ({case.size_label(size)})"
    print(f"== {label}")
    worst = check(variants, args)
    print(
        f"   gradients agree with the hand-written ones (np.allclose, rtol={RTOL:g}; "
        f"max abs diff {worst:.2g}); no argument written to"
    )
    for fn in variants.values():  # warm up
        fn(*args)
    number = calibrate(variants["hand"], args, sample)
    faults: dict[str, int] = {}
    times = time_interleaved(variants, args, number, rounds, faults)
    print(f"   {rounds} rounds x {number} call(s) per sample, interleaved, order rotating")
    print("   median time per call (and minor page faults per call while timed):")
    for name in variants:
        print(
            f"     {DESCRIPTIONS[name]:<26} {fmt_time(statistics.median(times[name]))}"
            f"  ({faults[name] / (rounds * number):8.0f} faults)"
        )
    missed = []
    print(f"   median of per-round ratios (quartiles), target <= {TARGET:.2f}:")
    for name in ("gen", "gen_unannot"):
        ratios = [g / h for g, h in zip(times[name], times["hand"], strict=True)]
        med = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4)
        ok = med <= TARGET
        if not ok:
            missed.append(f"{label} {name}/hand time {med:.3f}")
        print(
            f"     {name + '/hand':<26} {med:6.3f}  ({q[0]:.3f} .. {q[2]:.3f})  "
            f"{'meets' if ok else 'MISSES'} target"
        )
    peaks = {name: peak_memory(fn, args) for name, fn in variants.items()}
    print("   peak memory of one call (tracemalloc; numpy reports its buffers to it):")
    for name in variants:
        print(f"     {DESCRIPTIONS[name]:<26} {fmt_bytes(peaks[name])}")
    for name in ("gen", "gen_unannot"):
        ratio = peaks[name] / peaks["hand"]
        if ratio > 1.0:
            missed.append(f"{label} {name}/hand memory {ratio:.2f}")
        print(f"     {name + '/hand':<26} {ratio:6.2f}")
    print()
    return missed


def keep_freed_memory() -> str:
    """Ask glibc's malloc to keep freed memory (no trimming, no mmap for arrays <= 32 MiB),
    so that a call does not page-fault the arrays the previous call freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
        ok = libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 32 << 20)
    except (OSError, AttributeError):
        ok = 0
    if not ok:
        return "could not set (not glibc?): default"
    return "mallopt(M_TRIM_THRESHOLD=1 GiB, M_MMAP_THRESHOLD=32 MiB): freed memory is reused"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few rounds, small sizes only"
    )
    parser.add_argument("--show", action="store_true", help="print the generated code")
    parser.add_argument("--rounds-small", type=int, default=41, help="rounds, small sizes")
    parser.add_argument("--rounds-large", type=int, default=15, help="rounds, large sizes")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="set glibc mallopt so freed memory is reused, not returned to the OS and "
        "page-faulted again by the next call (isolates compute from page faults)",
    )
    args = parser.parse_args(argv)
    malloc = keep_freed_memory() if args.keep_freed_memory else "default"
    if args.quick:
        rounds_small, rounds_large, sample = 5, 0, 0.005
    else:
        rounds_small, rounds_large, sample = args.rounds_small, args.rounds_large, 0.02

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
    for case in CASES:
        gen, gen_text = generated(case, annotated=True)
        gen_unannot, unannot_text = generated(case, annotated=False)
        if args.show:
            print(f"---- generated from {case.name} (annotated) ----")
            print(gen_text)
            print(f"---- generated from {case.name} (unannotated) ----")
            print(unannot_text)
        variants = {"gen": gen, "gen_unannot": gen_unannot, "hand": case.hand}
        for size, small in case.sizes:
            if not small and args.quick:
                continue
            rounds = rounds_small if small else rounds_large
            missed += run_case(case, size, variants, rounds, sample if small else 0.2)

    print(f"target: generated/hand time ratio <= {TARGET:.2f}; memory ratios above 1.00 listed too")
    if missed:
        print("missed:")
        for line in missed:
            print(f"  {line}")
    else:
        print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
