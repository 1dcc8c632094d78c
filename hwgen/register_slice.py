"""A stream register slice (skid buffer): cuts every combinational path through a stream."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Passes a stream of ``shape`` payloads on unchanged, one cycle later.

    Latency 1 cycle, throughput 1 beat per cycle under any pattern of ``o.ready``. ``o.valid``,
    ``o.payload`` and ``i.ready`` are registers, so no combinational path runs from ``i`` to
    ``o`` or from ``o.ready`` to ``i.ready``: a slice between two blocks leaves each path inside
    one of them.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        # The skid register catches the beat accepted in the cycle the output stalls.
        skid = Signal(self.i.payload.shape(), reset_less=True)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
