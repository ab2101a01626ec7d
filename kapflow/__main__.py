"""``python -m kapflow``: the same command line as the ``kapflow`` script."""

from kapflow.cli import main

main()
