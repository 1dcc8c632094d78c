"""SI-norm core, the accumulate-and-fire normaliser; golden twin :mod:`golden.si_norm` (D6).

The spiking definition (neuron with weight ``e`` fed N input spikes, threshold ``Vth``, start
``v_init``, reset by subtraction) fires ``c = floor((N·e + v_init) / Vth)`` times. The core
computes that quotient with a pipelined divider, one quotient bit per stage, most significant
first; ``N = 2**q`` makes ``N·e`` a shift. With ``e <= Vth`` (a softmax row) the quotient is at
most N, so q + 1 bits and stages suffice: the dividend is below ``(N + 1)·Vth <= 2N·Vth``.
Bit-identity with the spiking definition is tested exhaustively on small widths.

The divider is non-restoring: stage k subtracts ``Vth·2**k`` from a non-negative partial
remainder R and adds it to a negative one, and the quotient bit is 1 when the result is not
negative. This gives the same quotient bits as restoring division (a restoring step would keep
R after a failed subtraction and subtract ``Vth·2**(k-1)`` next, which leaves the same
remainder as keeping ``R - Vth·2**k`` and adding ``Vth·2**(k-1)``), and no multiplexer follows
the carry chain. The stages hold R folded, ``F = R XOR sign(R)`` (R itself when non-negative,
its one's complement ``-R - 1`` when negative), and the sign of R. Then both cases are the same
subtraction: ``F - Vth·2**k`` is ``R - Vth·2**k`` for R >= 0 and the one's complement of
``R + Vth·2**k`` for R < 0. So the next folded remainder is that difference XOR its own sign,
the next sign is the old sign XOR the difference's sign, and the quotient bit is the inverted
new sign. Each stage is one carry chain, vth's width plus 2 bits, fed straight from registers
(``~Vth`` is registered), followed by XORs; after stage k, ``0 <= F < Vth·2**k``, which bounds
the register widths. An input stage forms ``N·e + v_init``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.fixed import check_int
from golden.si_norm import check_power_of_two_N, check_rounding

__all__ = ["MAX_E_WIDTH", "SINorm", "VARIANTS", "check_norm_parameters"]

VARIANTS = ("pipelined", "iterative")
MAX_E_WIDTH = 48  #: widest exponential (e_width); the row sum adds log2(n_max) bits


def check_norm_parameters(N: int, rounding: str) -> int:
    """Validate N (a power of two, 1 to 2**24) and rounding; return q = log2(N)."""
    q = check_power_of_two_N(N)
    check_rounding(rounding)
    return q


def _tagged(fields: dict, tag_width: int) -> data.StructLayout:
    return data.StructLayout({**fields, **({"tag": unsigned(tag_width)} if tag_width else {})})


class SINorm(wiring.Component):
    """SI-norm neuron: ``c = floor((N·e + v_init) / vth)`` by a pipelined divider.

    Bit-exact with :func:`golden.si_norm.si_norm_spiking` (N input spikes of weight ``e``,
    threshold ``vth``, reset by subtraction) for ``e <= vth``, which holds when ``vth`` is the
    sum of a row of non-negative ``e`` (the softmax); for ``e > vth`` the result is
    unspecified. ``v_init`` is ``vth // 2`` (rounding "round") or 0 ("floor"); ``vth = 0``
    gives ``c = 0``. No multipliers: N = 2**q is a shift, the divider adds and compares.

    Streams: ``i`` carries ``{e: unsigned(e_width), vth: unsigned(e_width +
    ceil_log2(n_max))}`` (``vth`` holds the sum of up to ``n_max`` values of ``e``); ``o``
    carries ``{c: unsigned(q + 1)}``, the count out of N (q + 1 bits since c can equal N), one
    beat per input beat, in order. With ``tag_width > 0`` both payloads also carry ``tag``,
    copied from each input beat to its output beat.

    Latency q + 2 cycles (the input stage, then q + 1 divider steps) in both variants.
    Throughput: "pipelined", q + 1 divider stages, one beat per cycle; "iterative", one
    divider stage used q + 1 times, one beat every q + 1 cycles (the next beat enters as the
    last step of the previous one completes).

    Parameters
    ----------
    e_width : int
        Width of ``e`` (1 to 48).
    n_max : int
        Largest row length whose sum ``vth`` must hold (1 to 65536); sets the width of ``vth``.
    N : int
        Input spikes, a power of two 2**q (1 to 2**24); counts are out of N.
    rounding : str
        "round" (``v_init = vth // 2``, nearest) or "floor" (``v_init = 0``, the paper's).
    tag_width : int
        Width of an opaque ``tag`` field carried from input to output (0: no tag; 0 to 64).
    variant : str
        "pipelined" (one beat per cycle) or "iterative" (one beat per q + 1 cycles, smaller).
    """

    def __init__(self, *, e_width: int = 16, n_max: int = 16, N: int = 256,
                 rounding: str = "round", tag_width: int = 0, variant: str = "pipelined"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        self._variant = variant
        check_int("e_width", e_width, minimum=1, maximum=MAX_E_WIDTH)
        check_int("n_max", n_max, minimum=1, maximum=1 << 16)
        self._q = check_norm_parameters(N, rounding)
        check_int("tag_width", tag_width, minimum=0, maximum=64)
        self._e_width, self._n_max, self._N = e_width, n_max, N
        self._rounding, self._tag_width = rounding, tag_width
        self._vth_width = e_width + ceil_log2(n_max)
        super().__init__({
            "i": In(stream.Signature(_tagged({"e": unsigned(e_width),
                                              "vth": unsigned(self._vth_width)}, tag_width))),
            "o": Out(stream.Signature(_tagged({"c": unsigned(self._q + 1)}, tag_width))),
        })

    @property
    def N(self) -> int:
        return self._N

    @property
    def q(self) -> int:
        return self._q

    @property
    def rounding(self) -> str:
        return self._rounding

    @property
    def e_width(self) -> int:
        return self._e_width

    @property
    def vth_width(self) -> int:
        return self._vth_width

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to the earliest transfer of its output."""
        return self._q + 2

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def throughput(self) -> float:
        """Input beats accepted per cycle when neither side stalls."""
        return 1.0 if self._variant == "pipelined" else 1 / (self._q + 1)

    def reference_outputs(self, e, vth) -> list[dict]:
        """Output payloads (without tags) of the closed form for pairs ``e <= vth``."""
        out = []
        for ei, vi in zip(e, vth):
            ei, vi = int(ei), int(vi)
            v_init = vi // 2 if self._rounding == "round" else 0
            out.append({"c": (self._N * ei + v_init) // vi if vi else 0})
        return out

    def _dividend(self):
        """``(N·e + v_init, ~vth, vth == 0)`` of the input beat. The low q bits of v_init pass
        through: N·e has zeros there."""
        q, vw = self._q, self._vth_width
        e, vth = self.i.payload.e, self.i.payload.vth
        offset = Cat(vth >> 1 if self._rounding == "round" else Const(0, vw), Const(0, q))
        return Cat(offset[:q], e + offset[q:]), ~vth, vth == 0

    def _step(self, window, vth_inv, negative):
        """One non-restoring step on the ``vw + 1``-bit window of the folded remainder:
        (difference, flip, new sign)."""
        vw = self._vth_width
        # window - vth over vw + 1 bits, as window + ~vth + 1 with the 1 carried in through an
        # extra low bit: both operands come straight from registers.
        total = Cat(Const(1), window) + Cat(Const(1), vth_inv, Const(1))
        difference = total[1:vw + 2]
        flip = difference[-1]
        return difference, flip, negative ^ flip

    def _elaborate_iterative(self, m):
        q, vw = self._q, self._vth_width
        # The folded remainder is kept shifted so that the window of step k is always at bit q.
        folded = Signal(vw + q + 1, reset_less=True)
        negative = Signal(reset_less=True)
        vth_inv = Signal(vw, reset_less=True)
        zero = Signal(reset_less=True)
        tag = Signal(self._tag_width, reset_less=True)
        quotient = Signal(q + 1, reset_less=True)
        busy = Signal()
        step = Signal(range(q + 1))  # k: the step about to run, q down to 0
        advance = Signal()
        last = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), last.eq(busy & (step == 0)),
                     self.i.ready.eq(~busy | (last & advance))]
        difference, flip, new_negative = self._step(folded[q:q + vw + 1], vth_inv, negative)
        bits = Cat(~new_negative, quotient[:q])
        with m.If(advance):
            m.d.sync += self.o.valid.eq(0)
        with m.If(busy & ~last):
            m.d.sync += [
                folded.eq(Cat(Const(0, 1), (Cat(folded[:q], difference[:vw])
                                            ^ flip.replicate(q + vw)))),
                negative.eq(new_negative), quotient.eq(bits), step.eq(step - 1),
            ]
        with m.If(last & advance):
            # The divider gives all ones for vth = 0; the definition gives 0.
            m.d.sync += [self.o.valid.eq(1), self.o.payload.c.eq(Mux(zero, 0, bits)),
                         busy.eq(0)]
            if self._tag_width:
                m.d.sync += self.o.payload.tag.eq(tag)
        with m.If(self.i.valid & self.i.ready):
            dividend, inv, is_zero = self._dividend()
            m.d.sync += [folded.eq(dividend), negative.eq(0), vth_inv.eq(inv),
                         zero.eq(is_zero), quotient.eq(0), step.eq(q), busy.eq(1)]
            if self._tag_width:
                m.d.sync += tag.eq(self.i.payload.tag)
        return m

    def elaborate(self, platform):
        m = Module()
        if self._variant == "iterative":
            return self._elaborate_iterative(m)
        q, vw = self._q, self._vth_width
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]

        def stage(name, width):
            """Registers of a stage: valid, folded remainder, sign, ~vth, zero flag, tag."""
            return (Signal(name=f"valid_{name}"),
                    Signal(width, name=f"folded_{name}", reset_less=True),
                    Signal(name=f"negative_{name}", reset_less=True),
                    Signal(vw, name=f"vth_inv_{name}", reset_less=True),
                    Signal(name=f"zero_{name}", reset_less=True),
                    Signal(self._tag_width, name=f"tag_{name}", reset_less=True))

        # Input stage: the dividend N·e + v_init (below (N + 1)·vth <= 2N·vth when e <= vth).
        dividend, inv, is_zero = self._dividend()
        valid, folded, negative, vth_inv, zero, tag = stage("input", vw + q + 1)
        with m.If(advance):
            m.d.sync += [valid.eq(self.i.valid), folded.eq(dividend), negative.eq(0),
                         vth_inv.eq(inv), zero.eq(is_zero)]
            if self._tag_width:
                m.d.sync += tag.eq(self.i.payload.tag)

        quotient = Const(0, 0)
        for k in range(q, -1, -1):
            difference, flip, new_negative = self._step(folded[k:k + vw + 1], vth_inv, negative)
            quotient = Cat(~new_negative, quotient)
            if k == 0:
                with m.If(advance):
                    m.d.sync += self.o.valid.eq(valid)
                    # The divider gives all ones for vth = 0; the definition gives 0.
                    m.d.sync += self.o.payload.c.eq(Mux(zero, 0, quotient))
                    if self._tag_width:
                        m.d.sync += self.o.payload.tag.eq(tag)
                break
            nxt = stage(str(k), vw + k)
            bits = Signal(q - k + 1, name=f"quotient_{k}", reset_less=True)
            with m.If(advance):
                m.d.sync += [
                    nxt[0].eq(valid),
                    nxt[1].eq(Cat(folded[:k], difference[:vw]) ^ flip.replicate(vw + k)),
                    nxt[2].eq(new_negative),
                    nxt[3].eq(vth_inv), nxt[4].eq(zero), nxt[5].eq(tag),
                    bits.eq(quotient),
                ]
            valid, folded, negative, vth_inv, zero, tag = nxt
            quotient = bits
        return m
