"""Run from a source checkout: ``kapflow.workflows`` and ``kapflow.adapters`` found in the repository.

The repository keeps the shipped workflows and adapters in top-level ``workflows/``
and ``adapters/``, and setuptools installs them as ``kapflow.workflows`` and
``kapflow.adapters``. When the checkout's root is on ``sys.path`` (``python -m
pytest``, ``python -m kapflow``, an IDE, a debugger), ``import kapflow`` finds the
source ``kapflow/`` first, which has no such subpackages, and the installed mapping
is shadowed. This finder restores the mapping for exactly that case: it is installed
only when ``kapflow/`` has no ``workflows/`` beside its modules and the repository's
folders are there, and it answers only for those two names (their submodules are
found through the package's ``__path__`` as usual).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

MAPPED = ("workflows", "adapters")


class SourceTreeFinder(MetaPathFinder):
    """Finds ``kapflow.workflows`` and ``kapflow.adapters`` in a checkout's top-level folders."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "kapflow" or name not in MAPPED:
            return None
        folder = self.root / name
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


def install(package_dir: Path) -> None:
    """Add the finder when ``package_dir`` is a checkout's ``kapflow/`` (an installed one maps its own)."""
    if (package_dir / "workflows").is_dir():
        return
    root = package_dir.parent
    if not all((root / name / "__init__.py").is_file() for name in MAPPED):
        return
    if not any(isinstance(f, SourceTreeFinder) for f in sys.meta_path):
        sys.meta_path.append(SourceTreeFinder(root))
