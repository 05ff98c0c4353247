"""Generated files are committed and checked with ``--check``: the same input must give the
same bytes in every process, whatever the hash seed, and black must have nothing to change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import black
import pytest

import gradgen
from cli_project import GOOD, GOOD_2, Run, write

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


# --- the command line: the same output whatever the input order, folder or process


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.py"))}


def test_input_order_does_not_change_the_output(project: Path, run: Run) -> None:
    write(project / "a.py", GOOD)
    write(project / "b.py", GOOD_2)
    assert run("b.py", "a.py", "-o", "out")[0] == 0
    first = _outputs(project / "out")
    for file in (project / "out").iterdir():
        file.unlink()
    assert run("a.py", "b.py", "-o", "out")[0] == 0
    assert _outputs(project / "out") == first
    assert sorted(first) == ["a.py", "b.py"]


def test_output_names_no_absolute_path_nor_date(project: Path, run: Run) -> None:
    write(project / "models/net.py", GOOD)
    source, target = project / "models/net.py", project / "gen/net.py"
    assert run(source, "-o", target, "--wrt", "x")[0] == 0
    text = target.read_text()
    assert str(project) not in text
    assert os.sep + "tmp" not in text
    assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d:\d\d\b", text)
    assert text.splitlines()[:2] == [
        "# Generated by gradgen from models/net.py. Do not edit: regenerate.",
        "# Command: gradgen models/net.py -o gen/net.py --wrt x",
    ]


def test_command_line_output_is_the_same_in_every_process(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "")
    write(tmp_path / "src/a.py", GOOD)
    write(tmp_path / "src/b.py", GOOD_2)
    write(
        tmp_path / "src/c.py",
        "import numpy as np\n\nEPS = 1e-5\n\n\n"
        "def norm(x, g, b):\n"
        "    mu = np.mean(x, axis=0)\n"
        "    xc = x - mu\n"
        "    var = np.mean(xc * xc, axis=0)\n"
        "    return g * xc / np.sqrt(var + EPS) + b\n",
    )
    results = []
    for seed in ("0", "1", "4242"):
        out = tmp_path / f"out_{seed}"
        completed = subprocess.run(
            [sys.executable, "-m", "gradgen", "src", "-o", "out", "--pairs"],
            cwd=tmp_path,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        (tmp_path / "out").rename(out)
        results.append(_outputs(out))
    assert results[0] == results[1] == results[2]
    assert sorted(results[0]) == ["a.py", "b.py", "c.py"]
    for text in results[0].values():
        assert black.format_str(text.decode(), mode=black.Mode()) == text.decode()
