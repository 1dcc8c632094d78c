"""Bit-exact regression of a neuron population core against its golden twin on Verilator.

The core runs inside :class:`FlaggedOutputs`, pure wiring that appends the core's sticky
``overflow`` flag to every output beat as it is while the beat is offered, so the flag is
checked beat by beat together with the outputs. One run streams, in order:

1. every edge-case and random sample (:func:`golden.stimulus.samples_for`, none longer than
   ``time_steps``) under random valid and ready stalls;
2. a few of them with no stalls (to measure cycles per update);
3. a sample cut off by a reset after a random number of beats (what came out before the reset
   must be a prefix of the golden outputs);
4. the samples again under heavy back-pressure;
5. :func:`overlong_samples`, deliberately longer than ``time_steps`` so that membranes leave
   the membrane format, under random stalls, then a reset;
6. after that reset, the samples of 2 again.

In 1–4 and 6 every output must equal golden and the flag must stay 0 (6 shows that the reset
cleared it). In 5 the flag must be 0 up to the beat of the first update whose golden membrane
leaves the format and 1 from that beat on, and every output must equal golden except those of
a neuron from its first overflowing update to the end of that sample (:func:`expected_stream`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.stimulus import random_samples, samples_for
from hwgen.cores.population import NeuronPopulation

from .payload import pack, unpack
from .runner import plan_segment, run_plan, verilator_model

__all__ = ["NeuronCheck", "ExpectedStream", "FlaggedOutputs", "check_neuron_core",
           "expected_stream", "neuron_model", "overlong_samples"]


class FlaggedOutputs(wiring.Component):
    """A neuron population core whose output beats carry its ``overflow`` flag.

    ``i`` is the core's input stream; ``o`` carries ``{out: the core's payload, overflow: 1}``,
    ``overflow`` being the core's flag in the cycle the beat is offered (the flag changes only
    when the core loads a new output beat, so a waiting beat keeps its payload). Wiring only.
    """

    def __init__(self, core: NeuronPopulation):
        if not isinstance(core, NeuronPopulation):
            raise TypeError(f"core must be a neuron population core, not {core!r}")
        self._core = core
        super().__init__({
            "i": In(stream.Signature(core.i.payload.shape())),
            "o": Out(stream.Signature(data.StructLayout({"out": core.o.payload.shape(),
                                                         "overflow": 1}))),
        })

    @property
    def core(self) -> NeuronPopulation:
        return self._core

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        wiring.connect(m, wiring.flipped(self.i), core.i)
        m.d.comb += [
            self.o.valid.eq(core.o.valid),
            core.o.ready.eq(self.o.ready),
            self.o.payload.out.eq(core.o.payload),
            self.o.payload.overflow.eq(core.overflow),
        ]
        return m


def neuron_model(core: NeuronPopulation, name: str):
    """The Verilator model :func:`check_neuron_core` runs: ``core`` in :class:`FlaggedOutputs`,
    emitted as module ``name`` (cached like :func:`sim.runner.verilator_model`)."""
    return verilator_model(FlaggedOutputs(core), name)


@dataclass(frozen=True)
class ExpectedStream:
    """What a core must do with a stream of samples, beat by beat (stream order)."""

    beats: list[dict]  #: input payloads
    outputs: list[dict]  #: ``{"out": golden payload, "overflow": flag}`` per output beat
    exact: list[bool]  #: whether ``out`` must equal golden (see :func:`expected_stream`)
    where: list[str]  #: "sample s, time step t, neuron j" of each beat, for messages
    first_overflow: int | None  #: the beat with which the flag must rise (None: it must not)


def expected_stream(core: NeuronPopulation, samples, *,
                    beyond_time_steps: bool = False) -> ExpectedStream:
    """The golden expectation for ``samples`` streamed back to back after a reset.

    The flag is 0 before the first beat whose golden update leaves the membrane format
    (:meth:`~hwgen.cores.population.NeuronPopulation.reference_overflows`) and 1 from that
    beat on, also through later samples (it is cleared by reset only). The output of a neuron
    must equal golden up to its first overflowing update in a sample; from that update to the
    end of the sample it is not checked (the membrane has wrapped); the next sample starts the
    neuron afresh. Samples longer than ``time_steps`` need ``beyond_time_steps``.
    """
    beats, outputs, exact, where = [], [], [], []
    first_overflow, flag = None, 0
    for s, x in enumerate(samples):
        beats += core.input_beats(x, beyond_time_steps=beyond_time_steps)
        golden = core.reference_outputs(x)
        overflows = torch.tensor(core.reference_overflows(x), dtype=torch.int64)
        # Per neuron, from its first overflowing update to the end of the sample.
        spoilt = overflows.reshape(x.shape).cummax(dim=0).values.flatten()
        for n, (out, overflow, bad) in enumerate(zip(golden, overflows.tolist(),
                                                     spoilt.tolist())):
            if overflow and first_overflow is None:
                first_overflow = len(outputs)
            flag |= overflow
            outputs.append({"out": out, "overflow": flag})
            exact.append(not bad)
            step, neuron = divmod(n, core.neurons)
            where.append(f"sample {s}, time step {step}, neuron {neuron}")
    return ExpectedStream(beats, outputs, exact, where, first_overflow)


def overlong_samples(core: NeuronPopulation, *, seed: int = 0, margin: int = 2,
                     horizon: int | None = None) -> list[torch.Tensor]:
    """Two samples made to overflow the membrane: one longer than ``time_steps``, then a short
    one (two steps) that does not.

    The long sample holds the input format's maximum in one neuron, its minimum in another
    and alternates them in a third, at seeded random neurons, the one that overflows first
    placed first when there are fewer than three neurons; the other neurons get uniform random
    input. It lasts ``margin`` steps past the first golden overflow of the placed extremes,
    and at least ``time_steps + 1`` steps (nothing overflows within ``time_steps``: D1). If
    none overflows within ``horizon`` steps (default ``4 * time_steps + 8``; an MT neuron whose
    top level outweighs every input never does), it lasts ``2 * time_steps`` steps and nothing
    need overflow. The short sample shows that the flag stays up and that a ``first`` beat
    restarts the neurons exactly. Stream them with ``beyond_time_steps=True``.
    """
    config, neurons = core.config, core.neurons
    fmt, T = core.input_format, config.time_steps
    horizon = 4 * T + 8 if horizon is None else horizon
    hi, lo = fmt.max_int, fmt.min_int
    length = max(horizon, 2 * T) + margin + 1  # enough for any sample length chosen below
    held = torch.stack([torch.full((length,), hi), torch.full((length,), lo),
                        torch.tensor([hi if t % 2 == 0 else lo for t in range(length)])], dim=1)
    outside = torch.tensor(core.reference_overflows(held[:horizon])).reshape(horizon, 3)
    first = [int(outside[:, c].nonzero()[0]) if outside[:, c].any() else horizon
             for c in range(3)]
    # The sequence that overflows first goes in first (a core may have fewer than 3 neurons).
    order = sorted(range(3), key=lambda c: first[c])[:neurons]
    earliest = first[order[0]]
    steps = max(T + 1, earliest + 1 + margin if earliest < horizon else 2 * T)

    generator = torch.Generator().manual_seed(seed)
    long = torch.randint(lo, hi + 1, (steps, neurons), generator=generator)
    columns = torch.randperm(neurons, generator=generator).tolist()
    for column, c in zip(columns, order):
        long[:, column] = held[:steps, c]
    short = random_samples(config, neurons, 1, generator)[0][:min(2, T)]
    return [long, short]


@dataclass(frozen=True)
class NeuronCheck:
    updates_checked: int  #: output beats compared with golden (all segments)
    samples: int  #: samples within time_steps (segment 1)
    cycles_per_update: float  #: measured without stalls (segment 2)
    cycles: int  #: cycles of all segments
    overlong_steps: int  #: length of the overlong sample (segment 5)
    overflow_beat: int | None  #: beat of segment 5 with which the flag rose (None: no overflow)


def _first_mismatch(layout, want: ExpectedStream, got: list[int]) -> str | None:
    for n, (e, g, exact) in enumerate(zip(want.outputs, got, want.exact)):
        g = unpack(layout, g)
        if g["overflow"] != e["overflow"] or (exact and g["out"] != e["out"]):
            what = "overflow flag" if g["overflow"] != e["overflow"] else "output"
            return (f"{what} of beat {n} ({want.where[n]}): input {want.beats[n]}, expected "
                    f"{e}, got {g}" + ("" if exact else " (output not checked: overflowed)"))
    return None


def _prefix(want: ExpectedStream, count: int) -> ExpectedStream:
    return ExpectedStream(want.beats[:count], want.outputs[:count], want.exact[:count],
                          want.where[:count], want.first_overflow
                          if want.first_overflow is not None and want.first_overflow < count
                          else None)


def check_neuron_core(core, name: str, work_dir: Path, *, min_updates: int = 10_000,
                      seed: int = 0) -> NeuronCheck:
    """Run the regression; raise AssertionError describing the first mismatch."""
    model = neuron_model(core, name)
    i_layout, o_layout = core.i.payload.shape(), model.core.o.payload.shape()
    samples = samples_for(core.config, core.neurons, min_updates=min_updates, seed=seed)
    normal = expected_stream(core, samples)
    long_samples = overlong_samples(core, seed=seed)
    overlong = expected_stream(core, long_samples, beyond_time_steps=True)
    words = [pack(i_layout, b) for b in normal.beats]
    long_words = [pack(i_layout, b) for b in overlong.beats]
    per_sample = core.config.time_steps * core.neurons
    rng = random.Random(seed)
    quick = min(len(samples), max(1, 2000 // per_sample)) * per_sample
    cut = rng.randrange(1, per_sample) if per_sample > 1 else 1

    segments = [
        plan_segment(words, len(words), valid_prob=0.7, ready_prob=0.6, seed=seed),
        plan_segment(words[:quick], quick, valid_prob=1.0, ready_prob=1.0, seed=seed + 1),
        plan_segment(words[:per_sample], per_sample, valid_prob=0.8, ready_prob=0.8,
                     seed=seed + 2, reset_after=cut),
        plan_segment(words, len(words), valid_prob=0.5, ready_prob=0.3, seed=seed + 3),
        plan_segment(long_words, len(long_words), valid_prob=0.7, ready_prob=0.6,
                     seed=seed + 4, reset_at_end=True),
        plan_segment(words[:quick], quick, valid_prob=0.8, ready_prob=0.8, seed=seed + 5),
    ]
    labels = ["random stalls", "no stalls", "reset mid-sample", "after reset, back-pressure",
              "overlong samples (overflow)", "after the overflow and a reset"]
    wants = [normal, _prefix(normal, quick), _prefix(normal, per_sample), normal, overlong,
             _prefix(normal, quick)]
    results = run_plan(model, segments, work_dir)

    checked = 0
    for label, segment, result, want in zip(labels, segments, results, wants):
        got = result["outputs"]
        mismatch = _first_mismatch(o_layout, want, got)
        if mismatch:
            raise AssertionError(f"{name}, segment '{label}': {mismatch}")
        if segment["reset_after"] is None:
            assert len(got) == len(want.outputs), \
                f"{name}, segment '{label}': {len(got)} outputs, expected {len(want.outputs)}"
        else:
            assert result["accepted"] == cut, f"{name}: reset came after {result['accepted']} beats"
        checked += sum(want.exact[:len(got)])
    no_stall = results[1]
    interval = no_stall["last_accept_cycle"] - no_stall["first_accept_cycle"]
    return NeuronCheck(
        updates_checked=checked, samples=len(samples),
        cycles_per_update=interval / (quick - 1) if quick > 1 else float("nan"),
        cycles=sum(r["cycles"] for r in results),
        overlong_steps=int(long_samples[0].shape[0]),
        overflow_beat=overlong.first_overflow)
