"""The application layer: the ``Engine`` facade, its commands and queries, and the one command runner.

Only this package opens a store transaction, always through ``runner.CommandRunner``.
"""

from kapflow.app.engine import Engine

__all__ = ["Engine"]
