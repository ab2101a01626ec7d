"""kapflow/cli/ is layered: groups import only the shared modules, nothing loops, no store or KAP inside."""

from __future__ import annotations

import ast
from pathlib import Path

import kapflow.cli

CLI = Path(kapflow.cli.__file__).parent
PACKAGE = "kapflow.cli"
SHARED = {f"{PACKAGE}.common", f"{PACKAGE}.render"}  # what every group may use
FORBIDDEN = ("kapflow.store", "kapflow.workflows.kap")


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, with ``from X import y`` counted as both X and X.y."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = PACKAGE.split(".")  # every module here is in kapflow.cli (or is it)
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(CLI.glob("*.py"))}
GROUPS = set(MODULES) - SHARED - {PACKAGE}


def _internal(name: str) -> set[str]:
    """The modules of kapflow/cli/ that ``name`` imports."""
    return {m for m in MODULES[name] if m in MODULES and m != name}


def test_the_package_has_the_expected_modules() -> None:
    """One module per command group, plus the shared ones and the app."""
    assert {m.removeprefix(f"{PACKAGE}.") for m in GROUPS} == {
        "cases", "appointments", "billing", "worker", "db", "workflow", "audit", "demo", "apikey", "user", "serve",
    }


def test_imports_among_the_cli_modules_form_no_cycle() -> None:
    """Following imports among kapflow.cli.* never leads back to where it started."""
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in _internal(name):
            visit(imported, (*path, name))
        done.add(name)

    for name in MODULES:
        visit(name, ())


def test_group_modules_import_only_the_shared_modules() -> None:
    """No group imports kapflow.cli itself or another group; the shared modules import no group."""
    for group in GROUPS:
        assert _internal(group) <= SHARED, group
        assert PACKAGE not in MODULES[group], f"{group} imports {PACKAGE}"
    for shared in SHARED:
        assert not _internal(shared) & (GROUPS | {PACKAGE}), shared


def test_nothing_in_the_cli_imports_the_store_or_the_kap_workflow() -> None:
    """The command line reaches the database through the Engine and the composition root, and knows no workflow."""
    for name, imported in MODULES.items():
        bad = sorted(m for m in imported if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN))
        assert not bad, f"{name} imports {bad}"
