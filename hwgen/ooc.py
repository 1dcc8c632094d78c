"""Out-of-context wrapper: a core behind two pins, for place-and-route and Fmax.

A core has more port bits than a small package has pins, and a bare core's ports would be placed
on pins whose I/O delays dominate its timing. :class:`OutOfContext` gives it register-to-register
paths instead: a shift register (fed from one input pin) drives every core input bit, every core
output bit is registered, and the XOR of those registers, registered again, drives one output pin.
Nothing is constant or unobserved, so synthesis cannot remove any of the core.

The wrapper costs about one flip-flop per core port bit plus an XOR tree; reports must not count
it as the core's own cost (:func:`hwgen.report.report_core` keeps the two apart).
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["OutOfContext"]


class OutOfContext(wiring.Component):
    """Wraps ``core`` (any :class:`~amaranth.lib.wiring.Component` in the ``sync`` domain).

    Ports: ``serial_in`` (1 bit, shifted into the input shift register every cycle) and
    ``serial_out`` (1 bit, the XOR of all registered core outputs, one cycle later), plus the
    ``sync`` domain's ``clk`` and ``rst``. The signal flow has no function beyond keeping every
    bit of the core alive.
    """

    def __init__(self, core: wiring.Component):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be an amaranth wiring.Component, not {core!r}")
        self._core = core
        self._inputs, self._outputs = [], []
        for _path, member, value in core.signature.flatten(core):
            (self._inputs if member.flow == In else self._outputs).append(Value.cast(value))
        super().__init__({"serial_in": In(1), "serial_out": Out(1)})

    @property
    def input_bits(self) -> int:
        """Core input bits, which is the length of the shift register."""
        return sum(len(v) for v in self._inputs)

    @property
    def output_bits(self) -> int:
        """Core output bits, each captured in a register."""
        return sum(len(v) for v in self._outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self._core

        chain = Signal(max(1, self.input_bits))
        m.d.sync += chain.eq(Cat(self.serial_in, chain[:-1]))
        offset = 0
        for value in self._inputs:
            m.d.comb += value.eq(chain[offset:offset + len(value)])
            offset += len(value)

        captured = Signal(max(1, self.output_bits))
        m.d.sync += [
            captured.eq(Cat(*self._outputs)),
            self.serial_out.eq(captured.xor()),
        ]
        return m
