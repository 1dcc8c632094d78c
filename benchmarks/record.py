"""What the benchmark scripts share: the repository on ``sys.path`` (so that a script run as
``python benchmarks/NAME.py`` imports ``golden`` and ``hwgen``), a command line whose ``--out``
defaults to ``build/benchmarks/NAME.json``, and the JSON record they write, which starts with
the command that made it and the git commit of the code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from golden.cli import Parser, output_file, write_output  # noqa: E402  (needs the path above)
from hwgen.report import source_commit  # noqa: E402


def parser(script: str, doc: str) -> argparse.ArgumentParser:
    """The parser of benchmark ``script`` (its ``__file__``), described by the first paragraph
    of ``doc``, with ``--out``; options are spelled out and help shows their defaults."""
    name = Path(script).stem
    p = Parser(prog=f"benchmarks/{name}.py", description=" ".join(doc.split("\n\n")[0].split()),
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=str(REPO / "build" / "benchmarks" / f"{name}.json"),
                   type=output_file, help="JSON file to write")
    return p


def write(p: argparse.ArgumentParser, args: argparse.Namespace, argv, result: dict) -> None:
    """Write ``result`` to ``args.out``, headed by the command line (``argv``, or the process's
    arguments when it is None)."""
    out = Path(args.out)  # checked when the command line was parsed; its folder is made here
    command = " ".join([p.prog, *(sys.argv[1:] if argv is None else argv)])
    write_output(out, json.dumps({"command": command, "commit": source_commit(), **result},
                                 indent=2) + "\n")
    print(f"wrote {out}")
