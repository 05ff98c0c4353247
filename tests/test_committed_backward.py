"""``@gradgen.differentiable`` runs the committed (reviewed) backward file when its
digest matches the function, and warns (or, strict, raises) and generates in memory when it
is stale or missing; an unmapped function is generated in memory silently.

Every test builds its own project in ``tmp_path``; gradgen's per-process caches of configs,
committed modules and warned files are replaced by empty ones for each test.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import gradgen
import gradgen.cli
from gradgen import decorator
from gradgen.config import find_config
from review_project import (
    EDIT_F,
    EDIT_G,
    NET,
    assert_gradients,
    central_differences,
    edit,
    header,
    import_file,
    import_recording_warnings,
    make_project,
    stale_warnings,
    write,
)

pytestmark = pytest.mark.usefixtures("fresh_gradgen_state")


# --- the decorator runs the reviewed file --------------------------------------------------


def plant_marker(backward_file: Path) -> None:
    """Make the committed f_backward distinguishable without touching the header."""
    text = backward_file.read_text()
    head = header(text)
    assert text.count("    return dx, dy\n") == 1
    backward_file.write_text(text.replace("    return dx, dy\n", "    return dx + 1000.0, dy\n"))
    assert header(backward_file.read_text()) == head


def assert_runs_committed_code(f: Callable[..., float], backward_file: Path) -> None:
    dx, dy = f.backward(0.3, -0.7)  # type: ignore[attr-defined]
    ex, ey = central_differences(f, (0.3, -0.7))
    assert math.isclose(dx, ex + 1000.0, rel_tol=1e-9)
    assert math.isclose(dy, ey, rel_tol=1e-6)
    source = inspect.getsource(f.backward)  # type: ignore[attr-defined]
    assert source.startswith("def f_backward(x, y, dout=1.0):")
    assert "return dx + 1000.0, dy" in source
    assert f.backward_source.startswith(source)  # type: ignore[attr-defined]
    source_file = inspect.getsourcefile(f.backward)  # type: ignore[attr-defined]
    assert source_file is not None
    assert Path(source_file).resolve() == backward_file.resolve()


def test_decorator_runs_the_committed_backward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    committed = tmp_path / "generated" / "net.py"
    plant_marker(committed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # found from the function's file, not the current folder

    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    assert stale_warnings(caught) == []
    assert_runs_committed_code(module.f, committed)
    assert module.g.backward_source.startswith(inspect.getsource(module.g.backward))
    assert_gradients(module.g, (0.4,))
    a = 0.3 * -0.7
    assert module.f(0.3, -0.7) == pytest.approx(a + math.tanh(a) * 0.3)  # forward untouched


def test_generated_argument_names_the_committed_file_without_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "demo"\n')
    forward = write(
        tmp_path / "pkg" / "net.py",
        NET.replace(
            "@gradgen.differentiable\ndef f",
            '@gradgen.differentiable(generated="../reviewed/net_backward.py")\ndef f',
        ),
    )
    monkeypatch.chdir(tmp_path)
    assert run("pkg/net.py", "-o", "reviewed/net_backward.py")[0] == 0
    committed = tmp_path / "reviewed" / "net_backward.py"
    plant_marker(committed)
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # generated= is relative to the forward file, not to here

    module, caught = import_recording_warnings(forward)

    assert stale_warnings(caught) == []
    assert_runs_committed_code(module.f, committed)
    # g has no generated= and there is no config: generated in memory, silently.
    assert "1000" not in module.g.backward_source
    assert_gradients(module.g, (0.4,))


# --- stale committed files -----------------------------------------------------------------


def generated_and_edited_project(root: Path, run, net: str = NET) -> Path:
    """A configured project whose committed backward is then made stale for f and g."""
    make_project(root)
    forward = write(root / "models" / "net.py", net)
    assert run()[0] == 0  # the caller has changed into root
    plant_marker(root / "generated" / "net.py")
    edit(forward, *EDIT_F)
    edit(forward, *EDIT_G)
    return forward


def test_stale_file_warns_once_and_generates_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(tmp_path, run)
    monkeypatch.chdir(tmp_path / "models")

    module, caught = import_recording_warnings(forward)

    (message,) = stale_warnings(caught)  # one warning for the file, though f and g are stale
    assert "generated/net.py" in message
    assert "gradgen models/net.py -o generated/net.py" in message
    assert "1000" not in module.f.backward_source
    assert_gradients(module.f, (0.3, -0.7))  # the edited f, not the committed backward
    assert_gradients(module.g, (0.4,))
    assert module.f.backward.__code__.co_filename.startswith("<gradgen")


def test_each_stale_file_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    make_project(tmp_path)
    second = write(tmp_path / "models" / "net2.py", NET)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    edit(tmp_path / "models" / "net.py", *EDIT_F)
    edit(second, *EDIT_F)

    _, caught = import_recording_warnings(tmp_path / "models" / "net.py")
    _, caught_2 = import_recording_warnings(second)
    _, caught_again = import_recording_warnings(tmp_path / "models" / "net.py")

    assert len(stale_warnings(caught)) == 1
    (message,) = stale_warnings(caught_2)
    assert "gradgen models/net2.py -o generated/net2.py" in message
    assert stale_warnings(caught_again) == []  # once per file per process


@pytest.mark.parametrize("form", ["@gradgen.differentiable", "@gradgen.differentiable()"])
def test_stale_warning_points_at_the_forward_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, form: str
) -> None:
    # Python shows a warning once per (file, line) it is attributed to: attributed to a line
    # of gradgen, the first stale file's warning would hide every later one, and users could
    # not filter the warnings of their own modules.
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path, run, NET.replace("@gradgen.differentiable\ndef f", f"{form}\ndef f")
    )

    _, caught = import_recording_warnings(forward)

    (warning,) = [w for w in caught if issubclass(w.category, gradgen.StaleBackwardWarning)]
    assert Path(warning.filename).resolve() == forward.resolve()


def test_strict_argument_makes_stale_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path,
        run,
        NET.replace(
            "@gradgen.differentiable\ndef f", "@gradgen.differentiable(strict=True)\ndef f"
        ),
    )

    with pytest.raises(
        gradgen.StaleBackwardError, match=re.escape("gradgen models/net.py -o generated/net.py")
    ):
        import_file(forward)


def test_strict_environment_variable_makes_stale_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(tmp_path, run)
    monkeypatch.setenv("GRADGEN_STRICT", "1")

    with pytest.raises(gradgen.StaleBackwardError, match=re.escape("generated/net.py")):
        import_file(forward)


def test_strict_false_overrides_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    forward = generated_and_edited_project(
        tmp_path,
        run,
        NET.replace(
            "@gradgen.differentiable\ndef f", "@gradgen.differentiable(strict=False)\ndef f"
        ).replace("@gradgen.differentiable\ndef g", "@gradgen.differentiable(strict=False)\ndef g"),
    )
    monkeypatch.setenv("GRADGEN_STRICT", "1")

    module, caught = import_recording_warnings(forward)

    assert len(stale_warnings(caught)) == 1
    assert_gradients(module.f, (0.3, -0.7))


def test_missing_committed_file_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")  # paths are shown relative to the project

    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    (message,) = stale_warnings(caught)
    assert "generated/net.py" in message
    assert "gradgen models/net.py -o generated/net.py" in message
    assert not (tmp_path / "generated").exists()  # the decorator never writes
    assert_gradients(module.f, (0.3, -0.7))
    assert_gradients(module.g, (0.4,))

    monkeypatch.setenv("GRADGEN_STRICT", "1")
    monkeypatch.setattr(decorator, "_WARNED", set())
    with pytest.raises(gradgen.StaleBackwardError):
        import_file(tmp_path / "models" / "net.py")


def _nothing_generated(root: Path, run) -> None:
    make_project(root)


def _forward_edited(root: Path, run) -> None:
    generated_and_edited_project(root, run)


def _function_added(root: Path, run) -> None:
    make_project(root)
    assert run()[0] == 0
    added = NET.replace("@gradgen.differentiable\ndef f", "@gradgen.differentiable\ndef f0")
    write(root / "models" / "net.py", NET + "\n\n" + added.split("import gradgen\n")[1])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            _nothing_generated,
            "generated/net.py does not exist yet for f (the file has not been generated); "
            "generate it from ",
            id="missing-file",
        ),
        pytest.param(
            _forward_edited,
            "generated/net.py is stale for f (its forward source changed since the file was "
            "generated); regenerate it from ",
            id="stale-file",
        ),
        pytest.param(
            _function_added,
            "generated/net.py has no backward for f0 (the function is newer than the file); "
            "regenerate it from ",
            id="function-newer-than-the-file",
        ),
    ],
)
def test_why_the_committed_file_cannot_be_used(
    make: Callable[..., None], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path, run)

    _, caught = import_recording_warnings(tmp_path / "models" / "net.py")

    (message,) = stale_warnings(caught)
    assert message.startswith(expected), message
    assert message.endswith(": gradgen models/net.py -o generated/net.py"), message


def test_regenerated_file_is_used_after_reimport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    # A session that imports, edits the forward, regenerates and imports again (as in a
    # notebook with importlib.reload) must get the new committed backward, not the old one.
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    forward = tmp_path / "models" / "net.py"
    first, _ = import_recording_warnings(forward)
    assert_gradients(first.f, (0.3, -0.7))

    edit(forward, *EDIT_F)
    assert run()[0] == 0
    second, caught = import_recording_warnings(forward)

    assert stale_warnings(caught) == []
    assert "* 3.0" in second.f.backward_source
    assert_gradients(second.f, (0.3, -0.7))


# --- no configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pyproject",
    [
        pytest.param(None, id="no-pyproject"),
        pytest.param('[project]\nname = "demo"\n', id="no-tool-gradgen"),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "other"\nbackward = "generated"\n',
            id="file-not-mapped",
        ),
    ],
)
def test_unmapped_function_is_generated_in_memory_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyproject: str | None
) -> None:
    if pyproject is not None:
        write(tmp_path / "pyproject.toml", pyproject)
        (tmp_path / "other").mkdir()
    else:
        assert find_config(tmp_path) is None
    forward = write(tmp_path / "models" / "net.py", NET)
    monkeypatch.chdir(tmp_path)

    module, caught = import_recording_warnings(forward)

    assert [str(w.message) for w in caught] == []
    assert module.f.backward_source.startswith("def f_backward(x, y, dout=1.0):")
    assert module.f.backward.__code__.co_filename.startswith("<gradgen")
    assert_gradients(module.f, (0.3, -0.7))
    assert_gradients(module.g, (0.4,))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["models", *(["pyproject.toml", "other"] if pyproject else [])]
    )


# --- f.value_and_grad with a committed file --------------------------------------------------


def test_value_and_grad_is_generated_at_its_first_call_when_the_file_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    committed = tmp_path / "generated" / "net.py"
    assert "def f_value_and_grad(" not in committed.read_text()
    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")
    assert stale_warnings(caught) == []
    assert Path(inspect.getsourcefile(module.f.backward) or "").resolve() == committed.resolve()
    value, (dx, dy) = module.f.value_and_grad(0.3, -0.7)
    assert value == module.f(0.3, -0.7)
    assert (dx, dy) == pytest.approx(module.f.backward(0.3, -0.7), rel=1e-12)
    value, (dx, dy) = module.f.value_and_grad(0.3, -0.7, dout=2.0)
    assert (dx, dy) == pytest.approx(module.f.backward(0.3, -0.7, dout=2.0), rel=1e-12)
    assert module.f.value_and_grad.__qualname__ == "f.value_and_grad"


def test_value_and_grad_is_the_committed_one_when_the_mapping_asks_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    with (tmp_path / "pyproject.toml").open("a") as config:
        config.write("value_and_grad = true\n")
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    committed = tmp_path / "generated" / "net.py"
    assert "# Command: gradgen models/net.py -o generated/net.py --value-and-grad" in (
        committed.read_text()
    )
    module, caught = import_recording_warnings(tmp_path / "models" / "net.py")
    assert stale_warnings(caught) == []
    source_file = inspect.getsourcefile(module.f.value_and_grad)
    assert Path(source_file or "").resolve() == committed.resolve()
    value, (dx, dy) = module.f.value_and_grad(0.3, -0.7)
    assert value == module.f(0.3, -0.7)
    assert (dx, dy) == pytest.approx(module.f.backward(0.3, -0.7), rel=1e-12)
    assert inspect.getsource(module.f.value_and_grad) in module.f.backward_source


def test_value_and_grad_of_a_file_edited_since_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    # Generated from the edited text, it would be the gradient of other code than runs.
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    module, _ = import_recording_warnings(tmp_path / "models" / "net.py")
    edit(tmp_path / "models" / "net.py", *EDIT_F)
    with pytest.raises(gradgen.StaleBackwardError, match="changed since f was decorated"):
        module.f.value_and_grad(0.3, -0.7)
