"""Amaranth-simulator unit tests of the neuron population cores: stream protocol corners and
parameter checks. The bit-exact regressions on the emitted Verilog are in test_cocotb_neurons."""

import pytest
import torch
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from hwgen.cores import core_parameters, make_core, parse_params
from hwgen.cores.if_neuron import IFPopulation
from hwgen.cores.mt_neuron import MTPopulation
from sim.amaranth_stream import payload_dict, run_stream

SMALL_IF = dict(width=6, frac=0, threshold=11, time_steps=6)
SMALL_MT = dict(width=6, frac=0, lambda_pos=3, lambda_neg=5, levels=3, time_steps=6)


def simulate(core, x, **options):
    """Stream sample x through the core; return its outputs as dicts."""
    got, _, _ = run_stream(core, core.input_beats(x), **options)
    return [payload_dict(p) for p in got]


@pytest.mark.parametrize("neurons", [1, 2, 3, 5])
@pytest.mark.parametrize("cls, params", [(IFPopulation, SMALL_IF), (MTPopulation, SMALL_MT)])
def test_matches_golden_under_stalls(cls, params, neurons):
    """Includes P below the recurrence depth, where the core must insert bubbles."""
    core = cls(neurons=neurons, **params)
    x = torch.randint(-32, 32, (6, neurons), generator=torch.Generator().manual_seed(neurons))
    got = simulate(core, x, valid_prob=0.7, ready_prob=0.6, seed=neurons)
    assert got == core.reference_outputs(x)


@pytest.mark.parametrize("cls, params", [(IFPopulation, SMALL_IF), (MTPopulation, SMALL_MT)])
def test_output_backpressure_holds_pipeline(cls, params):
    """The consumer is not ready for the first 20 cycles: nothing may be lost or duplicated."""
    core = cls(neurons=4, **params)
    x = torch.randint(-32, 32, (6, 4), generator=torch.Generator().manual_seed(7))
    got = simulate(core, x, hold_ready_cycles=20)
    assert got == core.reference_outputs(x)


def test_latency_and_full_rate():
    """Measured: one beat per cycle and the documented latency, for P >= depth + 1."""
    for core in (IFPopulation(neurons=8, **SMALL_IF), MTPopulation(neurons=8, **SMALL_MT)):
        events = {}
        sim = Simulator(core)
        sim.add_clock(1e-6)

        async def bench(ctx):
            ctx.set(core.o.ready, 1)
            ctx.set(core.i.valid, 1)
            ctx.set(core.i.payload, {"x": 1, "first": 1})
            for cycle in range(12):
                *_, i_ready, o_valid = await ctx.tick().sample(core.i.ready, core.o.valid)
                if i_ready:
                    events.setdefault("accepts", []).append(cycle)
                if o_valid:
                    events.setdefault("outputs", []).append(cycle)

        sim.add_testbench(bench)
        sim.run()
        assert events["accepts"] == list(range(12))
        assert events["outputs"][0] == core.latency
        assert core.throughput == 1.0


def test_reset_restarts_sweep():
    """A reset mid-sample drops the beats in flight and restarts the sweep at neuron 0."""
    core = IFPopulation(neurons=3, **SMALL_IF)
    x = torch.tensor([[11, 0, 5]] * 6)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.core = core
    sim = Simulator(top)
    sim.add_clock(1e-6)
    outputs = []

    async def bench(ctx):
        ctx.set(core.o.ready, 1)
        for beat in core.input_beats(x)[:4]:  # a sample cut after 4 beats
            ctx.set(core.i.payload, beat)
            ctx.set(core.i.valid, 1)
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        assert not ctx.get(core.o.valid)
        for beat in core.input_beats(x):
            ctx.set(core.i.payload, beat)
            ctx.set(core.i.valid, 1)
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)
        await ctx.tick().repeat(core.latency)

    async def monitor(ctx):
        async for _, _, valid, ready, payload, rst in ctx.tick().sample(
                core.o.valid, core.o.ready, core.o.payload, sync.rst):
            if valid and ready and not rst:
                outputs.append(int(payload.spike))

    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    expected = [o["spike"] for o in core.reference_outputs(x)]
    # Before the reset only whole beats came out; after it the sample is exact from neuron 0.
    assert outputs[-len(expected):] == expected


@pytest.mark.parametrize("name, params, error, message", [
    ("if", {"neurons": 0}, ValueError, "neurons must be an integer from 1 to 65536, not 0"),
    ("if", {"width": 40}, ValueError, "width must be an integer from 2 to 32, not 40"),
    ("if", {"threshold": 0}, ValueError, "threshold must be an integer from 1 to"),
    ("if", {"v_init": 5000}, ValueError, "v_init must be an integer from 0 to 4095, not 5000"),
    ("if", {"time_steps": 1.5}, TypeError, "time_steps must be an integer, not 1.5"),
    ("mt", {"levels": 17}, ValueError, "levels must be an integer from 1 to 16, not 17"),
    ("mt", {"lambda_pos": 0}, ValueError, "lambda_pos must be an integer from 1 to"),
])
def test_rejects_bad_parameters(name, params, error, message):
    with pytest.raises(error, match=message):
        make_core(name, params)


def test_parse_params():
    assert parse_params("if", ["neurons=8", "v_init=none", "threshold=0x10"]) == \
        {"neurons": 8, "v_init": None, "threshold": 16}
    with pytest.raises(ValueError, match="core 'if' has no parameter 'lambda_pos'; its parameters: "
                                         "neurons, width"):
        parse_params("if", ["lambda_pos=3"])
    with pytest.raises(ValueError, match="parameter neurons takes an integer, not 'many'"):
        parse_params("if", ["neurons=many"])
    with pytest.raises(ValueError, match="parameter neurons is given twice"):
        parse_params("if", ["neurons=2", "neurons=3"])
    assert [p.name for p in core_parameters("mt")] == [
        "neurons", "width", "frac", "lambda_pos", "lambda_neg", "levels", "time_steps"]


def test_membrane_width_is_derived():
    narrow = IFPopulation(width=8, threshold=100, time_steps=4)
    wide = IFPopulation(width=8, threshold=100, time_steps=400)
    assert narrow.membrane_format.width < wide.membrane_format.width
    assert MTPopulation(width=16, levels=8, time_steps=16).membrane_format.width == 20
