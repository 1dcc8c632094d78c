"""RegisterSlice in the Amaranth simulator: order and payloads kept under random stalls, one beat
per cycle, and no combinational path from o.ready to i.ready."""

import pytest
from amaranth import ClockDomain, Module, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from hwgen.register_slice import RegisterSlice
from sim.amaranth_stream import payload_dict, run_stream

BEAT = data.StructLayout({"x": 8, "tag": 3})


def beat_list(count):
    return [{"x": (n * 37 + 5) % 256, "tag": n % 8} for n in range(count)]


@pytest.mark.parametrize("valid_prob, ready_prob, seed", [
    (1.0, 1.0, 0), (0.6, 1.0, 1), (1.0, 0.4, 2), (0.7, 0.5, 3), (0.3, 0.9, 4)])
def test_passes_every_beat_in_order(valid_prob, ready_prob, seed):
    beats = beat_list(600)
    got, _, _ = run_stream(RegisterSlice(BEAT), beats, valid_prob=valid_prob,
                           ready_prob=ready_prob, seed=seed)
    assert [payload_dict(p) for p in got] == beats


def test_one_beat_per_cycle_one_cycle_late():
    beats = beat_list(100)
    got, accepts, outputs = run_stream(RegisterSlice(BEAT), beats)
    assert [payload_dict(p) for p in got] == beats
    assert accepts == list(range(accepts[0], accepts[0] + len(beats)))
    assert outputs == [cycle + 1 for cycle in accepts]


def test_reset_in_mid_stream_drops_the_held_beats():
    beats = beat_list(50)
    got, _, _ = run_stream(RegisterSlice(BEAT), beats, valid_prob=0.8, ready_prob=0.3,
                           seed=7, reset_after=20)
    assert [payload_dict(p) for p in got] == beats


def test_ready_does_not_follow_o_ready_within_a_cycle():
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut = RegisterSlice(unsigned(4))
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        for cycle in range(6):
            ctx.set(dut.i.payload, cycle)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)  # would free the slice at once if ready were combinational
            seen.append((before, ctx.get(dut.i.ready)))
            ctx.set(dut.o.ready, 0)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert all(before == after for before, after in seen)
    assert (0, 0) in seen  # the slice filled up while o.ready was low: i.ready fell
