"""IF neuron population core; golden twin :mod:`golden.if_neuron` (numeric contract D3)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data

from golden.fixed import Format, check_int
from golden.if_neuron import IFConfig, if_neuron

from .population import NeuronPopulation

__all__ = ["IFPopulation"]


class IFPopulation(NeuronPopulation):
    """P integrate-and-fire neurons with reset by subtraction, one update per cycle.

    Per update: ``v += x``; ``spike = v >= threshold``; ``v -= threshold * spike``, bit-exact
    with :func:`golden.if_neuron.if_neuron`. Membranes start at ``v_init`` on a beat with
    ``first = 1``.

    Streams: ``i`` carries ``{x: signed(width), first: 1}`` in a fixed sweep over the neurons
    (see :mod:`hwgen.cores.population`); ``o`` carries ``{spike: 1}``, one beat per input beat.
    Latency 4 cycles; throughput 1 beat per cycle for ``neurons >= 4`` (P/4 below).
    The membrane width is derived from ``width``, ``threshold``, ``v_init`` and ``time_steps``
    so that ``time_steps`` steps of any inputs cannot overflow; a sample longer than
    ``time_steps`` steps may.

    ``overflow`` (Out(1)) is sticky: it rises when an update's integrated potential ``v + x``
    does not fit the membrane format (the value after the reset then fits too: it lies in
    ``[0, v + x)`` after a spike) and stays up until reset. The sum is computed one bit wider
    than the membrane and its two top bits are compared in the output stage. The flag rises in
    the cycle in which the offending update's output beat is first offered on ``o``, and does
    not change while a beat waits there: the beats transferred before it are bit-exact, the
    offending one and later ones of that neuron's sample may differ from golden (the membrane
    wraps); other neurons stay exact (see :mod:`hwgen.cores.population`).

    Parameters
    ----------
    neurons : int
        P, neurons served (1 to 65536).
    width : int
        Input width in bits, two's complement (2 to 32).
    frac : int
        Input fractional bits (documentation of the scale; the arithmetic is on integers).
    threshold : int
        Firing threshold in input LSBs (at least 1).
    time_steps : int
        T, steps per sample, which bounds the membrane range.
    v_init : int or None
        Initial potential in input LSBs, 0 to ``threshold - 1``; ``None`` means ``threshold // 2``.
    """

    def __init__(self, *, neurons: int = 64, width: int = 16, frac: int = 12,
                 threshold: int = 4096, time_steps: int = 32, v_init: int | None = None):
        check_int("width", width, minimum=2, maximum=32)
        self.config = IFConfig(Format(width, frac), threshold, time_steps, v_init)
        super().__init__(neurons=neurons, input_format=self.config.input_format,
                         membrane_format=self.config.membrane_format,
                         initial_potential=self.config.initial_potential,
                         output_layout=data.StructLayout({"spike": 1}))

    @property
    def update_depth(self) -> int:
        return 1

    def update_stages(self, m: Module, advance, v_old, x):
        width = self.membrane_format.width
        # D1 by construction: after a spike the membrane is u - threshold in [0, u), so only
        # the sum can leave the format.
        assert self.reset_keeps_format()
        # The sum one bit wider than the membrane (the input is no wider than the membrane, so
        # it cannot wrap); the update uses its low bits, the overflow test its top two.
        total = Signal(signed(width + 1), reset_less=True)
        with m.If(advance):
            m.d.sync += total.eq(v_old + x)
        u = Signal(signed(width))
        m.d.comb += u.eq(total)
        # One carry chain gives both the difference and the comparison u >= threshold.
        difference = Signal(signed(width + 1))
        spike = Signal()
        m.d.comb += [
            difference.eq(u - self.config.threshold),
            spike.eq(~difference[-1]),
        ]
        return Mux(spike, difference, u), spike, total[width] ^ total[width - 1]

    def reference_outputs(self, x) -> list[dict]:
        spikes = if_neuron(self.input_format.check("x", x), self.config.threshold,
                           self.config.initial_potential).spikes
        return [{"spike": int(s)} for s in spikes.flatten()]

    def reference_membranes(self, x):
        result = if_neuron(self.input_format.check("x", x), self.config.threshold,
                           self.config.initial_potential, record_potential=True)
        return result.u, result.u - self.config.threshold * result.spikes
