"""Generic cocotb testbench: drive a stream core with words from a plan, record what comes out.

The design has ports ``clk``, ``rst`` (synchronous, active high), ``i__valid/ready/payload``
and ``o__valid/ready/payload`` (Amaranth's names for stream ports ``i`` and ``o``). The plan
(JSON file ``$HWGEN_PLAN``) is a list of segments, run in order::

    {"inputs": [int, ...],        # packed input payloads
     "outputs": int,              # how many output beats to wait for
     "valid_prob": float,         # chance per cycle that an idle producer starts a beat
     "ready_prob": float,         # chance per cycle that the consumer is ready
     "seed": int,                 # seed of the stall pattern
     "reset_after": int | null,   # assert reset once this many inputs were accepted
     "max_cycles": int}           # give up (fail) after this many cycles

Stream rules are honoured: once ``valid`` is raised it stays up, payload unchanged, until the
transfer. A reset lasts two cycles with ``valid`` and ``ready`` low. Results (``$HWGEN_RESULTS``)
per segment: the output words, inputs accepted, cycles used, and the cycles of the first and
last input transfers and of the last output transfer (counted from the segment's start).
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


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
    reset_after = segment.get("reset_after")
    p_valid, p_ready = segment["valid_prob"], segment["ready_prob"]
    i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    sent, outputs = 0, []
    first_accept = last_accept = last_output = None
    presenting = False
    cycle = 0
    while True:
        await RisingEdge(dut.clk)
        if reset_after is not None and sent >= reset_after:
            break
        if sent >= len(inputs) and len(outputs) >= wanted:
            break
        if cycle >= segment["max_cycles"]:
            raise AssertionError(f"timeout after {cycle} cycles: {sent}/{len(inputs)} inputs "
                                 f"accepted, {len(outputs)}/{wanted} outputs")
        if not presenting and sent < len(inputs) and rng.random() < p_valid:
            presenting = True
            i_payload.value = inputs[sent]
        i_valid.value = presenting
        o_ready.value = rng.random() < p_ready
        await ReadOnly()
        if presenting and i_ready.value:
            first_accept = cycle if first_accept is None else first_accept
            last_accept = cycle
            sent += 1
            presenting = False
        if o_valid.value and o_ready.value:
            outputs.append(int(o_payload.value))
            last_output = cycle
        cycle += 1
    i_valid.value = 0
    o_ready.value = 0
    if reset_after is not None:
        await _reset(dut)
    return {"outputs": outputs, "accepted": sent, "cycles": cycle,
            "first_accept_cycle": first_accept, "last_accept_cycle": last_accept,
            "last_output_cycle": last_output}


@cocotb.test()
async def run_plan(dut):
    with open(os.environ["HWGEN_PLAN"]) as handle:
        segments = json.load(handle)["segments"]
    cocotb.start_soon(Clock(dut.clk, 10, units="ns").start())
    await _reset(dut)
    results = [await _run_segment(dut, segment) for segment in segments]
    with open(os.environ["HWGEN_RESULTS"], "w") as handle:
        json.dump({"segments": results}, handle)
