"""Command-line conventions shared by ``python -m golden``, ``python -m hwgen``,
``python -m sim.attention_check`` and the benchmark scripts: options are spelled out in full, a
bad argument is one line ``error: ...`` with exit status 2, output files and folders are checked
(and their folders made) while parsing, before any work, and a reader that stops early
(``| head``) ends the command quietly."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["Parser", "output_file", "output_folder", "run"]


class Parser(argparse.ArgumentParser):
    """An argument parser without abbreviated options: ``--n`` would otherwise be taken
    silently for whichever option it prefixes (``--name``). Subcommands inherit the class."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)


def output_file(value: str) -> Path:
    """``type=`` of an option that names a file to write. Its folder is made at parse time, so
    that a path that cannot be written fails at once, not after the long work it would hold."""
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a folder; give a file name")
    _make_folder(path.parent)
    return path


def output_folder(value: str) -> Path:
    """``type=`` of an option that names a folder to write into; made at parse time."""
    path = Path(value)
    _make_folder(path)
    return path


def _make_folder(folder: Path) -> None:
    nearest = next(f for f in (folder, *folder.parents) if f.exists())
    if not nearest.is_dir():
        raise argparse.ArgumentTypeError(f"{nearest} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot make folder {folder}: "
                                         f"{error.strerror or error}") from None
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write to folder {folder}")


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
