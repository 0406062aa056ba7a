"""store/ is the lowest layer: it imports nothing of the layers above it, and the normalised
Entry (store/entry.py), which ingest builds and store keeps, needs only the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.conftest import ROOT

ABOVE_STORE = ("ingest", "embed", "digest", "api", "worker")
STORE_FILES = sorted((ROOT / "store").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, by absolute name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                found.add(".".join([*package, *([node.module] if node.module else [])]))
            else:
                found.add(node.module)
    return found


def test_store_imports_nothing_from_the_layers_above():
    assert ROOT / "store" / "migrations" / "env.py" in STORE_FILES
    assert any(p.parent.name == "versions" for p in STORE_FILES)  # migrations included
    offending = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] in ABOVE_STORE)
        for path in STORE_FILES
    }
    assert not {path: modules for path, modules in offending.items() if modules}


def test_the_entry_module_needs_only_the_standard_library():
    modules = imported_modules(ROOT / "store" / "entry.py")
    assert modules and all(m.split(".")[0] in sys.stdlib_module_names or m == "__future__" for m in modules), modules
