"""``python -m canarystream``: the command-line interface."""

from canarystream.cli import main

main()
