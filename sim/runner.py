"""Build emitted Verilog with Verilator once per design, and run cocotb plans on it.

A *plan* is a list of stream segments (input words, expected output count, stall
probabilities, an optional reset point) run by the generic testbench :mod:`sim.tb_stream`;
the run returns what came out. Verilator models are cached under ``.cache/verilator`` (or
``$HWGEN_SIM_CACHE``) by a hash of the Verilog text and the tool versions, so each parameter
set is compiled once, also across test processes (a file lock serialises concurrent builds).

``verilator_model(..., hdl_clock=True)`` wraps the core in a module that makes its own clock
(``always #5 clk = ~clk``, built with ``--timing``): the clock then costs no Python per cycle,
and a testbench that waits for events rather than for every edge (the ``skip_idle`` segments of
:mod:`sim.tb_stream`) runs long computing phases at Verilator's speed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cocotb
from amaranth import Shape
from amaranth.lib.wiring import In

from hwgen.verilog import emit

from .tb_stream import PERIOD_NS

__all__ = ["VerilatorModel", "verilator_model", "plan_segment", "run_plan", "cache_root"]

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
    hdl_clock: bool = False  #: the model drives its own clock (period 10 ns)


def _clock_wrapper(core, name: str, inner: str, inner_text: str) -> str:
    """A module ``name`` with the ports of ``core`` except ``clk``, which it drives itself
    (10 ns period, rising edges at 5, 15, ... ns) into an instance of module ``inner``
    (whose Verilog is ``inner_text``)."""
    header = re.search(rf"^module {re.escape(inner)}\((.*?)\);", inner_text, re.M | re.S)
    if header is None or "clk" not in re.split(r"[\s,]+", header.group(1)):
        raise ValueError(f"hdl_clock needs a core with a clk port; module {inner} has none")
    ports = []
    for path, member, _ in core.signature.flatten(core):
        width = Shape.cast(member.shape).width
        direction = "input" if member.flow == In else "output"
        ports.append((direction, width, "__".join(str(p) for p in path)))
    if "rst" in re.split(r"[\s,]+", header.group(1)):
        ports.append(("input", 1, "rst"))
    # The model is built without --public-flat-rw (which keeps every internal signal of the
    # core as a VPI-visible variable: the attention head ran about ten times slower with it):
    # only these ports and the clock are made visible to cocotb, by metacomments.
    public = "/*verilator public_flat_rw*/"
    lines = [f"module {name}({', '.join(p for _, _, p in ports)});"]
    lines += [f"  {d} {'[%d:0] ' % (w - 1) if w > 1 else ''}{p} {public};" for d, w, p in ports]
    lines += [f"  reg clk {public} = 1'b0;", f"  always #{PERIOD_NS // 2} clk = ~clk;",
              f"  {inner} core({', '.join(f'.{p}({p})' for _, _, p in ports)}, .clk(clk));",
              "endmodule", ""]
    return "\n".join(lines)


def _without_public_flat_rw(runner) -> None:
    """Drop ``--public-flat-rw`` from the Verilator command of cocotb's runner (cocotb 1.8
    always adds it; ``_build_command`` is its private hook, hence the check)."""
    build_command = runner._build_command

    def filtered():
        commands = build_command()
        if not any("--public-flat-rw" in command for command in commands):
            raise RuntimeError("cocotb's Verilator build command changed: it no longer holds "
                               "--public-flat-rw; update sim.runner._without_public_flat_rw")
        return [[arg for arg in command if arg != "--public-flat-rw"] for command in commands]

    runner._build_command = filtered


def verilator_model(core, name: str, *, hdl_clock: bool = False) -> VerilatorModel:
    """Emit ``core`` as module ``name`` and build it with Verilator (cached). With
    ``hdl_clock`` the module is a wrapper that drives the core's clock itself (see above)."""
    if hdl_clock:
        inner = f"{name}_core"
        inner_text = emit(core, inner)
        text = inner_text + "\n" + _clock_wrapper(core, name, inner, inner_text)
        extra_args = ["--timing", "--timescale", "1ns/1ps"]
    else:
        text = emit(core, name)
        extra_args = []
    key = hashlib.sha256("\n".join([text, _verilator_version(), cocotb.__version__,
                                    *extra_args]).encode())
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
            runner = _get_runner()
            if hdl_clock:
                _without_public_flat_rw(runner)
            runner.build(
                verilog_sources=[source], hdl_toplevel=name, build_dir=build_dir,
                build_args=["-Wno-fatal", "-Wno-lint", "-Wno-style", *extra_args])
            (build_dir / "built").touch()
    return VerilatorModel(name, build_dir, core, hdl_clock)


_SEGMENT_FLAGS = ("reset_at_end", "skip_idle", "record_cycles")


def plan_segment(inputs: list[int], outputs: int, *, valid_prob: float = 1.0,
                 ready_prob: float = 1.0, seed: int = 0, reset_after: int | None = None,
                 max_cycles: int | None = None, cycles_per_input: float = 1,
                 drain_cycles: int = 32, **flags) -> dict:
    """One segment of a plan for :mod:`sim.tb_stream` (its docstring gives the fields).

    Without ``max_cycles`` the budget is four times the cycles the inputs take under the
    stalls (``cycles_per_input`` each when nothing stalls, divided by the smaller of the two
    probabilities), plus 2,000 for the pipeline. ``drain_cycles``: how long the testbench
    watches for extra beats after the last expected one (at least the longest gap between two
    output beats of the core). ``flags`` are the optional boolean fields."""
    unknown = set(flags) - set(_SEGMENT_FLAGS)
    if unknown:
        raise TypeError(f"unknown segment fields {sorted(unknown)}; the optional fields are "
                        f"{', '.join(_SEGMENT_FLAGS)}")
    if max_cycles is None:
        expected = cycles_per_input * len(inputs) / max(0.05, min(valid_prob, ready_prob))
        max_cycles = int(4 * expected) + 2000
    return {"inputs": inputs, "outputs": outputs, "valid_prob": valid_prob,
            "ready_prob": ready_prob, "seed": seed, "reset_after": reset_after,
            "max_cycles": max_cycles, "drain_cycles": drain_cycles, **flags}


def run_plan(model: VerilatorModel, segments: list[dict], work_dir: Path, *,
             test_module: str = "sim.tb_stream") -> list[dict]:
    """Run ``segments`` (see :mod:`sim.tb_stream`) on the model; return one result per segment."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_file, results_file = work_dir / "plan.json", work_dir / "results.json"
    plan_file.write_text(json.dumps({"segments": segments, "hdl_clock": model.hdl_clock}))
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
