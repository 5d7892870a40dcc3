"""The package's import graph: no module imports another that (directly or through others) imports it back,
counting imports inside functions too (they run later, but a cycle there is the same tangle); every module
imports on its own in a fresh interpreter; `import vrfer` and the CLI's --help do not load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vrfer

PACKAGE = Path(vrfer.__file__).resolve().parent


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the vrfer modules it imports anywhere in its source (relative or absolute)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    if target in mods and target != m:
                        graph[m].add(target)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods and a.name != m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_imports_it_should():
    g = import_graph()
    assert "vrfer.inference.pipeline" in g["vrfer.recognizer"] and "vrfer.inference.loader" in g["vrfer.inference.pipeline"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = [m for m in modules() if not m.endswith("__main__")]
    code = ("import importlib, subprocess, sys\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    bad += [f'{m}: {r.stderr.strip().splitlines()[-1]}'] if r.returncode else []\n"
            "print('\\n'.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_import_vrfer_and_the_cli_help_do_not_load_torch():
    code = "import sys, vrfer, vrfer.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom vrfer.cli import main\ntry:\n    main(['--help'])\n"
                        "except SystemExit:\n    pass\nprint('torch' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip().endswith("False"), r.stdout[-300:] + r.stderr[-300:]


def test_the_public_api_is_importable_from_the_top_and_is_the_modules_own():
    import importlib
    from vrfer import Recognizer, load_model  # noqa: F401  (the form a user writes)
    for name, (module, attr) in vrfer._API.items():
        assert getattr(vrfer, name) is getattr(importlib.import_module(f"vrfer.{module}"), attr), name
        assert name not in {m.rsplit(".", 1)[-1] for m in modules()}, f"{name} is also a submodule's name"
    assert set(vrfer.__all__) == {"CLASSES", "VrferError", "__version__", *vrfer._API} and "Recognizer" in dir(vrfer)
    with pytest.raises(AttributeError):
        vrfer.no_such_name  # noqa: B018
