"""Command-line conventions shared by ``python -m golden``, ``python -m hwgen``,
``python -m sim.attention_check`` and the benchmark scripts: options are spelled out in full, a
bad argument (or a failed tool, :class:`CommandError`, or a file that cannot be written) is
one line ``error: ...`` with exit status 2, output files and folders are checked while
parsing, before any work (and made only when written, :func:`write_output`), and a reader that
stops early (``| head``) ends the command quietly."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["CommandError", "Parser", "check_output_folder", "output_file", "output_folder",
           "run", "write_output"]


class CommandError(Exception):
    """A failure that :func:`run` reports as one line ``error: ...`` with exit status 2, as it
    does a ValueError or TypeError: a synthesis or place-and-route tool that failed, say
    (:class:`hwgen.report.ToolError`)."""


class Parser(argparse.ArgumentParser):
    """An argument parser without abbreviated options: ``--n`` would otherwise be taken
    silently for whichever option it prefixes (``--name``). Subcommands inherit the class."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message):
        # argparse prints the whole usage block first; the conventions promise one line.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def output_file(value: str) -> Path:
    """``type=`` of an option that names a file to write. Checked at parse time, so that a path
    that cannot be written fails at once, not after the long work it would hold; its folder is
    made only when the file is written (:func:`write_output`)."""
    if not value:
        raise argparse.ArgumentTypeError("an empty name is not a file name")
    if value == "-":
        raise argparse.ArgumentTypeError("- (standard output) is not taken here; give a file "
                                         "name")
    path = Path(value)
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{value} is a folder; give a file name")
    except OSError as error:  # a name too long, say
        raise argparse.ArgumentTypeError(f"{value}: {error.strerror}") from None
    _checked(path.parent)
    return path


def output_folder(value: str) -> Path:
    """``type=`` of an option that names a folder to write into; checked at parse time, made by
    the command that writes into it."""
    return _checked(Path(value))


def _checked(folder: Path) -> Path:
    try:
        return check_output_folder(folder)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{folder}: {error.strerror}") from None


def check_output_folder(folder: str | Path) -> Path:
    """``folder`` if it is a folder that can be written, or one that can be made (its nearest
    existing ancestor is a writable folder); ValueError otherwise. Leaves nothing behind: the
    test creates and removes a temporary file in that folder, since permission bits do not
    tell (root passes ``os.access`` on /proc and read-only mounts)."""
    folder = Path(folder)
    nearest = next(f for f in (folder, *folder.parents) if os.path.lexists(f))
    if not nearest.is_dir():
        raise ValueError(f"{nearest} exists and is not a folder")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"cannot write to folder {folder} ({reason})" if nearest == folder else
                         f"cannot make folder {folder}: cannot write to folder {nearest} "
                         f"({reason})") from None
    return folder


def write_output(path: str | Path, text: str) -> None:
    """Write ``text`` to the file ``path``, making its folder when missing; a file it replaces
    is named on standard error, so that nothing is overwritten silently."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        print(f"replacing {path}", file=sys.stderr)
    path.write_text(text)


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``run(args)``; the exit status."""
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, CommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so that the flush at exit
        # cannot raise again, and stop with status 1 instead of a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:  # a file that the checks at parse time could not foresee
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
