"""On-chip self-test of a core against golden vectors stored in ROM.

:class:`SelfTest` feeds a core from a ROM of input beats, checks every output beat against a ROM
of expected beats, and loops over the vector set forever, with pseudo-random gaps on the input
stream and pseudo-random back-pressure on the output stream, so a board top can show on LEDs
that the core, as placed and routed, computes what the golden model computes.

:func:`neuron_selftest_vectors` (IF or MT population), :func:`softmax_selftest_vectors` (spiking
softmax) and :func:`attention_selftest_vectors` (attention head) build the ROM contents from the
golden model at build time, with a fixed seed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from amaranth import Cat, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from golden.attention import attention_head, random_codes
from golden.fixed import check_int
from golden.stimulus import edge_sequences, pack_sequences, random_samples, softmax_rows

from .cores.attention import AttentionHead
from .cores.population import NeuronPopulation
from .cores.softmax import SpikingSoftmax

__all__ = ["SelfTest", "SelfTestVectors", "attention_selftest_vectors", "neuron_selftest_vectors",
           "softmax_selftest_vectors"]


def _lfsr(m: Module, name: str, taps: tuple[int, ...], seed: int) -> Signal:
    """A Fibonacci LFSR stepping every cycle; ``taps`` are 1-based positions of a maximal-length
    polynomial, the first being the register width."""
    state = Signal(taps[0], name=name, init=seed)
    feedback = 0
    for tap in taps:
        feedback ^= state[tap - 1]
    m.d.sync += state.eq(Cat(feedback, state[:-1]))
    return state


class SelfTest(wiring.Component):
    """Runs ``core`` on ROM vectors forever and checks every output.

    The input ROM holds one ``core.i`` payload per entry and the expected ROM one ``core.o``
    payload per entry, both packed as unsigned integers (the bits of the payload layout). Entry n
    of the expected ROM must be the n-th output beat the core produces when fed the input ROM
    from its start; when a ROM is exhausted it restarts from entry 0, so the input set must leave
    the core ready to start over (for the neuron populations: whole samples, every sweep
    complete; for the softmax: whole rows; for the attention head: whole heads, each starting
    with ``first = 1``). Output ports of the core other than ``o`` (such as the attention head's
    ``overrun``) are left unconnected: the check is on the ``o`` beats alone.

    Stimulus: ``core.i.valid`` rises in about 3 of 4 free cycles (a 16-bit LFSR) and, once
    high, stays high with the same payload until the core takes the beat. ``core.i``'s valid
    and payload are registers loaded straight from the input ROM, and the check registers each
    output beat and its expected entry before comparing them, so no path runs from a ROM
    through logic into the core or from the core through logic into the check. Back-pressure:
    ``o.ready`` (a register) is high in about 3 of 4 cycles (a 15-bit LFSR, independent of
    ``o.valid``). Every transfer on ``o`` is compared with the expected entry.

    Ports
    -----
    passed : Out(1)
        High once at least one full pass over the expected ROM has completed and no output has
        ever mismatched.
    failed : Out(1)
        Sticky: high from the second cycle after the first mismatching output beat until reset.
    passes : Out(16)
        Completed passes over the expected ROM, saturating at 65535; counts up two cycles
        after the transfer of a pass's last output beat, when that beat has been checked.

    For a core that takes a beat in every cycle, a pass takes about ``len(expected) / (9/16)``
    cycles: each side moves a beat in 3 of 4 cycles on average. The first input beat reaches
    ``core.i`` two cycles after reset (the first draw and the ROM read share the first cycle,
    the input register takes the second).
    """

    def __init__(self, core: wiring.Component, inputs: list[int], expected: list[int]):
        if not isinstance(core, wiring.Component) or not {"i", "o"} <= set(core.signature.members):
            raise TypeError(f"core must be a wiring.Component with stream ports i and o, "
                            f"not {core!r}")
        self._core = core
        self._in_width = Shape.cast(core.i.payload.shape()).width
        self._out_width = Shape.cast(core.o.payload.shape()).width
        self._inputs = self._check_rom("inputs", inputs, self._in_width)
        self._expected = self._check_rom("expected", expected, self._out_width)
        super().__init__({
            "passed": Out(1),
            "failed": Out(1),
            "passes": Out(16),
        })

    @staticmethod
    def _check_rom(name: str, values, width: int) -> list[int]:
        values = list(values)
        if not values:
            raise ValueError(f"{name} must hold at least one beat")
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value < (1 << width):
                raise ValueError(f"{name}[{index}] must be an integer from 0 to "
                                 f"{(1 << width) - 1} (a {width}-bit payload), not {value!r}")
        return values

    @property
    def core(self) -> wiring.Component:
        return self._core

    @property
    def vectors(self) -> int:
        """Input beats per pass."""
        return len(self._inputs)

    @staticmethod
    def _rom_walk(m: Module, name: str, depth: int) -> tuple[Signal, Signal, Signal]:
        """The index of the current ROM entry, the index after it (both registers, wrapping at
        ``depth``) and the transfer strobe that advances them (to be driven by the caller)."""
        index = Signal(range(depth), name=f"{name}_index")
        after = Signal(range(depth), name=f"{name}_next", init=1 % depth)
        transfer = Signal(name=f"{name}_transfer")
        with m.If(transfer):
            m.d.sync += [index.eq(after), after.eq(Mux(after == depth - 1, 0, after + 1))]
        return index, after, transfer

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.stimulus = stimulus = memory.Memory(
            shape=unsigned(self._in_width), depth=len(self._inputs), init=self._inputs)
        m.submodules.reference = reference = memory.Memory(
            shape=unsigned(self._out_width), depth=len(self._expected), init=self._expected)
        stimulus_rd = stimulus.read_port()
        reference_rd = reference.read_port()

        gaps = _lfsr(m, "gap_lfsr", (16, 15, 13, 4), seed=0xACE1)
        stalls = _lfsr(m, "stall_lfsr", (15, 14), seed=0x1234)
        # The draws are registered so that each reaches the core straight from a flip-flop.
        offer, stall_free = Signal(), Signal()
        m.d.sync += [offer.eq(gaps[0] | gaps[1]), stall_free.eq(stalls[0] | stalls[1])]

        # Input side. ``core.i``'s valid and payload are registers loaded straight from the
        # ROM's read data whenever they are free (empty, or taken this cycle): no logic lies
        # between the ROM and the core, and an offered beat stays put until taken. The ROM is
        # read at ``in_index`` and, when an entry is loaded, one entry ahead at ``in_next`` (a
        # register, so no adder lies on the way to the address). ``offer`` is low in the first
        # cycle after reset, before any read has completed.
        in_index, in_next, in_advance = self._rom_walk(m, "in", len(self._inputs))
        load = Signal()
        m.d.comb += [
            load.eq(~core.i.valid | core.i.ready),
            in_advance.eq(load & offer),
            stimulus_rd.addr.eq(Mux(in_advance, in_next, in_index)),
        ]
        with m.If(load):
            m.d.sync += [core.i.valid.eq(offer), core.i.payload.eq(stimulus_rd.data)]

        # Output side.
        out_index, out_next, out_transfer = self._rom_walk(m, "out", len(self._expected))
        completed = Signal()
        m.d.comb += [
            core.o.ready.eq(stall_free),
            out_transfer.eq(core.o.valid & core.o.ready),
            reference_rd.addr.eq(Mux(out_transfer, out_next, out_index)),
        ]
        # The beat and its expected entry are registered and compared a cycle later, so the
        # block RAM's read data reaches a flip-flop directly. On ECP5 that read (unregistered,
        # as Yosys maps it: about 6 ns) is still the slowest path of the faster designs.
        got = Signal.like(reference_rd.data, name="got")
        want = Signal.like(reference_rd.data, name="want")
        check, check_last = Signal(), Signal()
        m.d.sync += [got.eq(Value.cast(core.o.payload)), want.eq(reference_rd.data),
                     check.eq(out_transfer), check_last.eq(out_index == len(self._expected) - 1)]
        with m.If(check):
            with m.If(got != want):
                m.d.sync += self.failed.eq(1)
            with m.If(check_last):
                m.d.sync += completed.eq(1)
                with m.If(self.passes != (1 << 16) - 1):
                    m.d.sync += self.passes.eq(self.passes + 1)
        m.d.comb += self.passed.eq(completed & ~self.failed)
        return m


class SelfTestVectors(NamedTuple):
    inputs: list[int]  #: input beats, ``core.i`` payloads packed as unsigned integers
    expected: list[int]  #: expected output beats, ``core.o`` payloads packed likewise
    samples: int  #: what the beats hold: samples (neuron populations), rows (softmax), heads


def _packed(core, beats: list[dict], outputs: list[dict]) -> tuple[list[int], list[int]]:
    """Input and output payloads packed as unsigned integers in the core's layouts."""
    in_layout, out_layout = core.i.payload.shape(), core.o.payload.shape()
    return ([in_layout.const(beat).as_value().value for beat in beats],
            [out_layout.const(out).as_value().value for out in outputs])


def neuron_selftest_vectors(core, samples: int = 1, seed: int = 1) -> SelfTestVectors:
    """Golden input and output beats for a neuron population core (IF or MT).

    The set is the edge-case samples of :func:`golden.stimulus.edge_sequences` (format extremes
    held for T steps, ties at every threshold, landing on a threshold at every step), laid out
    one sequence per neuron, followed by ``samples`` random samples
    (:func:`golden.stimulus.random_samples`), all drawn from a generator seeded with ``seed``.
    Beats are in the core's stream order (:meth:`NeuronPopulation.input_beats`); the expected
    beats are its golden twin's outputs (:meth:`NeuronPopulation.reference_outputs`), both
    packed as unsigned integers in the core's payload layouts.
    """
    if not isinstance(core, NeuronPopulation):
        raise TypeError(f"core must be a neuron population core, not {core!r}")
    check_int("samples", samples, minimum=0, maximum=1 << 16)
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    xs = pack_sequences(edge_sequences(core.config), core.neurons, core.config, generator)
    xs += random_samples(core.config, core.neurons, samples, generator)
    inputs, expected = [], []
    for x in xs:
        beats, outputs = _packed(core, core.input_beats(x), core.reference_outputs(x))
        inputs += beats
        expected += outputs
    return SelfTestVectors(inputs, expected, len(xs))


def softmax_selftest_vectors(core, rows: int = 32, seed: int = 1) -> SelfTestVectors:
    """Golden input and output beats for a spiking softmax core
    (:class:`~hwgen.cores.softmax.SpikingSoftmax`).

    The set is the edge rows of :func:`golden.stimulus.softmax_rows` (one-element, all-equal
    and saturating rows, rows of ``n_max`` scores, rows longer than ``n_max`` that the core cuts
    into pieces) followed by ``rows`` random rows of 1 to ``n_max`` scores, drawn with ``seed``.
    Beats are one score per beat, ``last`` on each row's final score; the expected beats are
    :meth:`~hwgen.cores.softmax.SpikingSoftmax.reference_outputs` (the golden counts, ``last``
    and ``cut``), both packed as unsigned integers in the core's payload layouts (the default
    core: 17 bits in, 11 out). ``samples`` counts the rows as given, before any cut.
    """
    if not isinstance(core, SpikingSoftmax):
        raise TypeError(f"core must be a spiking softmax core, not {core!r}")
    check_int("rows", rows, minimum=0, maximum=1 << 12)
    check_int("seed", seed, minimum=0)
    all_rows, _ = softmax_rows(core.table, core.n_max, rows, seed)
    inputs, expected = _packed(core, core.input_beats(all_rows), core.reference_outputs(all_rows))
    return SelfTestVectors(inputs, expected, len(all_rows))


#: Fire probabilities of the random heads of :func:`attention_selftest_vectors`, in turn.
ATTENTION_DENSITIES = (0.25, 0.5, 0.75, 1.0)


def attention_selftest_vectors(core, heads: int = 4, seed: int = 1) -> SelfTestVectors:
    """Golden input and output beats for an attention head core
    (:class:`~hwgen.cores.attention.AttentionHead`).

    The set is an edge head followed by ``heads`` random heads, every head ``time_steps`` steps
    long. In the edge head every code of q, k and v is the largest magnitude ``2**(levels - 1)``
    with the sign whose λ is larger (positive on a tie), so the running sums and both products
    reach the largest magnitudes the core's widths are derived for. The random heads draw each
    code independently: it fires (is nonzero) with the probability
    ``ATTENTION_DENSITIES[h % 4]`` (1/4, 1/2, 3/4, 1 in turn), with a uniform sign and a
    uniform level ``k < levels``; all from a generator seeded with ``seed``.

    Beats are in the core's stream order: per step, one beat per token with that token's
    ``head_dim`` codes of q, k and v, and ``first = 1`` on the beats of a head's first step.
    The expected beats are :func:`golden.attention.attention_head`'s output codes, one beat per
    token per step, ``last = 1`` on token ``tokens - 1``. Both are packed as unsigned integers in
    the core's payload layouts (the default head: 61 bits in, 21 out; 16 beats per head).
    """
    if not isinstance(core, AttentionHead):
        raise TypeError(f"core must be an attention head core, not {core!r}")
    check_int("heads", heads, minimum=0, maximum=1 << 12)
    check_int("seed", seed, minimum=0)
    cfg = core.config
    T, n, d, L = cfg.time_steps, cfg.tokens, cfg.head_dim, cfg.levels
    shape = (T, n, d)
    top = 1 << (L - 1)

    def largest(exponents):
        ep, en = exponents
        return torch.full(shape, top if ep >= en else -top, dtype=torch.int64)

    sets = [tuple(largest(e) for e in (cfg.q_exponents, cfg.k_exponents, cfg.v_exponents))]
    generator = torch.Generator().manual_seed(seed)
    for h in range(heads):
        density = ATTENTION_DENSITIES[h % len(ATTENTION_DENSITIES)]
        sets.append(tuple(random_codes(shape, L, density, generator) for _ in range(3)))

    inputs, expected = [], []
    for q, k, v in sets:
        beats, outputs = _packed(core, core.input_beats(q, k, v),
                                 core.output_beats(attention_head(q, k, v, cfg).out))
        inputs += beats
        expected += outputs
    return SelfTestVectors(inputs, expected, len(sets))
