"""Command-line conventions shared by ``python -m golden`` and ``python -m hwgen``: options are
spelled out in full, and a bad argument is one line ``error: ...`` with exit status 2."""

from __future__ import annotations

import argparse
import sys

__all__ = ["Parser", "run"]


class Parser(argparse.ArgumentParser):
    """An argument parser without abbreviated options: ``--n`` would otherwise be taken
    silently for whichever option it prefixes (``--name``). Subcommands inherit the class."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``run(args)``; the exit status."""
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
