"""``@gradgen.differentiable``: the backward is generated when the module is imported.

Each test writes a small module into ``tmp_path`` and imports it under a name no other test
uses, so nothing is shared through ``sys.modules`` or gradgen's per-file caches.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

import gradgen
from review_project import assert_gradients

TWO_PARAMS = """
def f(x, y):
    a = x * y
    b = math.sin(a) + math.exp(x)
    a = a + b
    return a * x / (1.0 + y * y)
"""

SPELLINGS = [
    pytest.param("import gradgen\nimport math\n", "@gradgen.differentiable", id="attribute"),
    pytest.param(
        "import gradgen\nimport math\n",
        "@gradgen.differentiable()",
        id="attribute-call",
    ),
    pytest.param(
        "from gradgen import differentiable\nimport math\n",
        "@differentiable",
        id="from-import",
    ),
    pytest.param(
        "from gradgen import differentiable\nimport math\n",
        "@differentiable()",
        id="from-import-call",
    ),
    pytest.param("import gradgen as gg\nimport math\n", "@gg.differentiable", id="import-as"),
]


@pytest.mark.parametrize("imports, decorator", SPELLINGS)
def test_decorator_spellings(load, imports: str, decorator: str) -> None:
    module = load(imports + "\n\n" + decorator + TWO_PARAMS)
    f = module.f
    assert callable(f.backward)
    assert isinstance(f.backward_source, str)
    assert "def f_backward(x, y, dout=1.0):" in f.backward_source
    assert_gradients(f, (0.7, -1.3))


def test_returns_the_same_function(load) -> None:
    module = load("""
        import gradgen


        def plain(x, y):
            return x * y + x


        decorated = gradgen.differentiable(plain)


        @gradgen.differentiable
        def f(x, y):
            return x * y + x
        """)
    assert module.decorated is module.plain
    assert module.plain.backward is not None
    assert module.f.__name__ == "f"
    assert module.f.__module__ == module.__name__
    assert inspect.isfunction(module.f)
    # The forward is unchanged: same value as before decoration.
    assert module.f(2.0, 3.0) == 8.0
    assert module.plain(2.0, 3.0) == 8.0
    assert module.f.backward(2.0, 3.0) == (4.0, 2.0)


def test_gradients_match_finite_differences(load) -> None:
    module = load("""
        import math
        import gradgen


        @gradgen.differentiable
        def f(x, y, z):
            a = x * y
            b = math.tanh(a) + z * z
            c = math.log(1.0 + b * b)
            b = b * c + math.sqrt(z)
            return b / (x + 2.0) - a
        """)
    assert_gradients(module.f, (0.3, -0.8, 1.7))
    assert_gradients(module.f, (1.1, 0.4, 0.2))


def test_upstream_gradient_scales(load) -> None:
    module = load("""
        import math
        import gradgen


        @gradgen.differentiable
        def f(x, y):
            return math.sin(x) * y
        """)
    gx, gy = module.f.backward(0.5, 2.0)
    sx, sy = module.f.backward(0.5, 2.0, 3.0)
    assert math.isclose(sx, 3.0 * gx)
    assert math.isclose(sy, 3.0 * gy)


def test_forward_value_unchanged(load) -> None:
    source = """
        import math
        {decorator}
        def f(x, y):
            a = math.exp(x) * y
            return a * a + y
        """
    plain = load(source.format(decorator=""))
    decorated = load(source.format(decorator="import gradgen\n\n        @gradgen.differentiable"))
    for args in [(0.1, 2.0), (-1.5, 0.3)]:
        assert decorated.f(*args) == plain.f(*args)


def test_getsource_of_backward(load) -> None:
    module = load("""
        import math
        import gradgen


        @gradgen.differentiable
        def f(x):
            return math.exp(x) * x
        """)
    assert inspect.getsource(module.f.backward) in module.f.backward_source
    assert inspect.getsource(module.f.value_and_grad) in module.f.backward_source
    assert module.f.backward_source.startswith("def f_backward(")
    assert inspect.getsource(module.f.backward).startswith("def f_backward(x, dout=1.0):")


def test_traceback_shows_generated_source(load) -> None:
    module = load("""
        import math
        import gradgen


        @gradgen.differentiable
        def f(x):
            y = math.exp(x)
            return y * x
        """)
    with pytest.raises(TypeError) as info:
        module.f.backward("not a number")
    frames = traceback.extract_tb(info.value.__traceback__)
    gradgen_frames = [fr for fr in frames if fr.filename.startswith("<gradgen")]
    assert gradgen_frames, [fr.filename for fr in frames]
    frame = gradgen_frames[-1]
    assert frame.filename == module.f.backward.__code__.co_filename
    assert "f_backward" in frame.filename
    assert frame.name == "f_backward"
    # The line shown is the generated line that failed, read back through linecache.
    generated_lines = module.f.backward_source.splitlines()
    assert frame.line == generated_lines[frame.lineno - 1].strip()
    assert "math.exp(x)" in frame.line

    try:
        module.f.backward("not a number")
    except TypeError:
        text = traceback.format_exc()
    assert frame.filename in text
    assert "math.exp(x)" in text


def test_refused_function_raises_at_import(load, tmp_path: Path) -> None:
    source = (
        "import gradgen\n"  # 1
        "\n"  # 2
        "\n"  # 3
        "@gradgen.differentiable\n"  # 4
        "def f(x):\n"  # 5
        "    y = x * 2.0\n"  # 6
        "    z = y << 3\n"  # 7: the '<<' is at column 11
        "    return z\n"  # 8
    )
    with pytest.raises(gradgen.GradgenError) as info:
        load(source)
    error = info.value
    assert isinstance(error, SyntaxError)
    module_file = next(tmp_path.glob("gradgen_loaded_*.py"))
    assert Path(error.filename) == module_file
    assert error.lineno == 7
    assert error.offset == 11
    assert error.text is not None and error.text.strip() == "z = y << 3"
    assert "<<" in str(error)
    assert error.render().startswith(f"{module_file}:7:11: error: ")
    assert "    z = y << 3" in error.render()


def test_python_shows_refusal_at_the_user_line(tmp_path: Path) -> None:
    # Uncaught, the refusal is displayed by Python as a SyntaxError in the user's file.
    (tmp_path / "badmod.py").write_text(
        "import gradgen\n\n\n@gradgen.differentiable\ndef f(x):\n    return x << 3\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", "import badmod"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert completed.returncode == 1
    err = completed.stderr
    assert f'File "{tmp_path / "badmod.py"}", line 6' in err
    assert "    return x << 3\n" in err
    assert "GradgenError: the operator '<<' is not supported" in err


def test_refusal_position_in_indented_function(load, tmp_path: Path) -> None:
    source = (
        "import gradgen\n"  # 1
        "\n"  # 2
        "\n"  # 3
        "def outer():\n"  # 4
        "    @gradgen.differentiable\n"  # 5
        "    def f(x):\n"  # 6
        "        return x << 3\n"  # 7: the '<<' is at column 18
        "\n"
        "    return f\n"
    )
    module = load(source)
    with pytest.raises(gradgen.GradgenError) as info:
        module.outer()
    assert (info.value.lineno, info.value.offset) == (7, 18)


def test_every_problem_in_the_function_is_reported(load) -> None:
    source = (
        "import gradgen\n"
        "\n"
        "\n"
        "@gradgen.differentiable\n"
        "def f(x):\n"
        "    a = x << 2\n"  # 6
        "    b = foo(a)\n"  # 7
        "    return b\n"
    )
    with pytest.raises(gradgen.GradgenError) as info:
        load(source)
    assert [(d.line, d.column) for d in info.value.diagnostics] == [(6, 11), (7, 9)]


def test_function_without_source_file() -> None:
    namespace: dict[str, object] = {}
    code = compile("def h(x):\n    return x * x\n", "<no file behind this>", "exec")
    exec(code, namespace)
    with pytest.raises(gradgen.GradgenError) as info:
        gradgen.differentiable(namespace["h"])
    assert isinstance(info.value, SyntaxError)
    assert "no source" in str(info.value)
    assert "'h'" in str(info.value)


def test_lambda_is_refused_clearly(load) -> None:
    # gradgen reads 'def' functions; a lambda must be refused with a GradgenError, not
    # fail inside the decorator.
    with pytest.raises(gradgen.GradgenError) as info:
        load("""
            import gradgen

            square = gradgen.differentiable(lambda x: x * x)
            """)
    assert info.value.lineno == 4


def test_module_constant(load) -> None:
    module = load("""
        import gradgen

        EPS = 1e-3
        SCALE = 2.0 * EPS


        @gradgen.differentiable
        def f(x, y):
            return x * x * EPS + y * SCALE + x * y
        """)
    assert "EPS" in module.f.backward_source
    assert_gradients(module.f, (1.5, -0.5))
    assert module.f.backward(1.0, 0.0) == (2.0 * 1e-3, 2.0 * 1e-3 + 1.0)
    # Forward and backward read the same module global, so they stay consistent.
    module.EPS = 0.25
    assert_gradients(module.f, (1.5, -0.5))


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            f"C = {' + '.join(['1.0'] * 600)}\n\n\n@gradgen.differentiable\ndef f(x):\n"
            "    return x * C\n",
            id="module-constant-of-600-terms",
        ),
        pytest.param(
            f"@gradgen.differentiable\ndef f(x):\n    return {' + '.join(['x'] * 600)}\n",
            id="return-of-600-terms",
        ),
    ],
)
def test_deep_expressions(load, source: str) -> None:
    # Generated under the guard `gradgen` runs in (a large stack), module constants too.
    module = load("import gradgen\n\n" + source)
    assert module.f.backward(1.0) == 600.0


def test_from_import_without_module_import(load) -> None:
    # The backward of sin needs cos, which the module never imported.
    module = load("""
        from math import sin
        import gradgen


        @gradgen.differentiable
        def f(x):
            return sin(x) * x
        """)
    assert not hasattr(module, "math")
    assert not hasattr(module, "cos")
    assert_gradients(module.f, (0.5,))
    assert math.isclose(module.f.backward(0.5), math.sin(0.5) + 0.5 * math.cos(0.5))
    # The backward did not add names to the user's module.
    assert not hasattr(module, "math")


def test_aliased_from_import(load) -> None:
    module = load("""
        from math import exp as e
        from gradgen import differentiable


        @differentiable
        def f(x, y):
            return e(x * y)
        """)
    assert_gradients(module.f, (0.4, 1.2))


def test_decorated_function_inside_a_function(load) -> None:
    module = load("""
        import math
        import gradgen


        def make():
            @gradgen.differentiable
            def f(x, y):
                a = math.exp(x) * y
                return a * x
            return f
        """)
    try:
        f = module.make()
    except gradgen.GradgenError as error:
        # Refusing is acceptable, but only with a precise, readable reason.
        assert error.lineno is not None
        assert str(error).strip()
        return
    assert "def f_backward(x, y, dout=1.0):" in f.backward_source
    assert f(0.3, 2.0) == math.exp(0.3) * 2.0 * 0.3
    assert_gradients(f, (0.3, 2.0))


def test_several_decorated_functions_in_one_module(load) -> None:
    module = load("""
        import math
        import gradgen


        @gradgen.differentiable
        def f(x):
            return math.sin(x) * x


        @gradgen.differentiable
        def g(x, y):
            return math.cos(x * y)
        """)
    assert "def f_backward" in module.f.backward_source
    assert "def g_backward" in module.g.backward_source
    assert "g_backward" not in module.f.backward_source
    assert_gradients(module.f, (0.9,))
    assert_gradients(module.g, (0.9, -0.4))


def test_numpy_function(load) -> None:
    np = pytest.importorskip("numpy")
    module = load("""
        import numpy as np
        import gradgen


        @gradgen.differentiable
        def f(x, w):
            h = np.tanh(x * w)
            return h * x
        """)
    x = np.array([0.1, -0.5, 1.2])
    w = np.array([2.0, 0.3, -0.7])
    dx, dw = module.f.backward(x, w)
    h = np.tanh(x * w)
    np.testing.assert_allclose(dx, h + x * (1 - h**2) * w)
    np.testing.assert_allclose(dw, x * (1 - h**2) * x)


def test_wrt_given_as_one_string_is_one_name(load) -> None:
    module = load("""
        import gradgen


        @gradgen.differentiable(wrt="xw")
        def g(x, w, xw):
            return x * w * xw
        """)
    assert module.g.backward(2.0, 3.0, 5.0) == pytest.approx(6.0)  # d/dxw only, bare


@pytest.mark.usefixtures("fresh_gradgen_state")
def test_the_mappings_wrt_holds_whether_the_committed_file_is_current_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wrt = { loss = ["w"] }``: ``loss.backward`` returns ``dw`` alone from the committed
    file, and from the backward generated in memory when the file is missing or stale."""
    import importlib
    import warnings

    from gradgen.cli import main

    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[[tool.gradgen.files]]\nforward = "mapped_net.py"\n'
        'backward = "mapped_net_backward.py"\nwrt = { loss = ["w"] }\n',
        encoding="utf-8",
    )
    source = (
        "import numpy as np\nimport gradgen\n\n\n@gradgen.differentiable\n"
        "def loss(x, w):\n    return np.sum(np.tanh(x * w))\n"
    )
    (tmp_path / "mapped_net.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.3, -0.2])
    expected = x / np.cosh(x * w) ** 2

    def backward() -> object:
        sys.modules.pop("mapped_net", None)
        importlib.invalidate_caches()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module("mapped_net")
        return module.loss.backward(x, w)

    np.testing.assert_allclose(backward(), expected)  # no file yet
    assert main([]) == 0
    np.testing.assert_allclose(backward(), expected)  # the committed file
    (tmp_path / "mapped_net.py").write_text(source.replace("x * w", "w * x"), encoding="utf-8")
    np.testing.assert_allclose(backward(), expected)  # stale: generated in memory
    sys.modules.pop("mapped_net", None)
