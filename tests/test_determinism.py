"""Generated files are committed and checked with ``--check``: the same input must give the
same bytes in every process, whatever the hash seed, and black must have nothing to change.
"""

from __future__ import annotations

import os
import subprocess
import sys

import black
import pytest

import gradgen

# Several functions sharing imports and constants; rebinding (h, s), fan-out (x and a are
# used several times), numpy and math, from-imports and aliases, enough names that any
# iteration over a set or dict keyed by str would show up as a different order.
FORWARD = '''\
"""A moderately complex forward module."""

import math
from math import exp, sqrt as root
import numpy as np

EPS = 1e-5
SCALE = 2.0 * EPS
HALF = 0.5
OFFSET = math.pi / 4


def layer(x, w, b):
    """One tanh layer."""
    h = x * w + b
    h = np.tanh(h)
    h = h * h + x
    return h * SCALE


def softplus_loss(x, y, z, alpha=0.5):
    a = x * y
    b = a + z
    c = np.log(1.0 + np.exp(b))
    d = a * c + alpha * x * z
    s = d / (1.0 + b * b)
    s = s + HALF * a * a
    return s - OFFSET


def scalar(p, q, r, t):
    u = exp(p) * q
    v = math.sin(u) + root(r * r + EPS)
    w = u * v - math.cos(t) * p
    u = w / (v + 2.0) + abs(q) * t
    return u * u + max(p, r) + min(q, t)


def fan_out(x):
    a = x * x
    b = a * x
    c = a + b + x
    return a * b * c + HALF
'''

SCRIPT = (
    "import sys, gradgen; "
    "sys.stdout.buffer.write(gradgen.generate(sys.stdin.read(), 'models/forward.py', "
    "command='gradgen models/forward.py -o generated/forward.py').encode())"
)


def generate_in_subprocess(seed: str) -> bytes:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=FORWARD.encode(),
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    return completed.stdout


@pytest.fixture(scope="module")
def generated() -> str:
    return gradgen.generate(
        FORWARD,
        "models/forward.py",
        command="gradgen models/forward.py -o generated/forward.py",
    )


def test_same_bytes_under_different_hash_seeds(generated: str) -> None:
    outputs = {seed: generate_in_subprocess(seed) for seed in ("0", "1", "12345")}
    assert outputs["0"] == generated.encode()
    assert outputs["1"] == outputs["0"]
    assert outputs["12345"] == outputs["0"]


def test_same_text_twice_in_one_process(generated: str) -> None:
    again = gradgen.generate(
        FORWARD,
        "models/forward.py",
        command="gradgen models/forward.py -o generated/forward.py",
    )
    assert again == generated


def test_every_function_has_a_backward(generated: str) -> None:
    for name, params in [
        ("layer", "x, w, b, dout=1.0"),
        # after a parameter with a default, the upstream gradient is keyword-only
        ("softplus_loss", "x, y, z, alpha=0.5, *, dout=1.0"),
        ("scalar", "p, q, r, t, dout=1.0"),
        ("fan_out", "x, dout=1.0"),
    ]:
        assert f"def {name}_backward({params}):" in generated


def test_output_compiles(generated: str) -> None:
    compile(generated, "generated/forward.py", "exec")


def test_black_leaves_output_unchanged(generated: str) -> None:
    assert black.format_str(generated, mode=black.Mode()) == generated


def test_output_has_unix_newlines_and_ends_with_one(generated: str) -> None:
    assert "\r" not in generated
    assert generated.endswith("\n")
    assert not generated.endswith("\n\n")


def test_crlf_input_gives_the_same_output(generated: str) -> None:
    crlf = gradgen.generate(
        FORWARD.replace("\n", "\r\n"),
        "models/forward.py",
        command="gradgen models/forward.py -o generated/forward.py",
    )
    assert crlf == generated
