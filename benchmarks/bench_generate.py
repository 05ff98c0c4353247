"""Generation time and peak memory of ``gradgen.generate`` on large staged functions.

For each size N a deterministic forward module is built: one function ``f(x, y)`` whose body
is N assignment lines, a realistic mix of multiply-add, tanh, sigmoid, square-plus, a
rebound accumulator (``acc = ...`` again and again), a fan-out value (``hub``, read by one
line in nine) and reads of the parameters throughout. Each size runs in a fresh
subprocess, which reports:

* the wall time of ``gradgen.generate`` (after a warm-up on a tiny module; the median of
  ``--repeats`` calls, default 3, each listed), the lines of output, and milliseconds per
  input line;
* peak memory: the child's own ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read right
  after ``generate`` returns (high-water mark of the resident set of the whole process,
  interpreter and imports included), minus the same figure read just before; the baseline
  is printed too. ``--tracemalloc`` adds the peak of Python allocations inside ``generate``,
  measured in a second, separate ``generate`` call (tracemalloc slows the code down, so it
  does not touch the timings);
* the time of each phase of the pipeline in ``gradgen/api.py`` (medians over the repeats,
  which alternate with the ``generate`` calls), called one after the other as ``generate``
  calls them: ``parse.parse_module``, ``api.backward_functions``,
  ``emit.emit_module``, ``format.format_module``. ``backward_functions`` is split further
  into ``read_functions``, ``stage_function`` and ``reverse`` by wrapping those names in
  ``gradgen.api`` (this process only; gradgen's files are not touched), and
  ``format_module`` into the black call on the skeleton and ``_format_bodies`` (which calls
  black once on the long body lines);
* for comparison, ``black.format_str`` over the whole generated output, which is what
  formatting everything with black would cost; it must return the text unchanged.

The generated module must compile (checked for every size). For the smallest size the
backward is also run and compared with central finite differences of the forward.

    python benchmarks/bench_generate.py                   # sizes 1000,10000,20000
    python benchmarks/bench_generate.py --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

PATTERNS = [
    "v{i} = {p1} * x + y",
    "v{i} = math.tanh({p3})",
    "v{i} = 1.0 / (1 + math.exp(-{p1}))",
    "v{i} = {p2} ** 2 + {p5}",
    "acc = acc * 0.5 + {p1} * 0.25",  # rebinding: acc, acc_2, acc_3, ...
    "v{i} = {p1} * hub - {p4}",  # fan-out: hub is read every ninth line
    "v{i} = math.tanh({p1} * acc + {p2})",
    "v{i} = ({p1} + {p6}) * 0.5",
    # a long name, so that some backward lines are too long for one line and go to black
    "smoothed_hidden_activation_{i} = math.tanh({p1} * hub + {p2} * acc - {p3} * x)",
]


def forward_source(n: int) -> str:
    """A module with one staged function ``f(x, y)`` of exactly ``n`` body lines."""
    lines = ["import math", "", "", "def f(x, y):"]
    body = ["hub = math.sin(x) * y", "acc = x * y"]
    defined: list[str] = []
    for i in range(n - 3):
        # Until six values exist, prev(k) falls back on the parameters.
        prev = {f"p{k}": defined[-k] if len(defined) >= k else "xy"[k % 2] for k in range(1, 7)}
        line = PATTERNS[i % len(PATTERNS)].format(i=i, **prev)
        body.append(line)
        target = line.split(" = ")[0]
        if target != "acc":
            defined.append(target)
    body.append(f"loss = {defined[-1]} * acc + hub")
    assert len(body) == n
    lines += [f"    {line}" for line in body]
    lines.append("    return loss")
    return "\n".join(lines) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def child(n: int, use_tracemalloc: bool, repeats: int) -> dict[str, object]:
    """Everything for one size, in this (fresh) process; returns the figures."""
    import resource

    import black

    import gradgen
    import gradgen.api as api
    import gradgen.format as fmt
    from gradgen import provenance
    from gradgen.emit import emit_module
    from gradgen.format import format_module
    from gradgen.parse import parse_module

    def maxrss_kib() -> int:
        # kilobytes on Linux (bytes on macOS; this benchmark assumes Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    source = forward_source(n)
    filename = f"staged_{n}.py"
    gradgen.generate("import math\n\n\ndef g(x):\n    return math.tanh(x) * x\n")  # warm-up
    result: dict[str, object] = {"n": n, "input_lines": source.count("\n")}

    rss_before = maxrss_kib()
    start = time.perf_counter()
    output = gradgen.generate(source, filename)
    result["generate_s"] = time.perf_counter() - start
    rss_after = maxrss_kib()
    result["rss_baseline_kib"] = rss_before
    result["rss_peak_kib"] = rss_after
    result["output_lines"] = output.count("\n")
    result["backprop_comments"] = output.count("# backprop ")
    compile(output, f"staged_{n}_backward.py", "exec")
    result["compiles"] = True

    if use_tracemalloc:
        import tracemalloc

        tracemalloc.start()
        gradgen.generate(source, filename)
        result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    # Phases, called as generate() calls them, each timed on its own.
    def run_phases() -> tuple[dict[str, float], dict[str, float], dict[str, float], str, object]:
        sub = {"read_functions": 0.0, "stage_function": 0.0, "reverse": 0.0}
        sub_fmt = {"_format_bodies": 0.0}

        def timed(name: str, fn, table: dict[str, float]):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    table[name] += time.perf_counter() - t

            return wrapper

        originals = {name: getattr(api, name) for name in sub}
        original_bodies = fmt._format_bodies
        for name, fn in originals.items():
            setattr(api, name, timed(name, fn, sub))
        fmt._format_bodies = timed("_format_bodies", original_bodies, sub_fmt)
        try:
            phases: dict[str, float] = {}
            t = time.perf_counter()
            parsed = parse_module(source, filename)
            phases["parse_module"] = time.perf_counter() - t
            t = time.perf_counter()
            backwards = api.backward_functions(parsed)
            phases["backward_functions"] = time.perf_counter() - t
            header = [
                f"# Generated by gradgen from {filename}. Do not edit: regenerate.",
                f"# Command: gradgen {filename}",
            ]
            names = [b.staged.name for b in backwards]
            header += provenance.header_lines(provenance.function_digests(source), names)
            t = time.perf_counter()
            text = emit_module(backwards, parsed.context, header)
            phases["emit_module"] = time.perf_counter() - t
            t = time.perf_counter()
            phased_output = format_module(text)
            phases["format_module"] = time.perf_counter() - t
        finally:
            for name, fn in originals.items():
                setattr(api, name, fn)
            fmt._format_bodies = original_bodies
        return phases, sub, sub_fmt, phased_output, text

    # Repeats alternate a whole generate() with a phase-by-phase run; medians are reported.
    generate_times = [result["generate_s"]]
    runs = []
    for r in range(repeats):
        if r:
            start = time.perf_counter()
            gradgen.generate(source, filename)
            generate_times.append(time.perf_counter() - start)
        runs.append(run_phases())
    result["generate_s"] = statistics.median(generate_times)
    result["generate_all_s"] = generate_times

    def median_of(k: int) -> dict[str, float]:
        return {name: statistics.median(run[k][name] for run in runs) for name in runs[0][k]}

    phases, sub, sub_fmt = median_of(0), median_of(1), median_of(2)
    _phased_output, text = runs[-1][3], runs[-1][4]
    result["phases_s"] = phases
    result["backward_sub_s"] = sub
    result["format_sub_s"] = {
        "_format_bodies": sub_fmt["_format_bodies"],
        "black on skeleton + splice": phases["format_module"] - sub_fmt["_format_bodies"],
    }
    result["phases_same_output"] = all(run[3] == output for run in runs)
    if not result["phases_same_output"]:
        # Keep the texts for a diff: gradgen's output should not depend on how it is called.
        import tempfile

        keep = tempfile.mkdtemp(prefix=f"bench_generate_{n}_")
        with open(f"{keep}/generate.py", "w") as file:
            file.write(output)
        for index, run in enumerate(runs):
            if run[3] != output:
                with open(f"{keep}/phases_{index}.py", "w") as file:
                    file.write(run[3])
        result["mismatch_dir"] = keep
    body_lines = [b for f in text.functions for b in f.body]
    result["long_body_lines"] = sum(1 for b in body_lines if b and fmt._needs_black(b.strip()))

    t = time.perf_counter()
    blacked = black.format_str(output, mode=black.Mode(line_length=fmt.LINE_LENGTH))
    result["black_full_s"] = time.perf_counter() - t
    result["black_unchanged"] = blacked == output
    result["rss_peak_with_black_kib"] = maxrss_kib()

    if n <= 2000:
        result["max_rel_error_vs_finite_diff"] = _gradient_check(source, output)
    return result


def _gradient_check(source: str, output: str) -> float:
    forward: dict[str, object] = {}
    backward: dict[str, object] = {}
    exec(compile(source, "forward", "exec"), forward)
    exec(compile(output, "backward", "exec"), backward)
    f, grad = forward["f"], backward["f_backward"]
    worst = 0.0
    for x, y in [(0.7, 0.3), (-0.4, 1.1), (1.3, -0.8)]:
        got = grad(x, y)
        h = 1e-6
        fd = [
            (f(x + h, y) - f(x - h, y)) / (2 * h),
            (f(x, y + h) - f(x, y - h)) / (2 * h),
        ]
        for a, b in zip(got, fd, strict=True):
            worst = max(worst, abs(a - b) / max(1.0, abs(b)))
            assert math.isfinite(a), got
    return worst


def report(r: dict[str, object]) -> None:
    n = r["n"]
    gen = r["generate_s"]
    print(f"N = {n:,} body lines ({r['input_lines']:,} lines of input)")
    runs = ", ".join(f"{t:.2f}" for t in r["generate_all_s"])
    print(
        f"  generate (median):   {gen:8.2f} s   {gen * 1000 / n:6.3f} ms/input line   "
        f"(runs: {runs} s)"
    )
    print(
        f"  output: {r['output_lines']:,} lines, {r['backprop_comments']:,} '# backprop' groups, "
        f"{r['long_body_lines']:,} body lines long enough to go to black"
    )
    base, peak = r["rss_baseline_kib"], r["rss_peak_kib"]
    print(
        f"  peak RSS (ru_maxrss, child):  {peak / 1024:7.1f} MiB after generate "
        f"(+{(peak - base) / 1024:.1f} MiB over {base / 1024:.1f} MiB baseline); "
        f"{r['rss_peak_with_black_kib'] / 1024:.1f} MiB after the full black run"
    )
    if "tracemalloc_peak_bytes" in r:
        print(f"  tracemalloc peak in generate: {r['tracemalloc_peak_bytes'] / 2**20:7.1f} MiB")
    phases = r["phases_s"]
    total = sum(phases.values())
    print(
        f"  phases, medians (sum {total:.2f} s; same output as generate: "
        f"{r['phases_same_output']}):"
    )
    for name, s in phases.items():
        print(f"    {name:<28}{_ms(s)}  {100 * s / total:5.1f} %")
        if name == "backward_functions":
            for sub, v in r["backward_sub_s"].items():
                print(f"      {sub:<26}{_ms(v)}  {100 * v / total:5.1f} %")
        if name == "format_module":
            for sub, v in r["format_sub_s"].items():
                print(f"      {sub:<26}{_ms(v)}  {100 * v / total:5.1f} %")
    if "mismatch_dir" in r:
        print(
            f"  !! phase-by-phase output differs from generate(): texts kept in {r['mismatch_dir']}"
        )
    bf = r["black_full_s"]
    print(
        f"  black.format_str on the whole output: {bf:8.2f} s  "
        f"({bf / gen:.1f}x generate; unchanged: {r['black_unchanged']})"
    )
    print(f"  output compiles: {r['compiles']}", end="")
    if "max_rel_error_vs_finite_diff" in r:
        print(
            f"; gradients vs finite differences: max error {r['max_rel_error_vs_finite_diff']:.1e}"
        )
    else:
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,20000", help="comma-separated N")
    parser.add_argument("--tracemalloc", action="store_true", help="also tracemalloc's peak")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="generate() and phase runs per size (median)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON too")
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.tracemalloc, args.repeats)))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    print(f"python {sys.version.split()[0]}; one fresh subprocess per size")
    failures = []
    for n in sizes:
        command = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--repeats",
            str(args.repeats),
        ]
        if args.tracemalloc:
            command.append("--tracemalloc")
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(f"N = {n:,}: FAILED after {wall:.1f} s\n{done.stderr}")
            failures.append(n)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        report(r)
        if args.json:
            print(json.dumps(r))
        if not (r["compiles"] and r["black_unchanged"] and r["phases_same_output"]):
            failures.append(n)
        print(f"  (subprocess wall time {wall:.1f} s)")
        print()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
