"""Multi-threshold (ECMT) neuron population core; golden twin :mod:`golden.mt_neuron` (D4)."""

from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import C, Cat, Module, Signal, signed, unsigned
from amaranth.lib import data

from golden.fixed import Format, check_int
from golden.mt_neuron import MTConfig, mt_decode, mt_neuron

from .population import NeuronPopulation

__all__ = ["MTPopulation", "mt_code_layout"]


def mt_code_layout(levels: int) -> data.StructLayout:
    """Spike code: ``fire``; ``negative`` (the sign); ``k``, the level (value ``±lambda * 2**k``)."""
    return data.StructLayout({
        "fire": unsigned(1),
        "negative": unsigned(1),
        "k": unsigned(max(1, (levels - 1).bit_length())),
    })


class MTPopulation(NeuronPopulation):
    """P multi-threshold neurons (levels ``±lambda * 2**k``), one update per cycle.

    Per update: ``v += x``; the highest level k whose half-level threshold is reached fires,
    ``+`` if ``v >= lambda_pos * (2**k - 1/2)``, else ``-`` if ``v <= -lambda_neg * (2**k - 1/2)``;
    the emitted value is subtracted. Bit-exact with :func:`golden.mt_neuron.mt_neuron`.
    Membranes start at 0 on a beat with ``first = 1``.

    Streams: ``i`` carries ``{x: signed(width), first: 1}`` in a fixed sweep over the neurons;
    ``o`` carries ``{fire, negative, k}`` (:func:`mt_code_layout`), one beat per input beat.
    Latency 6 cycles; throughput 1 beat per cycle for ``neurons >= 6`` (P/6 below).
    The membrane width is derived from the parameters so that ``time_steps`` steps of any
    inputs cannot overflow; a sample longer than ``time_steps`` steps may. No multipliers: the
    levels are constants.

    ``overflow`` (Out(1)) is sticky: it rises when an update's integrated potential ``v + x``
    or its membrane after the reset does not fit the membrane format, and stays up until
    reset. The sum is computed one bit wider than the membrane and the top two bits are
    compared (the result travels with the update to the output stage). The value after the
    reset is tested the same way, one bit wider, only when the reset map can take a potential
    of the format out of it (:meth:`reset_keeps_format`, decided at generation time; with the
    derived formats only when ``levels = 1`` and ``lambda_neg = 2**membrane width``). The flag
    rises in the cycle in which the offending update's output beat is first offered on ``o``,
    and does not change while a beat waits there: the beats transferred before it are
    bit-exact, the offending one and later ones of that neuron's sample may differ from golden;
    other neurons stay exact (see :mod:`hwgen.cores.population`).

    Parameters
    ----------
    neurons : int
        P, neurons served (1 to 65536).
    width : int
        Input width in bits, two's complement (2 to 32).
    frac : int
        Input fractional bits (documentation of the scale).
    lambda_pos, lambda_neg : int
        Base thresholds (smallest levels) in input LSBs, at least 1.
    levels : int
        n, levels per sign (1 to 16).
    time_steps : int
        T, steps per sample, which bounds the membrane range.
    """

    def __init__(self, *, neurons: int = 64, width: int = 16, frac: int = 8,
                 lambda_pos: int = 64, lambda_neg: int = 48, levels: int = 8,
                 time_steps: int = 16):
        check_int("width", width, minimum=2, maximum=32)
        self.config = MTConfig(Format(width, frac), lambda_pos, lambda_neg, levels, time_steps)
        super().__init__(neurons=neurons, input_format=self.config.input_format,
                         membrane_format=self.config.membrane_format,
                         initial_potential=0, output_layout=mt_code_layout(levels))

    @property
    def update_depth(self) -> int:
        return 3

    def update_stages(self, m: Module, advance, v_old, x):
        cfg = self.config
        shape = signed(self.membrane_format.width)
        pos, neg = cfg.thresholds
        layout = mt_code_layout(cfg.levels)

        width = self.membrane_format.width
        # Where the reset map can take a potential of the format out of it (a negative spike
        # from the lowest potential when lambda_neg = 2**width), the membrane after the reset is
        # computed one bit wider and tested too; the emitted values (at most 2**width in
        # magnitude, as every threshold lies in the format) then need that bit as well.
        # Elsewhere the difference is exact modulo 2**width, which is all the write-back keeps.
        wide_reset = not self.reset_keeps_format()
        emit_shape = signed(width + 1) if wide_reset else shape
        # Stage 1: the sum one bit wider than the membrane (the input is no wider than the
        # membrane, so it cannot wrap); the update uses its low bits, and the overflow test of
        # its top two travels with the update (ovf[1], ovf[2]).
        total = Signal(signed(width + 1), reset_less=True)
        u = [Signal(shape, name=f"u_{s}", reset_less=True) for s in range(3)]
        ovf = [None] + [Signal(name=f"ovf_{s}", reset_less=True) for s in (1, 2)]
        m.d.comb += u[0].eq(total)
        hit_pos = Signal(cfg.levels, reset_less=True)
        hit_neg = Signal(cfg.levels, reset_less=True)
        emit = Signal(emit_shape, reset_less=True)
        code = Signal(layout, reset_less=True)
        with m.If(advance):
            m.d.sync += [total.eq(v_old + x), u[1].eq(u[0]), u[2].eq(u[1]),
                         ovf[1].eq(total[width] ^ total[width - 1]), ovf[2].eq(ovf[1])]
            # Stage 2: all 2n comparisons with constants, in parallel.
            m.d.sync += [hit_pos[k].eq(u[0] >= t) for k, t in enumerate(pos)]
            m.d.sync += [hit_neg[k].eq(u[0] <= t) for k, t in enumerate(neg)]

        # Stage 3: both hit sets are thermometers (a hit at level k implies hits below it), so
        # "the level that fires lies in [a, b]" is hit[a] & ~hit[b + 1]. Every output bit is
        # written as an OR of such runs of levels, a few terms each, rather than an OR over the
        # one-hot levels, whose terms the LUT mapper cannot merge (it does not know the
        # thermometer property): the emit logic is then one or two LUTs deep instead of five.
        def levels_setting(hit, value_of_level, j):
            """Whether the level that fires (per ``hit``) has bit j set in its value (two's
            complement: ``>>`` of a negative Python integer extends its sign)."""
            runs, k = [], 0
            while k < cfg.levels:
                if (value_of_level(k) >> j) & 1:
                    start = k
                    while k < cfg.levels and (value_of_level(k) >> j) & 1:
                        k += 1
                    runs.append(hit[start] & ~hit[k] if k < cfg.levels else hit[start])
                else:
                    k += 1
            return reduce(or_, runs, C(0))

        def either_sign(j, positive, negative):
            return levels_setting(hit_pos, positive, j) | levels_setting(hit_neg, negative, j)

        def level(k):
            return k

        with m.If(advance):
            m.d.sync += [
                emit.eq(Cat(*(either_sign(j, lambda k: cfg.lambda_pos << k,
                                          lambda k: -(cfg.lambda_neg << k))
                              for j in range(emit_shape.width)))),
                code.fire.eq(hit_pos[0] | hit_neg[0]),
                code.negative.eq(hit_neg[0]),
                code.k.eq(Cat(*(either_sign(j, level, level) for j in range(len(code.k))))),
            ]
        if not wide_reset:
            return u[2] - emit, code, ovf[2]
        after = Signal(signed(width + 1))
        m.d.comb += after.eq(u[2] - emit)
        return after, code, ovf[2] | (after[width] ^ after[width - 1])

    def reference_outputs(self, x) -> list[dict]:
        cfg = self.config
        codes = mt_neuron(self.input_format.check("x", x), cfg.lambda_pos, cfg.lambda_neg,
                          cfg.levels).codes
        return [{"fire": int(c != 0), "negative": int(c < 0), "k": abs(int(c)).bit_length() - 1
                 if c else 0} for c in codes.flatten()]

    def reference_membranes(self, x):
        cfg = self.config
        result = mt_neuron(self.input_format.check("x", x), cfg.lambda_pos, cfg.lambda_neg,
                           cfg.levels, record_potential=True)
        return result.u, result.u - mt_decode(result.codes, cfg.lambda_pos, cfg.lambda_neg)
