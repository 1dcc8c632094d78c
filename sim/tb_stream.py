"""Generic cocotb testbench: drive a stream core with words from a plan, record what comes out.

The design has ports ``clk``, ``rst`` (synchronous, active high), ``i__valid/ready/payload``
and ``o__valid/ready/payload`` (Amaranth's names for stream ports ``i`` and ``o``). The plan
(JSON file ``$HWGEN_PLAN``) is ``{"segments": [...], "hdl_clock": bool}``; with ``hdl_clock``
the design drives its own 10 ns clock (:func:`sim.runner.verilator_model` with
``hdl_clock=True``), otherwise the testbench does. The segments run in order::

    {"inputs": [int, ...],        # packed input payloads
     "outputs": int,              # how many output beats to wait for
     "valid_prob": float,         # chance per cycle that an idle producer starts a beat
     "ready_prob": float,         # chance per cycle that the consumer is ready
     "seed": int,                 # seed of the stall pattern
     "reset_after": int | null,   # assert reset once this many inputs were accepted
     "max_cycles": int,           # give up (fail) after this many cycles
     "drain_cycles": int,         # watch this long for extra beats after the last expected
                                  # one (not after reset_after)
     # optional (absent = false):
     "reset_at_end": bool,        # assert reset once the segment is done (all in, all out)
     "skip_idle": bool,           # sleep through cycles where nothing can happen (below)
     "record_cycles": bool}       # also return the cycle of every input and output transfer

Stream rules are honoured on the input: once ``valid`` is raised it stays up, payload
unchanged, until the transfer; and checked on the output (a stalled output beat that is
withdrawn or changes fails the run). A reset lasts two cycles with ``valid`` and ``ready`` low.
A segment that runs to its end keeps ``o.ready`` high for ``drain_cycles`` more cycles and
records any beat that comes out then, so a core that emits more beats than expected fails the
checker's count. Results (``$HWGEN_RESULTS``) per segment: the output words, inputs accepted,
cycles used (up to the last expected output, without the drain), and the cycles of the first
and last input transfers and of the last output transfer (counted from the segment's start);
with ``record_cycles`` also ``accept_cycles`` and ``output_cycles`` (every transfer).

``skip_idle``: a core that computes for thousands of cycles between transfers (the attention
head) would cost the testbench a Python round trip per cycle. When a cycle ends with
``o.valid`` low and either a presented beat not taken (``i.ready`` low) or no beat left to send,
nothing can happen until ``o.valid`` (or, for a waiting beat, ``i.ready``) rises: the testbench
then waits for that edge (or the cycle budget) instead of every clock edge; ``o.ready`` keeps
its last random value meanwhile.
Cycle numbers are then taken from the simulation time, so they are the same as without it.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_steps, get_sim_time

PERIOD_NS = 10


async def _reset(dut):
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _run_segment(dut, segment):
    rng = random.Random(segment["seed"])
    inputs, wanted = segment["inputs"], segment["outputs"]
    n_inputs = len(inputs)
    reset_after = segment.get("reset_after")
    max_cycles = segment["max_cycles"]
    skip_idle = segment.get("skip_idle", False)
    record = segment.get("record_cycles", False)
    p_valid, p_ready = segment["valid_prob"], segment["ready_prob"]
    drain_cycles = segment["drain_cycles"]
    i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    clock_edge, settled = RisingEdge(dut.clk), ReadOnly()
    period = get_sim_steps(PERIOD_NS, "ns")
    sent, outputs = 0, []
    accept_cycles, output_cycles = [], []
    first_accept = last_accept = last_output = None
    presenting = False
    valid_driven = ready_driven = None  # what the ports hold: write only on a change
    cycle = 0
    start = None
    wake = False  # resumed by a skip: already at the clock edge of cycle `cycle`
    held = None  # payload of an output beat stalled in the previous cycle
    finished_at = None  # cycle at which every input was in and every expected output out

    def draining() -> bool:
        return reset_after is None and sent >= n_inputs and len(outputs) >= wanted

    def done() -> bool:
        return ((reset_after is not None and sent >= reset_after)
                or (finished_at is not None and cycle - finished_at >= drain_cycles))

    while True:
        if not wake:
            await clock_edge
        wake = False
        if start is None:
            start = get_sim_time("step")
        if finished_at is None and draining():
            finished_at = cycle
        if done():
            break
        if cycle >= max_cycles and finished_at is None:
            raise AssertionError(f"timeout after {cycle} cycles: {sent}/{n_inputs} inputs "
                                 f"accepted, {len(outputs)}/{wanted} outputs")
        if not presenting and sent < n_inputs and rng.random() < p_valid:
            presenting = True
            i_payload.value = inputs[sent]
        if presenting != valid_driven:
            i_valid.value = valid_driven = presenting
        ready = finished_at is not None or rng.random() < p_ready
        if ready != ready_driven:
            o_ready.value = ready_driven = ready
        await settled
        out_valid = o_valid.value
        if held is not None and not (out_valid and int(o_payload.value) == held):
            raise AssertionError(f"cycle {cycle}: a stalled output beat was withdrawn or "
                                 f"changed (stream rule)")
        held = int(o_payload.value) if out_valid and not ready else None
        if presenting and i_ready.value:
            first_accept = cycle if first_accept is None else first_accept
            last_accept = cycle
            if record:
                accept_cycles.append(cycle)
            sent += 1
            presenting = False
        if out_valid and ready:
            outputs.append(int(o_payload.value))
            last_output = cycle
            if record:
                output_cycles.append(cycle)
        cycle += 1
        if (skip_idle and not out_valid and (presenting or sent >= n_inputs)
                and not draining() and not done()):
            # A beat waits with i.ready low (presenting is still set), or there is none left,
            # and o.valid is low: nothing can happen until the core raises i.ready (if a beat
            # waits) or o.valid; both move only on a clock edge while our inputs hold still.
            # Sleep until then, or until the cycle budget runs out.
            budget = Timer(max(1, max_cycles - cycle + 1) * period, "step")
            edges = (RisingEdge(o_valid), RisingEdge(i_ready)) if presenting else \
                (RisingEdge(o_valid),)
            fired = await First(*edges, budget)
            if fired is budget:
                raise AssertionError(f"timeout after {max_cycles} cycles: {sent}/{n_inputs} "
                                     f"inputs accepted, {len(outputs)}/{wanted} outputs")
            cycle = (get_sim_time("step") - start) // period
            wake = True
    i_valid.value = 0
    o_ready.value = 0
    if reset_after is not None or segment.get("reset_at_end", False):
        await _reset(dut)
    result = {"outputs": outputs, "accepted": sent,
              "cycles": cycle if finished_at is None else finished_at,
              "first_accept_cycle": first_accept, "last_accept_cycle": last_accept,
              "last_output_cycle": last_output}
    if record:
        result.update(accept_cycles=accept_cycles, output_cycles=output_cycles)
    return result


@cocotb.test()
async def run_plan(dut):
    with open(os.environ["HWGEN_PLAN"]) as handle:
        plan = json.load(handle)
    if not plan.get("hdl_clock", False):
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, units="ns").start())
    await _reset(dut)
    results = [await _run_segment(dut, segment) for segment in plan["segments"]]
    with open(os.environ["HWGEN_RESULTS"], "w") as handle:
        json.dump({"segments": results}, handle)
