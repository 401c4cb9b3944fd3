"""House rules that a test can check: layer boundaries, no import loops, CLI help texts.

Every module of the package belongs to one layer (:data:`LAYERS`); a layer may import
only the layers listed for it. Imports inside functions count as much as those at the
top of a file. Tests are not modules of the package here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer.main

PKG = Path(__file__).resolve().parents[1]

#: layer -> the module paths (relative to the package, no ``.py``) or folder prefixes in it
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("__init__", "errors", "settings", "bands", "lightcurve"),
    "stage": (
        "fitting",
        "image",
        "background",
        "detection",
        "photometry",
        "astrometry",
        "propermotion",
        "matching",
        "stack",
        "pedestal",
        "calibration",
        "uncertainty",
        "absolute",
        "variability",
        "varstats",
        "newsources",
        "diffphot",
        "plot",
        "export",
    ),  # fmt: skip
    "sim": ("sim/",),
    "pipeline": ("pipeline/",),
    "db": ("db/",),
    "storage": (
        "survey/store",
        "survey/bookkeeping",
        "survey/queries",
        "survey/browse",
        "survey/claims",
    ),
    "archive": ("archive/",),
    "survey": ("survey/",),
    "api": ("api",),
    "web": ("web/",),
    "cli": ("cli/", "__main__"),
}

#: layer -> layers it may import (itself always included)
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "stage": {"foundation"},
    "sim": {"foundation", "stage"},
    "pipeline": {"foundation", "stage"},
    "db": {"foundation"},
    "storage": {"foundation", "db"},
    "archive": {"foundation", "db"},
    "survey": {"foundation", "stage", "sim", "pipeline", "db", "storage", "archive"},
    "api": {"foundation", "stage", "pipeline", "db", "storage", "archive", "survey"},
    "web": {"foundation", "stage", "pipeline", "db", "storage", "archive", "survey", "api"},
    "cli": {
        "foundation",
        "stage",
        "pipeline",
        "db",
        "storage",
        "archive",
        "survey",
        "api",
        "web",
        "sim",
    },  # fmt: skip
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (tests excluded)."""
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if "tests" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(["photdb", *parts])] = path
    return out


MODULES = _modules()


def _layer(module: str) -> str:
    path = MODULES[module].relative_to(PKG).with_suffix("").as_posix()
    for layer, members in reversed(LAYERS.items()):  # most specific (survey/ files) first
        for m in members:
            if (m.endswith("/") and path.startswith(m)) or path == m:
                if layer == "survey" and any(path == s for s in LAYERS["storage"]):
                    continue
                return layer
    raise AssertionError(f"{path}.py belongs to no layer: add it to LAYERS")


def _imports(module: str) -> set[str]:
    """photdb modules imported anywhere in ``module`` (function-level imports too)."""
    tree = ast.parse(MODULES[module].read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("photdb"):
                while name not in MODULES and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in MODULES and name != module:
                    found.add(name)
    return found


def _third_party(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    layer = _layer(module)
    allowed = ALLOWED[layer] | {layer}
    bad = sorted(m for m in _imports(module) if _layer(m) not in allowed)
    assert not bad, f"{module} ({layer}) imports {[(m, _layer(m)) for m in bad]}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in ("stage", "pipeline")))
def test_algorithms_touch_no_database(module):
    assert not {"psycopg", "yoyo"} & _third_party(module), f"{module} talks to a database"


def test_no_import_loops():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                loop = stack[stack.index(n) :] + [n]
                raise AssertionError("import loop: " + " -> ".join(loop))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


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
