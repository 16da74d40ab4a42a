"""The code's shape stays as README "How the code is laid out" says: floors, no import circles, ruff clean.

Dev tools only: import-linter and ruff are in the test extra, never needed to run the guardian.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import layers  # scripts/layers.py

ROOT = Path(__file__).resolve().parent.parent


def test_each_floor_imports_only_from_those_below_it(capsys, monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename="pyproject.toml", no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_no_import_circle_in_the_package_imports_inside_functions_included():
    assert layers.circles(layers.graph(ROOT)) == []


def test_the_circle_finder_sees_an_import_made_inside_a_function(tmp_path):
    package = tmp_path / "guardian"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from guardian import b\n")
    (package / "b.py").write_text("def later():\n    from guardian.a import thing\n")
    (package / "c.py").write_text("import guardian.a\n")
    assert layers.circles(layers.graph(tmp_path)) == [["guardian.a", "guardian.b"]]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "--no-cache", "guardian", "tests", "scripts"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
