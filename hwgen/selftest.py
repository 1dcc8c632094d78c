"""On-chip self-test of a neuron core against golden vectors stored in ROM.

:class:`SelfTest` feeds a core from a ROM of input beats, checks every output beat against a ROM
of expected beats, and loops over the vector set forever, with pseudo-random gaps on the input
stream and pseudo-random back-pressure on the output stream, so a board top can show on LEDs
that the core, as placed and routed, computes what the golden model computes.

:func:`neuron_selftest_vectors` builds the ROM contents for an IF or MT population from the
golden model at build time, with a fixed seed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from amaranth import Cat, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from golden.fixed import check_int
from golden.if_neuron import if_neuron
from golden.mt_neuron import mt_neuron

from .cores.if_neuron import IFPopulation
from .cores.mt_neuron import MTPopulation

__all__ = ["SelfTest", "SelfTestVectors", "neuron_selftest_vectors"]


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
    complete).

    Stimulus: ``i.valid`` is offered in about 3 of 4 cycles (a 16-bit LFSR) and, once high,
    held with the same payload until the core takes the beat. Back-pressure: ``o.ready`` is high
    in about 3 of 4 cycles (a 15-bit LFSR, independent of ``o.valid``). Every transfer on ``o``
    is compared with the expected entry.

    Ports
    -----
    passed : Out(1)
        High once at least one full pass over the expected ROM has completed and no output has
        ever mismatched.
    failed : Out(1)
        Sticky: high from the cycle after the first mismatching output beat until reset.
    passes : Out(16)
        Completed passes over the expected ROM, saturating at 65535.

    A pass takes about ``len(expected) / (9/16 * core.throughput)`` cycles: each side moves a
    beat in 3 of 4 cycles on average. The first input beat is offered one cycle after reset
    (the ROM read has one cycle of latency).
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

        # Input side. Each read port presents the entry at its index register; on a transfer it
        # is addressed one ahead so the next entry is there the following cycle. ``primed`` covers
        # the first cycle, before any read has completed.
        last_in = len(self._inputs) - 1
        in_index = Signal(range(len(self._inputs)))
        in_next = Mux(in_index == last_in, 0, in_index + 1)
        primed = Signal()
        offer = Signal()
        in_transfer = Signal()
        m.d.sync += primed.eq(1)
        m.d.comb += [
            in_transfer.eq(core.i.valid & core.i.ready),
            stimulus_rd.addr.eq(Mux(in_transfer, in_next, in_index)),
            core.i.payload.eq(stimulus_rd.data),
            core.i.valid.eq(offer & primed),
        ]
        with m.If(in_transfer):
            m.d.sync += in_index.eq(in_next)
        # A new offer is drawn only when there is none pending: valid, once high, stays high.
        with m.If(~offer | in_transfer):
            m.d.sync += offer.eq(gaps[0] | gaps[1])

        # Output side.
        last_out = len(self._expected) - 1
        out_index = Signal(range(len(self._expected)))
        out_next = Mux(out_index == last_out, 0, out_index + 1)
        out_transfer = Signal()
        completed = Signal()
        m.d.comb += [
            core.o.ready.eq(stalls[0] | stalls[1]),
            out_transfer.eq(core.o.valid & core.o.ready),
            reference_rd.addr.eq(Mux(out_transfer, out_next, out_index)),
        ]
        with m.If(out_transfer):
            m.d.sync += out_index.eq(out_next)
            with m.If(Value.cast(core.o.payload) != reference_rd.data):
                m.d.sync += self.failed.eq(1)
            with m.If(out_index == last_out):
                m.d.sync += completed.eq(1)
                with m.If(self.passes != (1 << 16) - 1):
                    m.d.sync += self.passes.eq(self.passes + 1)
        m.d.comb += self.passed.eq(completed & ~self.failed)
        return m


class SelfTestVectors(NamedTuple):
    inputs: list[int]  #: input beats, ``core.i`` payloads packed as unsigned integers
    expected: list[int]  #: expected output beats, ``core.o`` payloads packed likewise


def _edge_patterns(core) -> list[list[int]]:
    """Per-neuron input sequences (T values each) that probe format extremes and ties."""
    cfg = core.config
    steps = cfg.time_steps
    lo, hi = cfg.input_format.min_int, cfg.input_format.max_int
    patterns = [
        [hi] * steps,
        [lo] * steps,
        [0] * steps,
        [hi if t % 2 == 0 else lo for t in range(steps)],
        [lo if t % 2 == 0 else hi for t in range(steps)],
    ]
    # The first step lands the membrane on a threshold (or one below / above it); the later
    # steps add exactly what a spike at that threshold subtracts, landing on it again.
    if isinstance(core, IFPopulation):
        start = cfg.threshold - cfg.initial_potential
        for d in (0, -1, 1):
            patterns.append([start + d] + [cfg.threshold] * (steps - 1))
    else:
        pos, neg = cfg.thresholds
        for k in range(cfg.levels):
            for d in (0, -1, 1):
                patterns.append([pos[k] + d] + [cfg.lambda_pos << k] * (steps - 1))
                patterns.append([neg[k] - d] + [-(cfg.lambda_neg << k)] * (steps - 1))
    unique = {}
    for pattern in patterns:
        unique.setdefault(tuple(min(hi, max(lo, v)) for v in pattern), None)
    return [list(p) for p in unique]


def neuron_selftest_vectors(core, samples: int = 1, seed: int = 1) -> SelfTestVectors:
    """Golden input and output beats for an :class:`IFPopulation` or :class:`MTPopulation`.

    A sample is ``T = core.config.time_steps`` steps of one input per neuron. The vector set is
    ``E`` edge samples followed by ``samples`` random samples, where the edge samples give one
    neuron each of the edge patterns: every step at the input format's maximum, at its minimum,
    zero, alternating extremes, and ties (the membrane landing exactly on a threshold, and one
    below and above it, on every step; for MT at every level and both signs). ``E`` is the
    number of patterns divided by the neuron count, rounded up. Neurons not given a pattern get
    random inputs: even neurons uniform over the whole input format, odd neurons uniform over the
    thresholds' scale (``±2 * threshold`` for IF, ``±lambda * 2**(levels-1)`` for MT), clamped
    to the format. Random values come from a ``torch.Generator`` seeded with ``seed``.

    Beats are ordered as the core takes them: sample, then time step, then neuron; ``first`` is 1
    on every beat of a sample's first step. The expected beats are the golden model's outputs
    (:func:`golden.if_neuron.if_neuron`, :func:`golden.mt_neuron.mt_neuron` with the core's
    config), one per input beat, packed in the core's output layout (MT: ``fire``, ``negative``,
    ``k`` with ``k = 0`` when silent).
    """
    if not isinstance(core, (IFPopulation, MTPopulation)):
        raise TypeError(f"core must be an IFPopulation or MTPopulation, not {core!r}")
    check_int("samples", samples, minimum=0, maximum=1 << 16)
    check_int("seed", seed, minimum=0)
    cfg = core.config
    steps, neurons = cfg.time_steps, core.neurons
    lo, hi = cfg.input_format.min_int, cfg.input_format.max_int

    patterns = _edge_patterns(core)
    edge_samples = -(-len(patterns) // neurons)
    total = edge_samples + samples

    generator = torch.Generator().manual_seed(seed)
    if isinstance(core, IFPopulation):
        scale_lo, scale_hi = -2 * cfg.threshold, 2 * cfg.threshold
    else:
        scale_lo = -(cfg.lambda_neg << (cfg.levels - 1))
        scale_hi = cfg.lambda_pos << (cfg.levels - 1)
    scale_lo, scale_hi = max(lo, scale_lo), min(hi, scale_hi)
    shape = (total, steps, neurons)
    full = torch.randint(lo, hi + 1, shape, generator=generator)
    scaled = torch.randint(scale_lo, scale_hi + 1, shape, generator=generator)
    x = torch.where(torch.arange(neurons) % 2 == 0, full, scaled)
    for slot, pattern in enumerate(patterns):
        x[slot // neurons, :, slot % neurons] = torch.tensor(pattern)

    # Golden models take (T, ...) and run every (sample, neuron) independently.
    by_step = x.permute(1, 0, 2)
    if isinstance(core, IFPopulation):
        out = if_neuron(by_step, cfg.threshold, cfg.initial_potential).spikes
    else:
        out = mt_neuron(by_step, cfg.lambda_pos, cfg.lambda_neg, cfg.levels).codes
    out = out.permute(1, 0, 2)

    in_layout = core.i.payload.shape()
    out_layout = core.o.payload.shape()
    inputs, expected = [], []
    for s in range(total):
        for t in range(steps):
            for n in range(neurons):
                inputs.append(in_layout.const(
                    {"x": int(x[s, t, n]), "first": int(t == 0)}).as_value().value)
                value = int(out[s, t, n])
                if isinstance(core, IFPopulation):
                    fields = {"spike": value}
                else:
                    fields = {"fire": int(value != 0), "negative": int(value < 0),
                              "k": abs(value).bit_length() - 1 if value else 0}
                expected.append(out_layout.const(fields).as_value().value)
    return SelfTestVectors(inputs, expected)
