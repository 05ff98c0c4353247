"""Import time per ``@gradgen.differentiable`` function: committed backward vs generated.

The decorator attaches ``f.backward`` when the forward module is imported, one of two ways:

(a) committed: ``[[tool.gradgen.files]]`` in pyproject.toml maps the forward file to a
    committed backward file whose header records a digest equal to the function's current
    source digest, so the decorator imports that module (no parsing, no formatting);
(b) generated: no mapping, so the decorator reads the function's source, parses it with
    libcst, generates the backward and formats it with black, in memory;
(c) baseline: the same module with the decorator replaced by the identity, i.e. what the
    module costs to import by itself.

A temporary folder holds two copies of one project: ``committed/`` whose pyproject.toml maps
``forward = "models"`` to ``backward = "generated"`` (the backward files are written by
``gradgen.cli.main([])`` run in that folder), and ``plain/`` whose pyproject.toml has no
``[tool.gradgen]``. Both have ``models/net.py`` with K decorated functions (default 20),
staged like the CS231n notes: multiply-add, the sigmoid written out
``1.0 / (1 + math.exp(-z))``, ``math.tanh``, ``**``, ``/``, 10 to 15 lines each. (c) imports
``plain/models/net.py`` after setting ``gradgen.differentiable`` to the identity.

Every measurement is a fresh interpreter (``python -I -c ...``; the project folder is put on
``sys.path`` by hand), so nothing is cached in the interpreter: the child times
``import gradgen`` and then, separately, ``import models.net`` with ``time.perf_counter``.
Before timing, each variant is imported once as a warm-up, which also writes the
``__pycache__`` of ``models/net.py`` and of the committed ``generated/net.py``; the timed runs
therefore read bytecode from a warm ``__pycache__`` and a warm OS file cache, as a second
run of a program would. ``GRADGEN_STRICT=1`` is set in every child, so a stale committed
file would be an error, not a silent fall-back to generating.

After the import, every timed child checks (outside the timed region) that each ``fI.backward``
came from where it should: in (a) ``backward.__code__.co_filename`` is the committed
``generated/net.py`` and in (b) an in-memory ``<gradgen: ...>`` filename; in (c) there is no
``backward``. Before timing, one run of (a) and one of (b) also check that both backwards
return the same gradients at one point, and that these match central finite differences.

The variants are interleaved: each of N rounds (default 15) runs (a), (b) and (c) once, in an
order rotated from round to round. The per-function cost of a round is
``(import time - baseline of the same round) / K``; the report gives medians over rounds,
and the ratio (b)/(a) both as the ratio of the medians and as the median of per-round
ratios. The machine may be noisy: the ratios, measured side by side, mean more than the
absolute times.

    python benchmarks/bench_import.py                 # K=20, 15 rounds
    python benchmarks/bench_import.py --quick         # K=5, 5 rounds
    python benchmarks/bench_import.py --functions 50 --rounds 25
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

MODULE = "models.net"

# Staged forward functions, one simple expression per line; {c} and {d} vary per function
# so no two functions have the same source.
TEMPLATES = [
    """\
    @gradgen.differentiable
    def f{i}(x, y, w, b):
        z = w * x + b
        s = 1.0 / (1 + math.exp(-z))
        t = math.tanh(y * s + {c})
        u = t**2 + s * x
        den = 1.0 + y**2
        v = u / den
        g = 1.0 / (1 + math.exp(-v))
        h = g * w + {d} * t
        q = h * h + z
        out = q / (1.0 + s)
        return out
    """,
    """\
    @gradgen.differentiable
    def f{i}(x, y, w, b):
        a = x * w + y * b + {c}
        sa = 1.0 / (1 + math.exp(-a))
        ta = math.tanh(a)
        m = sa * ta
        e = math.exp(-m * {d})
        num = m + e
        xy = x + y
        sq = xy**2
        den = sq + 1.0
        r = num / den
        r2 = r * r + b
        return r2
    """,
    """\
    @gradgen.differentiable
    def f{i}(x, y, w, b):
        h1 = math.tanh(w * x + b)
        h2 = math.tanh(w * y - b)
        g1 = 1.0 / (1 + math.exp(-h1))
        g2 = 1.0 / (1 + math.exp(-h2))
        mix = g1 * h2 + g2 * h1
        sq = mix**2
        scaled = sq * {c} + {d}
        e = math.exp(-scaled)
        inv = 1.0 / (1.0 + e)
        z = inv * x
        out = z + inv / (1.0 + w**2)
        return out
    """,
]

PYPROJECT_MAPPED = """\
[project]
name = "bench-import-project"
version = "0"

[[tool.gradgen.files]]
forward = "models"
backward = "generated"
"""

PYPROJECT_PLAIN = """\
[project]
name = "bench-import-project"
version = "0"
"""


def forward_module(k: int) -> str:
    parts = ['"""K staged, decorated functions (written by bench_import.py)."""\n\n']
    parts.append("import math\n\nimport gradgen\n")
    for i in range(k):
        template = TEMPLATES[i % len(TEMPLATES)]
        c = 0.1 + 0.05 * (i % 7)
        d = 0.5 + 0.25 * (i % 5)
        parts.append("\n\n" + textwrap.dedent(template).format(i=i, c=f"{c:g}", d=f"{d:g}"))
    return "".join(parts)


def build_projects(root: Path, k: int) -> tuple[Path, Path]:
    """``committed/`` (mapped, backward files generated) and ``plain/`` (no config)."""
    source = forward_module(k)
    committed, plain = root / "committed", root / "plain"
    for project, pyproject in ((committed, PYPROJECT_MAPPED), (plain, PYPROJECT_PLAIN)):
        (project / "models").mkdir(parents=True)
        (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
        (project / "models" / "net.py").write_text(source, encoding="utf-8")
    from gradgen.cli import main  # imported here: the parent process's timings don't matter

    previous = Path.cwd()
    os.chdir(committed)
    try:
        status = main(["-q"])
    finally:
        os.chdir(previous)
    if status != 0:
        raise SystemExit(f"gradgen exited with {status} while writing the committed files")
    backward = committed / "generated" / "net.py"
    if not backward.is_file():
        raise SystemExit(f"gradgen did not write {backward}")
    return committed, plain


# The child: time `import gradgen` and `import models.net`, then check where each backward
# came from. argv: project folder, variant, K, check-gradients flag.
CHILD = r"""
import sys, time
t0 = time.perf_counter()
import gradgen
t1 = time.perf_counter()
project, variant, k, check = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, project)
if variant == "baseline":
    gradgen.differentiable = lambda f: f
t2 = time.perf_counter()
import models.net as net
t3 = time.perf_counter()

import json, os
committed_file = os.path.realpath(os.path.join(project, "generated", "net.py"))
sources = set()
for i in range(k):
    f = getattr(net, f"f{i}")
    if variant == "baseline":
        assert not hasattr(f, "backward"), f"f{i} has a backward under the identity decorator"
        continue
    filename = f.backward.__code__.co_filename
    if variant == "committed":
        assert os.path.realpath(filename) == committed_file, (
            f"f{i}.backward comes from {filename!r}, not the committed {committed_file}")
    else:
        assert filename.startswith("<gradgen: "), f"f{i}.backward comes from {filename!r}"
    sources.add(filename if variant == "committed" else "<gradgen>")
result = {"gradgen": t1 - t0, "module": t3 - t2, "sample": (
    net.f0.backward.__code__.co_filename if variant != "baseline" else None)}
if check:
    point = (0.3, -0.7, 1.1, 0.2)
    grads, numeric = [], []
    for i in range(k):
        f = getattr(net, f"f{i}")
        grads.append(list(f.backward(*point, 1.0)))
        row = []
        for j in range(len(point)):
            h = 1e-6
            up = list(point); up[j] += h
            down = list(point); down[j] -= h
            row.append((f(*up) - f(*down)) / (2 * h))
        numeric.append(row)
    result["grads"], result["numeric"] = grads, numeric
print(json.dumps(result))
"""

VARIANTS = ("committed", "generated", "baseline")


def run_child(project: Path, variant: str, k: int, check: bool = False) -> dict[str, Any]:
    env = dict(os.environ, GRADGEN_STRICT="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-I", "-c", CHILD, str(project), variant, str(k), str(int(check))]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or done.stderr.strip():
        raise SystemExit(
            f"{variant} import failed (exit {done.returncode}):\n{done.stderr}{done.stdout}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def verify(projects: dict[str, Path], k: int) -> None:
    committed = run_child(projects["committed"], "committed", k, check=True)
    generated = run_child(projects["generated"], "generated", k, check=True)
    run_child(projects["baseline"], "baseline", k)
    print(f"(a) committed: f0.backward from {committed['sample']}")
    print(f"(b) generated: f0.backward from {generated['sample']}")
    worst_pair = worst_fd = 0.0
    for a_row, b_row, n_row in zip(
        committed["grads"], generated["grads"], committed["numeric"], strict=True
    ):
        for a, b, n in zip(a_row, b_row, n_row, strict=True):
            worst_pair = max(worst_pair, abs(a - b))
            worst_fd = max(worst_fd, abs(a - n) / max(1.0, abs(n)))
    if worst_pair > 1e-12 or worst_fd > 1e-6:
        raise SystemExit(
            f"gradients disagree: committed vs generated {worst_pair:.3g}, "
            f"vs finite differences {worst_fd:.3g}"
        )
    print(
        f"checked: all {k} backwards come from the expected place; committed and generated "
        f"gradients agree (max |diff| {worst_pair:.2g}) and match finite differences "
        f"(max rel. err. {worst_fd:.2g})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", "-k", type=int, help="decorated functions (default 20)")
    parser.add_argument("--rounds", "-n", type=int, help="interleaved rounds (default 15)")
    parser.add_argument("--quick", action="store_true", help="K=5 and 5 rounds")
    args = parser.parse_args(argv)
    k = args.functions or (5 if args.quick else 20)
    rounds = args.rounds or (5 if args.quick else 15)
    if k < 1 or rounds < 1:
        parser.error("--functions and --rounds must be at least 1")

    print(f"python {sys.version.split()[0]}, K={k} decorated functions, {rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="gradgen-bench-import-") as temporary:
        committed, plain = build_projects(Path(temporary), k)
        projects = {"committed": committed, "generated": plain, "baseline": plain}
        lines = len((committed / "models" / "net.py").read_text().splitlines())
        print(
            f"forward module: {lines} lines; committed backward: "
            f"{len((committed / 'generated' / 'net.py').read_text().splitlines())} lines"
        )
        # Warm-up: writes __pycache__ for models/net.py (both copies) and generated/net.py.
        for variant in VARIANTS:
            run_child(projects[variant], variant, k)
        caches = [
            committed / "models" / "__pycache__",
            committed / "generated" / "__pycache__",
            plain / "models" / "__pycache__",
        ]
        missing = [str(c) for c in caches if not any(c.glob("net.*.pyc"))]
        if missing:
            raise SystemExit(f"warm-up wrote no bytecode in: {', '.join(missing)}")
        print(
            "warm-up: one import of each variant done; __pycache__ of models/net.py and "
            "generated/net.py written"
        )
        verify(projects, k)

        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        gradgen_import: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(rounds):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for variant in order:
                result = run_child(projects[variant], variant, k)
                times[variant].append(result["module"])
                gradgen_import[variant].append(result["gradgen"])

    ms = 1e3
    per_a = [(a - c) / k * ms for a, c in zip(times["committed"], times["baseline"], strict=True)]
    per_b = [(b - c) / k * ms for b, c in zip(times["generated"], times["baseline"], strict=True)]
    ratios = [b / a for a, b in zip(per_a, per_b, strict=True) if a > 0]
    med = statistics.median
    print()
    print("median over rounds, milliseconds (import models.net, in a fresh interpreter):")
    for label, variant in (
        ("(a) committed", "committed"),
        ("(b) generated", "generated"),
        ("(c) baseline ", "baseline"),
    ):
        values = times[variant]
        print(
            f"  {label}  whole module {med(values) * ms:9.2f}   "
            f"(min {min(values) * ms:.2f}, max {max(values) * ms:.2f})"
        )
    print("per decorated function, (time - baseline of the same round) / K:")
    print(
        f"  (a) committed  {med(per_a):9.3f} ms/function   "
        f"(min {min(per_a):.3f}, max {max(per_a):.3f})"
    )
    print(
        f"  (b) generated  {med(per_b):9.3f} ms/function   "
        f"(min {min(per_b):.3f}, max {max(per_b):.3f})"
    )
    print(
        f"ratio (b)/(a): {med(per_b) / med(per_a):.1f}x (ratio of medians); "
        f"{med(ratios):.1f}x (median of per-round ratios, {len(ratios)} rounds)"
    )
    print(
        "'import gradgen' itself (not per function, paid by every variant), median: "
        + ", ".join(f"{v} {med(gradgen_import[v]) * ms:.1f}" for v in VARIANTS)
        + " ms"
    )
    whole = {
        v: [(g + m) * ms for g, m in zip(gradgen_import[v], times[v], strict=True)]
        for v in VARIANTS
    }
    print(
        "'import gradgen' + 'import models.net', median: "
        + ", ".join(f"{v} {med(whole[v]):.1f}" for v in VARIANTS)
        + f" ms; (b)/(a) {med(whole['generated']) / med(whole['committed']):.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
