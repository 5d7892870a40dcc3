"""The library stays readable: no function in src/vrfer longer than 80 lines (issue 22). A longer one is split
into steps named after what they do."""

from __future__ import annotations

import ast
from pathlib import Path

import vrfer

MAX_LINES = 80


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_the_check_finds_a_long_function(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n" + "    x = 1\n" * 90 + "\n\ndef g():\n    pass\n")
    assert long_functions(tmp_path / "pkg") == ["pkg/m.py:1 f (91 lines)"]


def test_no_library_function_is_longer_than_80_lines():
    assert long_functions(Path(vrfer.__file__).resolve().parent) == []
