"""Multi-threshold (ECMT) neuron population core; golden twin :mod:`golden.mt_neuron` (D4)."""

from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from golden.fixed import Format, check_int
from golden.mt_neuron import MTConfig, mt_neuron

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
    inputs cannot overflow. No multipliers: the levels are constants.

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

        u = [Signal(shape, name=f"u_{s}", reset_less=True) for s in range(3)]
        hit_pos = Signal(cfg.levels, reset_less=True)
        hit_neg = Signal(cfg.levels, reset_less=True)
        emit = Signal(shape, reset_less=True)
        code = Signal(layout, reset_less=True)
        with m.If(advance):
            m.d.sync += [u[0].eq(v_old + x), u[1].eq(u[0]), u[2].eq(u[1])]
            # Stage 2: all 2n comparisons with constants, in parallel.
            m.d.sync += [hit_pos[k].eq(u[0] >= t) for k, t in enumerate(pos)]
            m.d.sync += [hit_neg[k].eq(u[0] <= t) for k, t in enumerate(neg)]

        # Stage 3: both hit sets are thermometers (a hit at level k implies hits below it), so
        # the level that fires is the one whose hit is not followed by a hit above: one-hot, at
        # most one sign hot, and the emitted value is an AND-OR of constants.
        terms = []
        for k in range(cfg.levels):
            above_pos = hit_pos[k + 1] if k + 1 < cfg.levels else C(0)
            above_neg = hit_neg[k + 1] if k + 1 < cfg.levels else C(0)
            terms.append((hit_pos[k] & ~above_pos, cfg.lambda_pos << k, k))
            terms.append((hit_neg[k] & ~above_neg, -(cfg.lambda_neg << k), k))
        with m.If(advance):
            m.d.sync += [
                emit.eq(reduce(or_, (Mux(hot, C(value, shape), 0) for hot, value, _ in terms))),
                code.fire.eq(hit_pos[0] | hit_neg[0]),
                code.negative.eq(hit_neg[0]),
                code.k.eq(reduce(or_, (Mux(hot, k, 0) for hot, _, k in terms))),
            ]
        return u[2] - emit, code

    def reference_outputs(self, x) -> list[dict]:
        cfg = self.config
        codes = mt_neuron(self.input_format.check("x", x), cfg.lambda_pos, cfg.lambda_neg,
                          cfg.levels).codes
        return [{"fire": int(c != 0), "negative": int(c < 0), "k": abs(int(c)).bit_length() - 1
                 if c else 0} for c in codes.flatten()]
