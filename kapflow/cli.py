"""Placeholder; being written."""


def main() -> None:
    raise SystemExit("the kapflow CLI is being written")
