"""House rules that a test can check: layer boundaries and CLI help texts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer.main

PKG = Path(__file__).resolve().parents[1]
ALGORITHM_MODULES = [
    "image.py",
    "background.py",
    "photometry.py",
    "astrometry.py",
    "calibration.py",
    "variability.py",
    "stack.py",
    "pipeline/core.py",
    "pipeline/config.py",
    "pipeline/combine.py",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", ALGORITHM_MODULES)
def test_stage_modules_do_no_database_or_cli_io(name):
    path = PKG / name
    if not path.exists():
        pytest.fail(f"{name} is missing")
    bad = {
        m
        for m in _imports(path)
        if m.startswith(("photdb.db", "photdb.cli", "photdb.web", "photdb.archive", "psycopg"))
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def _walk(cmd, prefix: str = ""):
    # typer vendors its own click, so test by duck typing
    yield prefix or "photdb", cmd
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{prefix} {name}".strip())


def test_every_cli_command_has_help():
    from photdb.cli import _register, app

    _register()
    root = typer.main.get_command(app)
    seen = []
    for name, cmd in _walk(root):
        seen.append(name)
        assert (cmd.help or "").strip(), f"`{name}` has no help text"
        for param in cmd.params:
            if getattr(param, "param_type_name", "") == "option" and param.name != "help":
                assert (param.help or "").strip(), f"`{name} {param.opts[0]}` has no help text"
                # rich markup would swallow an unescaped [word] (e.g. a TOML section)
                assert not re.search(r"(?<!\\)\[[a-z_/]+\]", param.help), (name, param.help)
    assert {"db", "db init", "db url", "db start", "db stop", "db status"} <= set(seen)
