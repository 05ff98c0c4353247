"""Generation at scale: time and peak memory of ``gradgen.generate`` on large and deep inputs.

Cases (``--cases``, comma-separated; default all but ``nesting-limit``):

* ``staged-20000``: one function of 20,000 lines, the module ``bench_generate.py`` builds
  (``bench_generate.py`` breaks its time down by phase; here it is one case among others);
* ``functions-1000``: a module of 1,000 small functions (three lines each);
* ``sum-500``: ``y = x + x + ... + x``, 500 terms (the parser nests them 500 deep);
* ``power-500``: ``y = x ** x ** ... ** x``, 500 deep the other way;
* ``minus-500``: ``y = ----...x``, 500 unary minus signs;
* ``calls-199``: ``np.tanh(np.tanh(...(x)...))`` 199 deep, the most CPython reads (it
  refuses more than 200 nested parentheses, and so does gradgen);
* ``nesting-limit``: a sum exactly ``parse.MAX_NESTING`` deep, the deepest gradgen reads.

Each case runs in a fresh subprocess, which warms up on a tiny module, then reports:

* ``generate``: wall time of one ``gradgen.generate`` call, and the lines of output;
* ``check``: wall time of ``format.check_module`` on the output, the check the command line
  runs before writing (it compiles the text and runs black over ``format.black_digest`` of
  it, each form of line once; ``bench_generate.py`` runs black over all of it);
* peak RSS: the child's own ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (high-water mark
  of the whole process, interpreter and imports included) before, right after ``generate``
  and after the check.

Nothing is asserted on time. The exit status is 1 if a case fails or its check fails.

    python benchmarks/bench_scale.py
    python benchmarks/bench_scale.py --cases functions-1000,sum-500 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import forward_source  # the 20,000-line function


def staged(lines: int) -> str:
    return forward_source(lines)


def functions(count: int) -> str:
    bodies = [
        f"def f{i}(x, w):\n    h = math.tanh(x * w + {i}.0)\n    return h * h\n"
        for i in range(count)
    ]
    return "import math\n\n\n" + "\n\n".join(bodies)


def deep_sum(terms: int) -> str:
    return f"def f(x):\n    y = {' + '.join(['x'] * terms)}\n    return y\n"


def power_tower(depth: int) -> str:
    return f"def f(x):\n    y = {' ** '.join(['x'] * depth)}\n    return y\n"


def minus(depth: int) -> str:
    return f"def f(x):\n    y = {'-' * depth}x\n    return y\n"


def nested_calls(depth: int) -> str:
    call = "np.tanh(" * depth + "x" + ")" * depth
    return f"import numpy as np\n\n\ndef f(x):\n    y = {call}\n    return y\n"


def _nesting_limit() -> str:
    from gradgen.parse import MAX_NESTING

    return deep_sum(MAX_NESTING)


CASES: dict[str, Callable[[], str]] = {
    "staged-20000": lambda: staged(20_000),
    "functions-1000": lambda: functions(1000),
    "sum-500": lambda: deep_sum(500),
    "power-500": lambda: power_tower(500),
    "minus-500": lambda: minus(500),
    "calls-199": lambda: nested_calls(199),
    "nesting-limit": _nesting_limit,
}
DEFAULT_CASES = [name for name in CASES if name != "nesting-limit"]


def child(case: str) -> dict[str, object]:
    """One case, in this fresh process; returns the figures."""
    import resource

    import gradgen
    from gradgen.errors import GeneratedCodeError
    from gradgen.format import check_module

    def maxrss_mib() -> float:
        # kilobytes on Linux (bytes on macOS; this benchmark assumes Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    source = CASES[case]()
    gradgen.generate("import math\n\n\ndef g(x):\n    return math.tanh(x) * x\n")  # warm-up
    result: dict[str, object] = {
        "case": case,
        "input_lines": source.count("\n"),
        "input_chars": len(source),
        "rss_before_mib": maxrss_mib(),
    }
    start = time.perf_counter()
    output = gradgen.generate(source, f"{case}.py")
    result["generate_s"] = time.perf_counter() - start
    result["rss_generate_mib"] = maxrss_mib()
    result["output_lines"] = output.count("\n")
    start = time.perf_counter()
    try:
        check_module(output, f"{case}_backward.py")
        result["check_ok"] = True
    except GeneratedCodeError as error:
        result["check_ok"] = False
        result["check_error"] = str(error)
    result["check_s"] = time.perf_counter() - start
    result["rss_check_mib"] = maxrss_mib()
    return result


def report(r: dict[str, object]) -> None:
    gen, check = float(r["generate_s"]), float(r["check_s"])  # type: ignore[arg-type]
    print(f"{r['case']}: {r['input_lines']:,} lines in, {r['output_lines']:,} lines out")
    print(
        f"  generate {gen:8.2f} s    peak RSS {r['rss_generate_mib']:7.1f} MiB "
        f"(before: {r['rss_before_mib']:.1f} MiB)"
    )
    verdict = "passed" if r["check_ok"] else f"FAILED: {r.get('check_error')}"
    print(
        f"  check    {check:8.2f} s    peak RSS {r['rss_check_mib']:7.1f} MiB "
        f"(compile, and black on each form of line: {verdict})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated, from: {', '.join(CASES)}",
    )
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    print(f"python {sys.version.split()[0]}; one fresh subprocess per case")
    failures = []
    for case in cases:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", case], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(f"{case}: FAILED after {wall:.1f} s\n{done.stderr}")
            failures.append(case)
            continue
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        report(figures)
        print(f"  (subprocess wall time {wall:.1f} s)")
        if args.json:
            print(json.dumps(figures))
        if not figures["check_ok"]:
            failures.append(case)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
