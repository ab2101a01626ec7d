"""The layers hold: one place opens a store transaction, and the generic core names no KAP state, fact or field."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from kapflow.workflows.kap import KAP_PATHWAY

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "kapflow" / "app" / "runner.py"
STORE = ROOT / "kapflow" / "store"
# The core may choose the KAP pathway only where a practice's defaults are chosen.
MAY_NAME_KAP = {ROOT / "kapflow" / "config.py", ROOT / "kapflow" / "demo.py"}
# Words the engine itself speaks, which the KAP workflow uses too: the appointment facts' shape
# (their default kinds and fields), channels, and the keys of errors, logs and audit events.
GENERIC = {
    "appointment", "appointment_update", "kind", "starts_at", "minutes", "location", "action", "reason",
    "late_entry", "clinician", "room", "email", "name", "message", "method",
    "type",  # a member of every RFC 9457 problem details body (kapflow.http.problems)
    # Billing's words (kapflow.domain.billing): the fields of the charge and adjustment facts the engine
    # declares and posts, a payment's amount and purpose, the ledger's entries, a visit's billed minutes.
    "amount", "purpose", "payment", "charge", "billed_minutes", "code", "date_of_service", "description", "fee",
    "insurance", "modifiers", "service", "units", "visit",
    # ... and of the record of a superbill issued (kapflow.domain.superbill).
    "reference", "first", "last", "lines", "diagnoses", "charged", "paid", "balance", "issued_on",
    "basis", "total",  # ... and of a good faith estimate's (kapflow.domain.estimate)
    "completed", "plan",  # FHIR's codes for a CarePlan's status and intent (kapflow.billing_fhir)
    "state", "status",  # a case's state, a timer's status: the engine's words, also a US address's and a diagnosis's
}


def _python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _opens_a_transaction(tree: ast.AST) -> bool:
    """A call of ``<something>.write()`` with no arguments: the store's transaction entry."""
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "write"
        and not node.args and not node.keywords
        for node in ast.walk(tree)
    )


def test_only_the_command_runner_opens_a_store_transaction() -> None:
    """No module of kapflow, the workflows, the adapters or the examples calls ``store.write()`` but the runner."""
    openers = {
        path.relative_to(ROOT).as_posix()
        for path in _python_files("kapflow", "workflows", "adapters", "examples")
        if STORE not in path.parents and _opens_a_transaction(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert openers == {RUNNER.relative_to(ROOT).as_posix()}


def test_the_check_sees_a_transaction_opened_elsewhere() -> None:
    """The check above finds ``store.write()`` in code, so it can fail."""
    assert _opens_a_transaction(ast.parse("with engine.store.write() as uow:\n    uow.commit()\n"))
    assert not _opens_a_transaction(ast.parse("handle.write('text')\n"))


def kap_names() -> set[str]:
    """The KAP pathway's own states, triggers, fact kinds and fact fields."""
    wf = KAP_PATHWAY
    names = {s.name for s in wf.states} | {t.trigger for t in wf.transitions} | set(wf.facts)
    names |= {f.name for kind in wf.facts.values() for f in kind.spec.fields}
    return names - GENERIC


def test_the_generic_core_names_nothing_of_kap() -> None:
    """No string in kapflow/ (outside the default settings and the demo) is a KAP state, trigger, fact or field."""
    names = kap_names()
    found = []
    for path in _python_files("kapflow"):
        if path in MAY_NAME_KAP:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        found += [
            f"{path.relative_to(ROOT).as_posix()}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and node.value in names
        ]
    assert found == []


def test_kap_names_include_its_states_facts_and_fields() -> None:
    """The names checked for are KAP's own: the check cannot pass by looking for nothing."""
    names = kap_names()
    assert {"ready_for_kap", "dosing", "prescription", "vitals", "systolic", "first_name", "last_name"} <= names


def test_every_package_folder_is_installed() -> None:
    """Each folder with an __init__.py is listed in pyproject's packages (else installs lack it)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in (("kapflow", "kapflow"), ("workflows", "kapflow.workflows"), ("adapters", "kapflow.adapters")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert found == listed
