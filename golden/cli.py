"""Command-line conventions shared by ``python -m golden`` and ``python -m hwgen``: options are
spelled out in full, a bad argument is one line ``error: ...`` with exit status 2, and a reader
that stops early (``| head``) ends the command quietly."""

from __future__ import annotations

import argparse
import os
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
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so that the flush at exit
        # cannot raise again, and stop with status 1 instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
