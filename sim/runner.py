"""Build emitted Verilog with Verilator once per design, and run cocotb plans on it.

A *plan* is a list of stream segments (input words, expected output count, stall
probabilities, an optional reset point) run by the generic testbench :mod:`sim.tb_stream`;
the run returns what came out. Verilator models are cached under ``.cache/verilator`` (or
``$HWGEN_SIM_CACHE``) by a hash of the Verilog text and the tool versions, so each parameter
set is compiled once, also across test processes (a file lock serialises concurrent builds).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cocotb

from hwgen.verilog import emit

__all__ = ["VerilatorModel", "verilator_model", "run_plan", "cache_root"]

REPO = Path(__file__).resolve().parents[1]


def cache_root() -> Path:
    return Path(os.environ.get("HWGEN_SIM_CACHE", REPO / ".cache" / "verilator"))


def _verilator_version() -> str:
    exe = shutil.which("verilator")
    if exe is None:
        raise RuntimeError("verilator is not installed: run `make test` (it installs Debian's "
                           "verilator) or `apt-get install verilator`")
    return subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _get_runner():
    import warnings
    with warnings.catch_warnings():
        # cocotb 1.8 flags its runner API as experimental; that is known and accepted here.
        warnings.filterwarnings("ignore", message=".*experimental.*", category=UserWarning)
        from cocotb.runner import get_runner
    return get_runner("verilator")


@dataclass(frozen=True)
class VerilatorModel:
    name: str
    build_dir: Path
    core: object  #: the Amaranth component it was emitted from (for layouts, latency)


def verilator_model(core, name: str) -> VerilatorModel:
    """Emit ``core`` as module ``name`` and build it with Verilator (cached)."""
    text = emit(core, name)
    key = hashlib.sha256("\n".join([text, _verilator_version(), cocotb.__version__]).encode())
    build_dir = cache_root() / f"{name}-{key.hexdigest()[:16]}"
    with _locked(build_dir.with_suffix(".lock")):
        if not (build_dir / "built").exists():
            if build_dir.exists():
                shutil.rmtree(build_dir)
            build_dir.mkdir(parents=True)
            source = build_dir / f"{name}.v"
            source.write_text(text)
            print(f"sim: building Verilator model {build_dir.name}", file=sys.stderr)
            os.environ.setdefault("MAKEFLAGS", f"-j{os.cpu_count() or 1}")
            _get_runner().build(
                verilog_sources=[source], hdl_toplevel=name, build_dir=build_dir,
                build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style"])
            (build_dir / "built").touch()
    return VerilatorModel(name, build_dir, core)


def run_plan(model: VerilatorModel, segments: list[dict], work_dir: Path, *,
             test_module: str = "sim.tb_stream") -> list[dict]:
    """Run ``segments`` (see :mod:`sim.tb_stream`) on the model; return one result per segment."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_file, results_file = work_dir / "plan.json", work_dir / "results.json"
    plan_file.write_text(json.dumps({"segments": segments}))
    results_file.unlink(missing_ok=True)
    try:
        _get_runner().test(
            test_module=test_module, hdl_toplevel=model.name, hdl_toplevel_lang="verilog",
            build_dir=model.build_dir,
            test_dir=work_dir,
            extra_env={"HWGEN_PLAN": str(plan_file), "HWGEN_RESULTS": str(results_file)})
    except SystemExit as failure:  # cocotb reports a failed run by exiting
        raise AssertionError(f"cocotb run of {model.name} failed ({failure}); see the log above "
                             f"and {work_dir}") from None
    if not results_file.exists():
        raise AssertionError(f"cocotb run of {model.name} wrote no results ({work_dir})")
    return json.loads(results_file.read_text())["segments"]
