"""Amaranth-simulator unit tests of the neuron population cores: stream protocol corners, the
overflow flag and parameter checks. The bit-exact regressions on the emitted Verilog are in
test_cocotb_neurons."""

import pytest
import torch
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from golden.stimulus import samples_for
from hwgen.cores import core_parameters, make_core, parse_params
from hwgen.cores.if_neuron import IFPopulation
from hwgen.cores.mt_neuron import MTPopulation
from sim.amaranth_stream import payload_dict, run_stream
from sim.neuron_check import FlaggedOutputs, expected_stream, overlong_samples

SMALL_IF = dict(width=6, frac=0, threshold=11, time_steps=6)
SMALL_MT = dict(width=6, frac=0, lambda_pos=3, lambda_neg=5, levels=3, time_steps=6)
# A 5-bit membrane that x = 7 takes out of its format at the third step.
WRAPPING_IF = dict(neurons=4, width=4, threshold=1, time_steps=2)
# levels = 1 and lambda_neg = 2**membrane width (3 bits): the reset of the lowest potential,
# -4 + 8 = 4, leaves the format although the potential fits.
WRAPPING_RESET_MT = dict(width=2, frac=0, lambda_pos=1, lambda_neg=8, levels=1, time_steps=1)


def flagged(got) -> list[dict]:
    return [{"out": payload_dict(p.out), "overflow": int(p.overflow)} for p in got]


def simulate(core, x, **options):
    """Stream sample x (within time_steps) through the core; return its outputs as dicts.
    The overflow flag must stay 0 on every beat."""
    got, _, _ = run_stream(FlaggedOutputs(core), core.input_beats(x), **options)
    assert [int(p.overflow) for p in got] == [0] * len(got)
    return [payload_dict(p.out) for p in got]


def check_stream(core, samples, **options):
    """Stream samples (any length) after a reset; compare with :func:`expected_stream`: the
    flag on every beat, the outputs wherever golden's membranes stayed in the format."""
    want = expected_stream(core, samples, beyond_time_steps=True)
    got, accepts, outputs = run_stream(FlaggedOutputs(core), want.beats, **options)
    got = flagged(got)
    assert len(got) == len(want.outputs)
    flags = [g["overflow"] for g in got]
    rose = flags.index(1) if 1 in flags else None
    assert flags == [w["overflow"] for w in want.outputs], \
        f"flag rose with beat {rose}; golden's first overflow is beat {want.first_overflow}"
    for n, (g, w, exact) in enumerate(zip(got, want.outputs, want.exact)):
        if exact:
            assert g == w, f"beat {n} ({want.where[n]}): expected {w}, got {g}"
    return want, got, accepts, outputs


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
    """A reset mid-sample drops the beats in flight and restarts the sweep at neuron 0: after
    it, exactly the new sample's outputs come out, none left over from before."""
    core = IFPopulation(neurons=3, **SMALL_IF)
    x = torch.tensor([[11, 0, 5]] * 6)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.core = core
    sim = Simulator(top)
    sim.add_clock(1e-6)
    outputs = ([], [])  # before, after the reset
    after_reset = [False]

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
        after_reset[0] = True
        await ctx.tick().repeat(2 * core.latency)  # nothing may come out with no input
        for beat in core.input_beats(x):
            ctx.set(core.i.payload, beat)
            ctx.set(core.i.valid, 1)
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)
        await ctx.tick().repeat(2 * core.latency)

    flags = []

    async def monitor(ctx):
        async for _, _, valid, ready, payload, overflow, rst in ctx.tick().sample(
                core.o.valid, core.o.ready, core.o.payload, core.overflow, sync.rst):
            flags.append(int(overflow))
            if valid and ready and not rst:
                outputs[after_reset[0]].append(int(payload.spike))

    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    expected = [o["spike"] for o in core.reference_outputs(x)]
    before, after = outputs
    # Before the reset only whole beats of the cut sample came out, in order.
    assert len(before) <= 4 and before == expected[:len(before)]
    assert after == expected
    assert not any(flags)  # within time_steps, through the reset


def test_overflow_rises_with_the_first_step_out_of_the_format():
    """x = 7 for 12 steps into a 5-bit membrane (threshold 1, T = 2): golden spikes every
    step; the membrane reaches 6, 12, then 19 > 15 at step 2. The flag rises with that step's
    first beat; everything before it is exact."""
    core = IFPopulation(**WRAPPING_IF)
    assert (core.membrane_format.min_int, core.membrane_format.max_int) == (-16, 15)
    x = torch.full((12, 4), 7)
    assert core.reference_overflows(x)[:12] == [0] * 8 + [1] * 4
    want, got, _, _ = check_stream(core, [x], valid_prob=0.7, ready_prob=0.6, seed=3)
    assert want.first_overflow == 8
    assert [g["overflow"] for g in got] == [0] * 8 + [1] * 40
    assert [g["out"]["spike"] for g in got[:8]] == [1] * 8


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("neurons", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("cls, params", [(IFPopulation, SMALL_IF), (MTPopulation, SMALL_MT)],
                         ids=["if", "mt"])
def test_overflow_flag_is_exact(cls, params, neurons, seed):
    """Samples longer than time_steps (the format's extremes held by seeded random neurons,
    random input elsewhere) under stalls: the flag rises with the beat of golden's first
    update outside the membrane format, never earlier, and stays up through the next sample;
    the outputs are exact up to it, and for neurons that did not overflow, after it."""
    core = cls(neurons=neurons, **params)
    samples = overlong_samples(core, seed=seed)
    assert samples[0].shape[0] > core.config.time_steps
    want, _, _, _ = check_stream(core, samples, valid_prob=0.7, ready_prob=0.6, seed=seed)
    assert want.first_overflow is not None


@pytest.mark.parametrize("held", ["max", "min"])
@pytest.mark.parametrize("cls, params", [(IFPopulation, SMALL_IF), (MTPopulation, SMALL_MT)],
                         ids=["if", "mt"])
def test_overflow_on_either_side(cls, params, held):
    """One neuron holds the format's maximum (the membrane leaves the format at the top) or
    minimum (at the bottom), the others get 0: the flag rises with golden's first overflow."""
    core = cls(neurons=3, **params)
    steps = 4 * core.config.time_steps + 8
    x = torch.zeros((steps, 3), dtype=torch.int64)
    x[:, 1] = getattr(core.input_format, f"{held}_int")
    want, _, _, _ = check_stream(core, [x], valid_prob=0.8, ready_prob=0.7)
    step, neuron = divmod(want.first_overflow, 3)
    u, _ = core.reference_membranes(x)
    assert neuron == 1 and step >= core.config.time_steps  # 0-based: beyond T steps
    fmt = core.membrane_format
    assert u[step, 1] > fmt.max_int if held == "max" else u[step, 1] < fmt.min_int


@pytest.mark.parametrize("seed", range(12))
def test_overflow_flag_on_random_configurations(seed):
    """Tiny random IF and MT cores (membranes of a few bits) on uniform random samples of 4 to
    16 times time_steps: flag and outputs as golden says, wherever the first overflow falls
    (in half of these seeds; in the others nothing overflows and the flag stays down)."""
    rng = torch.Generator().manual_seed(seed)

    def pick(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=rng))

    width, time_steps, neurons = pick(2, 4), pick(1, 3), pick(1, 4)
    if seed % 2 == 0:
        threshold = pick(1, 10)
        core = IFPopulation(neurons=neurons, width=width, frac=0, threshold=threshold,
                            time_steps=time_steps, v_init=pick(0, threshold - 1))
    else:
        core = MTPopulation(neurons=neurons, width=width, frac=0, lambda_pos=pick(1, 6),
                            lambda_neg=pick(1, 6), levels=pick(1, 3), time_steps=time_steps)
    fmt = core.input_format
    samples = [torch.randint(fmt.min_int, fmt.max_int + 1, (pick(4, 16) * time_steps, neurons),
                             generator=rng) for _ in range(3)]
    check_stream(core, samples, valid_prob=0.8, ready_prob=0.6, seed=seed)


@pytest.mark.parametrize("neurons", [1, 3, 6])
def test_overflow_of_the_membrane_after_the_reset(neurons):
    """A negative spike from the lowest potential -4 leaves 4 in a 3-bit membrane: the sum
    fits, the value after the reset does not. The MT core tests it one bit wider only where
    the reset map can leave the format (here; not at its defaults)."""
    core = MTPopulation(neurons=neurons, **WRAPPING_RESET_MT)
    assert core.membrane_format.width == 3 and core.config.lambda_neg == 8
    assert not core.reset_keeps_format()
    assert MTPopulation().reset_keeps_format()
    x = torch.full((3, neurons), -2)
    u, v = core.reference_membranes(x)
    assert u[:, 0].tolist() == [-2, -4, 2] and v[:, 0].tolist() == [-2, 4, 1]
    want, got, _, _ = check_stream(core, [x], valid_prob=0.8, ready_prob=0.7)
    assert want.first_overflow == neurons  # step 1, neuron 0
    # The offending beat's own spike is still golden's (-1): only the membrane wrapped.
    assert got[neurons]["out"] == {"fire": 1, "negative": 1, "k": 0}


@pytest.mark.parametrize("neurons", [2, 5])
@pytest.mark.parametrize("cls, params", [(IFPopulation, SMALL_IF), (MTPopulation, SMALL_MT)],
                         ids=["if", "mt"])
def test_flag_stays_low_within_time_steps(cls, params, neurons):
    """Edge-case and random samples (none longer than time_steps) under stalls and a reset in
    mid-stream: the flag stays 0 on every beat."""
    core = cls(neurons=neurons, **params)
    samples = samples_for(core.config, neurons, min_updates=200, seed=neurons)
    want = expected_stream(core, samples)
    assert want.first_overflow is None
    got, _, _ = run_stream(FlaggedOutputs(core), want.beats, valid_prob=0.8, ready_prob=0.5,
                           seed=neurons, reset_after=len(want.beats) // 3)
    assert flagged(got) == want.outputs


def test_flag_is_sticky_until_reset():
    """The flag survives later samples (a first beat does not clear it) and falls with reset;
    afterwards samples within time_steps run exact with the flag down."""
    core = IFPopulation(**WRAPPING_IF)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.core = core
    sim = Simulator(top)
    sim.add_clock(1e-6)
    long, short = torch.full((12, 4), 7), torch.tensor([[1, -8, 7, 0], [1, 7, -8, 0]])
    flags = {}

    async def send(ctx, beats):
        for beat in beats:
            ctx.set(core.i.payload, beat)
            ctx.set(core.i.valid, 1)
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)
        await ctx.tick().repeat(core.latency + 1)

    async def bench(ctx):
        ctx.set(core.o.ready, 1)
        await send(ctx, core.input_beats(long, beyond_time_steps=True))
        flags["after_overflow"] = ctx.get(core.overflow)
        await send(ctx, core.input_beats(short))
        flags["after_next_sample"] = ctx.get(core.overflow)
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        flags["after_reset"] = ctx.get(core.overflow)
        await send(ctx, core.input_beats(short))

    outputs = []

    async def monitor(ctx):
        async for _, _, valid, ready, payload, overflow, rst in ctx.tick().sample(
                core.o.valid, core.o.ready, core.o.payload, core.overflow, sync.rst):
            if valid and ready and not rst:
                outputs.append((int(payload.spike), int(overflow)))

    sim.add_testbench(bench)
    sim.add_process(monitor)
    sim.run()
    assert flags == {"after_overflow": 1, "after_next_sample": 1, "after_reset": 0}
    golden = [o["spike"] for o in core.reference_outputs(short)]
    assert outputs[-16:] == [(s, 1) for s in golden] + [(s, 0) for s in golden]


def test_input_beats_refuses_samples_longer_than_time_steps():
    core = IFPopulation(**WRAPPING_IF)
    x = torch.full((3, 4), 7)
    with pytest.raises(ValueError, match=r"x has 3 time steps, more than time_steps = 2 .*"
                                         r"pass beyond_time_steps=True"):
        core.input_beats(x)
    assert len(core.input_beats(x, beyond_time_steps=True)) == 12
    assert len(core.input_beats(x[:1])) == 4  # shorter samples are fine
    with pytest.raises(TypeError, match="beyond_time_steps must be a bool, not 1"):
        core.input_beats(x, beyond_time_steps=1)


def test_reset_keeps_format_is_exact():
    """reset_keeps_format against every potential of the format, on small configurations:
    always for IF; for MT exactly unless levels = 1 and lambda_neg = 2**membrane width."""
    for threshold in range(1, 12):
        for time_steps in (1, 2, 5):
            core = IFPopulation(neurons=1, width=3, frac=0, threshold=threshold,
                                time_steps=time_steps)
            assert core.reset_keeps_format()
    leaving = 0
    for width in (2, 3):
        for lambda_pos in range(1, 9):
            for lambda_neg in range(1, 20):
                for levels in (1, 2):
                    core = MTPopulation(neurons=1, width=width, frac=0, lambda_pos=lambda_pos,
                                        lambda_neg=lambda_neg, levels=levels, time_steps=1)
                    fmt, cfg = core.membrane_format, core.config
                    keeps = core.reset_keeps_format()
                    brute = all(fmt.min_int <= cfg.reset(u) <= fmt.max_int
                                for u in range(fmt.min_int, fmt.max_int + 1))
                    assert keeps == brute
                    assert keeps == (levels > 1 or lambda_neg != 1 << fmt.width)
                    leaving += not keeps
    assert leaving > 0


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
