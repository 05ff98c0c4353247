"""``[tool.gradgen]`` in ``pyproject.toml``: a project maps forward files to committed
backward files. A bare ``gradgen`` regenerates every mapping and ``gradgen --check`` verifies
them, from any folder of the project; sources on the command line override the config, and
a bad config is a usage error.

Every test builds its own project in ``tmp_path``; gradgen's per-process caches of configs,
committed modules and warned files are replaced by empty ones for each test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradgen.config import find_config
from review_project import (
    EDIT_F,
    OTHER,
    PYPROJECT,
    edit,
    expected_output,
    functions,
    make_project,
    snapshot,
    write,
)

pytestmark = pytest.mark.usefixtures("fresh_gradgen_state")


# --- configuration discovery ---------------------------------------------------------------


def test_bare_gradgen_from_a_subfolder_regenerates_every_mapped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")

    status, out, err = run()

    assert status == 0, err
    assert out == ""
    files = snapshot(tmp_path)
    assert sorted(files) == [
        "generated/net.py",
        "generated/sub/layer.py",
        "models/net.py",
        "models/sub/layer.py",
        "pyproject.toml",
    ]
    # Paths in the output are relative to pyproject.toml, not to the current folder.
    assert files["generated/net.py"].decode() == expected_output(
        tmp_path, "models/net.py", "generated/net.py"
    )
    assert files["generated/sub/layer.py"].decode() == expected_output(
        tmp_path, "models/sub/layer.py", "generated/sub/layer.py"
    )


def test_check_from_a_subfolder_passes_then_fails_with_a_diff_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path / "models" / "sub")
    assert run()[0] == 0

    assert run("--check") == (0, "", "")

    edit(tmp_path / "models" / "net.py", *EDIT_F)
    before = snapshot(tmp_path)
    status, out, err = run("--check")

    assert status == 1
    assert "--- generated/net.py (current)" in out
    assert "+++ generated/net.py (gradgen)" in out
    assert re.search(r"^-#   f: [0-9a-f]{16}$", out, re.MULTILINE)
    assert re.search(r"^\+#   f: [0-9a-f]{16}$", out, re.MULTILINE)
    assert "layer.py" not in out  # the current file is not reported
    assert "generated/net.py" in err
    assert snapshot(tmp_path) == before


def test_file_to_file_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[[tool.gradgen.files]]\nforward = "a.py"\nbackward = "gen/a_backward.py"\n',
    )
    write(tmp_path / "a.py", OTHER)
    write(tmp_path / "docs" / "README.txt", "not a project folder\n")
    monkeypatch.chdir(tmp_path / "docs")

    assert run()[0] == 0

    target = tmp_path / "gen" / "a_backward.py"
    assert target.read_text() == expected_output(tmp_path, "a.py", "gen/a_backward.py")
    assert sorted(snapshot(tmp_path)) == [
        "a.py",
        "docs/README.txt",
        "gen/a_backward.py",
        "pyproject.toml",
    ]
    assert run("--check") == (0, "", "")
    edit(tmp_path / "a.py", "x * y + y", "x * y + x")
    status, out, _ = run("--check")
    assert status == 1
    assert "--- gen/a_backward.py (current)" in out


def test_every_entry_of_the_config_is_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    with (tmp_path / "pyproject.toml").open("a") as config:
        config.write('\n[[tool.gradgen.files]]\nforward = "other.py"\nbackward = "other_bw.py"\n')
    write(tmp_path / "other.py", OTHER)
    monkeypatch.chdir(tmp_path)

    assert run()[0] == 0

    assert (tmp_path / "generated" / "net.py").is_file()
    assert (tmp_path / "generated" / "sub" / "layer.py").is_file()
    assert (tmp_path / "other_bw.py").read_text() == expected_output(
        tmp_path, "other.py", "other_bw.py"
    )


# --- overlapping mappings: the most specific wins -------------------------------------------


def append_mapping(root: Path, entry: str) -> None:
    with (root / "pyproject.toml").open("a") as config:
        config.write("\n[[tool.gradgen.files]]\n" + entry)


def test_a_file_mapping_inside_a_mapped_folder_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    """A file of a mapped folder mapped on its own, to the same place, with a wrt of its own:
    generated once, as its own mapping says (it was two jobs writing one file: a usage
    error), and the folder's other files as the folder's mapping says."""
    make_project(tmp_path)
    append_mapping(
        tmp_path, 'forward = "models/net.py"\nbackward = "generated/net.py"\nwrt = { f = ["x"] }\n'
    )
    monkeypatch.chdir(tmp_path)

    status, _, err = run()

    assert status == 0, err
    net = (tmp_path / "generated" / "net.py").read_text()
    assert "# Command: gradgen models/net.py -o generated/net.py --wrt f=x\n" in net
    assert functions(net)["f_backward"].endswith("    return dx")  # x's gradient alone
    assert (tmp_path / "generated" / "sub" / "layer.py").read_text() == expected_output(
        tmp_path, "models/sub/layer.py", "generated/sub/layer.py"
    )
    assert run("--check") == (0, "", "")
    config = find_config(tmp_path)
    assert config is not None
    # The decorator finds the committed file through the same mappings.
    assert config.backward_for(tmp_path / "models" / "net.py") == tmp_path / "generated" / "net.py"


def test_the_folder_mapping_leaves_a_file_mapped_elsewhere_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    append_mapping(tmp_path, 'forward = "models/net.py"\nbackward = "net_backward.py"\n')
    monkeypatch.chdir(tmp_path)

    assert run()[0] == 0

    assert sorted(snapshot(tmp_path)) == [
        "generated/sub/layer.py",
        "models/net.py",
        "models/sub/layer.py",
        "net_backward.py",
        "pyproject.toml",
    ]
    assert (tmp_path / "net_backward.py").read_text() == expected_output(
        tmp_path, "models/net.py", "net_backward.py"
    )
    config = find_config(tmp_path)
    assert config is not None
    assert config.backward_for(tmp_path / "models" / "net.py") == tmp_path / "net_backward.py"


def test_a_subfolder_mapped_apart_from_its_parent_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    # Listed before the folder holding it: the order of the entries does not matter.
    write(
        tmp_path / "pyproject.toml",
        '[[tool.gradgen.files]]\nforward = "models/sub"\nbackward = "paired"\npairs = true\n\n'
        + PYPROJECT.split("\n\n", 1)[1],
    )
    monkeypatch.chdir(tmp_path)

    assert run()[0] == 0

    assert sorted(p for p in snapshot(tmp_path) if not p.startswith("models/")) == [
        "generated/net.py",
        "paired/layer.py",
        "pyproject.toml",
    ]
    paired = (tmp_path / "paired" / "layer.py").read_text()
    assert "# Command: gradgen models/sub/layer.py -o paired/layer.py --pairs\n" in paired
    assert "def h_forward(x):" in paired
    assert run("--check") == (0, "", "")


# --- a mapped folder that is a package --------------------------------------------------------

PACKAGE_PYPROJECT = """\
[project]
name = "demo"

[[tool.gradgen.files]]
forward = "src/nets"
backward = "src/generated"
"""

MODEL = """\
import numpy as np

from .layers import affine


def model_loss(x, w, b):
    return np.sum(affine(x, w, b) ** 2)
"""

AFFINE = "def affine(x, w, b):\n    return x @ w + b\n"


@pytest.mark.parametrize(
    "init",
    [
        pytest.param("", id="empty"),
        pytest.param('from .model import model_loss\n\n__all__ = ["model_loss"]\n', id="imports"),
    ],
)
def test_a_mapped_package_leaves_out_its_init(
    init: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    """Every package has an ``__init__.py``, most with no function: not a forward file, so
    nothing is generated for it, and ``--check`` asks for nothing; a file left over in the
    output folder (generated for it once) is left alone, as for a deleted forward file."""
    write(tmp_path / "pyproject.toml", PACKAGE_PYPROJECT)
    write(tmp_path / "src" / "nets" / "__init__.py", init)
    write(tmp_path / "src" / "nets" / "layers.py", AFFINE)
    write(tmp_path / "src" / "nets" / "model.py", MODEL)
    write(tmp_path / "src" / "nets" / "constants.py", "EPS = 1e-8\n")
    monkeypatch.chdir(tmp_path)

    status, _, err = run()

    assert status == 0, err
    assert "error" not in err
    generated = sorted(p for p in snapshot(tmp_path) if p.startswith("src/generated/"))
    assert generated == ["src/generated/layers.py", "src/generated/model.py"]
    assert run("--check") == (0, "", "")
    leftover = write(tmp_path / "src" / "generated" / "__init__.py", "# generated once\n")
    assert run("--check") == (0, "", "")
    assert run()[0] == 0
    assert leftover.read_text() == "# generated once\n"


def test_a_mapped_package_split_by_a_file_mapping_leaves_out_its_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    """A file of the package mapped on its own: the folder is read file by file
    (``Config.mappings``), with the same files left out."""
    write(tmp_path / "pyproject.toml", PACKAGE_PYPROJECT)
    append_mapping(tmp_path, 'forward = "src/nets/model.py"\nbackward = "model_backward.py"\n')
    write(tmp_path / "src" / "nets" / "__init__.py", "")
    write(tmp_path / "src" / "nets" / "layers.py", AFFINE)
    write(tmp_path / "src" / "nets" / "model.py", MODEL)
    monkeypatch.chdir(tmp_path)

    status, _, err = run()

    assert status == 0, err
    config = find_config(tmp_path)
    assert config is not None
    assert [m.forward.name for m in config.mappings] == ["layers.py", "model.py"]
    assert (tmp_path / "model_backward.py").is_file()
    assert run("--check") == (0, "", "")


# --- the command line overrides the config -------------------------------------------------


def test_sources_on_the_command_line_override_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    write(tmp_path / "other.py", OTHER)
    monkeypatch.chdir(tmp_path)

    status, _, err = run("other.py", "-o", "x.py")

    assert status == 0, err
    assert not (tmp_path / "generated").exists()
    assert sorted(snapshot(tmp_path)) == [
        "models/net.py",
        "models/sub/layer.py",
        "other.py",
        "pyproject.toml",
        "x.py",
    ]
    assert (tmp_path / "x.py").read_text() == expected_output(tmp_path, "other.py", "x.py")
    # --check with SRC checks only that output, not the configured (missing) ones.
    assert run("--check", "other.py", "-o", "x.py") == (0, "", "")


def test_a_file_on_the_command_line_written_where_its_mapping_puts_it_is_generated_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    """`gradgen models -o generated` writes what a bare `gradgen` writes: the mapping's
    wrt for the files it maps; elsewhere, or with --wrt, the command line says."""
    make_project(tmp_path)
    append_mapping(
        tmp_path, 'forward = "models/net.py"\nbackward = "generated/net.py"\nwrt = { f = ["x"] }\n'
    )
    monkeypatch.chdir(tmp_path)
    assert run()[0] == 0
    configured = (tmp_path / "generated" / "net.py").read_text()

    assert run("--check", "models", "-o", "generated") == (0, "", "")
    assert run("models/net.py", "-o", "generated/net.py")[0] == 0
    assert (tmp_path / "generated" / "net.py").read_text() == configured
    # Written elsewhere: no mapping says how.
    assert run("models/net.py", "-o", "elsewhere.py")[0] == 0
    assert "--wrt" not in (tmp_path / "elsewhere.py").read_text()
    # --wrt on the command line still wins.
    assert run("models/net.py", "-o", "generated/net.py", "--wrt", "f=y")[0] == 0
    assert "--wrt f=y" in (tmp_path / "generated" / "net.py").read_text()


# --- usage errors --------------------------------------------------------------------------


def test_no_config_and_no_sources_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "demo"\n')
    write(tmp_path / "a.py", OTHER)
    monkeypatch.chdir(tmp_path)
    assert find_config(tmp_path) is None

    status, out, err = run()

    assert status == 2
    assert out == ""
    assert "[tool.gradgen]" in err
    assert sorted(snapshot(tmp_path)) == ["a.py", "pyproject.toml"]
    assert run("--check")[0] == 2


def test_output_without_sources_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run
) -> None:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)

    status, _, err = run("-o", "out")

    assert status == 2
    assert "-o" in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "generated").exists()


@pytest.mark.parametrize(
    "config, named",
    [
        pytest.param(
            '[tool.gradgen]\nbogus = 1\n\n[[tool.gradgen.files]]\nforward = "models"\n'
            'backward = "generated"\n',
            "bogus",
            id="unknown-key",
        ),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "models"\nbackward = "generated"\nbackwards = "x"\n',
            "backwards",
            id="unknown-entry-key",
        ),
        pytest.param(
            '[[tool.gradgen.files]]\nforward = "modles"\nbackward = "generated"\n',
            "modles",
            id="missing-forward",
        ),
        pytest.param('[[tool.gradgen.files]]\nforward = "models"\n', "backward", id="no-backward"),
    ],
)
def test_bad_config_is_a_usage_error_naming_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run, config: str, named: str
) -> None:
    make_project(tmp_path)
    write(tmp_path / "pyproject.toml", config)
    monkeypatch.chdir(tmp_path / "models")

    for argv in ([], ["--check"]):
        status, out, err = run(*argv)
        assert status == 2
        assert out == ""
        assert "pyproject.toml" in err
        assert named in err
    assert not (tmp_path / "generated").exists()
