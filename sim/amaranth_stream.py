"""Amaranth-simulator harness for stream cores (ports ``i`` and ``o``): a producer with random
idle cycles, a consumer with random back-pressure, an optional reset in mid-stream, and a check
of the stream rule that a stalled output keeps its payload. The cocotb twin for emitted Verilog
is :mod:`sim.tb_stream`."""

from __future__ import annotations

import random

from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["run_stream", "payload_dict"]


def run_stream(core, beats, *, valid_prob=1.0, ready_prob=1.0, seed=0, hold_ready_cycles=0,
               reset_after=None, settle=0, max_cycles=200_000):
    """Stream ``beats`` (payload values for ``core.i``) through ``core``.

    Returns (output payloads as sampled views, accept cycles, output cycles). The consumer is
    not ready for the first ``hold_ready_cycles`` cycles. With ``reset_after``, the core is reset
    (``settle`` cycles after) once that many beats were accepted, then all beats are sent again;
    only outputs after the reset are returned. Fails after ``max_cycles`` cycles."""
    rng = random.Random(seed)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.core = core
    got, accepts, outputs, stable = [], [], [], []
    sim = Simulator(top)
    sim.add_clock(1e-6)
    after_reset = [reset_after is None]

    async def producer(ctx):
        rounds = [beats] if reset_after is None else [beats[:reset_after], beats]
        for n, round_beats in enumerate(rounds):
            for beat in round_beats:
                while rng.random() >= valid_prob:
                    await ctx.tick()
                ctx.set(core.i.payload, beat)
                ctx.set(core.i.valid, 1)
                await ctx.tick().until(core.i.ready)
                ctx.set(core.i.valid, 0)
            if n == 0 and reset_after is not None:
                if settle:
                    await ctx.tick().repeat(settle)
                ctx.set(sync.rst, 1)
                await ctx.tick()
                ctx.set(sync.rst, 0)
                after_reset[0] = True

    async def consumer(ctx):
        if hold_ready_cycles:
            await ctx.tick().repeat(hold_ready_cycles)
        last, cycle = None, hold_ready_cycles
        while len(got) < len(beats):
            ctx.set(core.o.ready, rng.random() < ready_prob)
            *_, payload, valid, ready, i_valid, i_ready, rst = await ctx.tick().sample(
                core.o.payload, core.o.valid, core.o.ready, core.i.valid, core.i.ready,
                sync.rst)
            if valid and not ready and not rst:
                # Stream rule: a stalled output keeps its payload until it is taken.
                stable.append(last is None or last == payload.as_value().value)
                last = payload.as_value().value
            else:
                last = None
            if i_valid and i_ready and not rst:
                accepts.append(cycle)
            if valid and ready and not rst and after_reset[0]:
                got.append(payload)
                outputs.append(cycle)
            cycle += 1
            assert cycle < max_cycles, f"timeout: {len(got)} of {len(beats)} outputs"

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert all(stable), "a stalled output changed its payload"
    return got, accepts, outputs


def payload_dict(payload) -> dict:
    """A sampled struct payload of scalar fields as ``{name: int}``."""
    return {name: int(getattr(payload, name)) for name, _ in payload.shape()}
