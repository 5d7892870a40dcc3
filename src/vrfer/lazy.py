"""Names a package offers from its submodules, each loaded on first use: the one `__getattr__` / `__dir__` of
`vrfer` (the public API, so that `import vrfer` and `vrfer --help` do not load PyTorch) and `vrfer.faces`."""

from __future__ import annotations

import importlib


def lazy_names(package: str, namespace: dict, names: dict):
    """(__getattr__, __dir__) for a package: names maps a public name to "submodule" (the same name there) or to
    ("submodule", "attribute"). A loaded name becomes a plain attribute of the package."""
    def __getattr__(name):
        if name in names:
            where = names[name]
            module, attr = where if isinstance(where, tuple) else (where, name)
            value = getattr(importlib.import_module(f".{module}", package), attr)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
