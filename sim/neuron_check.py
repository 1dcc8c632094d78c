"""Bit-exact regression of a neuron population core against its golden twin on Verilator.

One run streams, in order: every edge-case and random sample under random valid and ready
stalls; a few samples with no stalls (to measure cycles per update); a sample cut off by a
reset after a random number of beats (what came out before the reset must be a prefix of the
golden outputs); and the samples again under heavy back-pressure. Every output bit is compared.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from golden.stimulus import samples_for

from .payload import pack, unpack
from .runner import plan_segment, run_plan, verilator_model

__all__ = ["NeuronCheck", "check_neuron_core"]


@dataclass(frozen=True)
class NeuronCheck:
    updates_checked: int
    samples: int
    cycles_per_update: float
    cycles: int


def _first_mismatch(core, beats, expected, got):
    o_layout = core.o.payload.shape()
    for n, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            step, neuron = divmod(n, core.neurons)
            return (f"output {n} (time step {step % core.config.time_steps} of its sample, "
                    f"neuron {neuron}): input {beats[n]}, expected {unpack(o_layout, e)}, "
                    f"got {unpack(o_layout, g)}")
    return None


def check_neuron_core(core, name: str, work_dir: Path, *, min_updates: int = 10_000,
                      seed: int = 0) -> NeuronCheck:
    """Run the regression; raise AssertionError describing the first mismatch."""
    i_layout, o_layout = core.i.payload.shape(), core.o.payload.shape()
    samples = samples_for(core.config, core.neurons, min_updates=min_updates, seed=seed)
    beats, expected = [], []
    for x in samples:
        beats += core.input_beats(x)
        expected += [pack(o_layout, o) for o in core.reference_outputs(x)]
    words = [pack(i_layout, b) for b in beats]
    per_sample = core.config.time_steps * core.neurons
    rng = random.Random(seed)
    quick = min(len(samples), max(1, 2000 // per_sample)) * per_sample
    cut = rng.randrange(1, per_sample)

    segments = [
        plan_segment(words, len(words), valid_prob=0.7, ready_prob=0.6, seed=seed),
        plan_segment(words[:quick], quick, valid_prob=1.0, ready_prob=1.0, seed=seed + 1),
        plan_segment(words[:per_sample], per_sample, valid_prob=0.8, ready_prob=0.8,
                     seed=seed + 2, reset_after=cut),
        plan_segment(words, len(words), valid_prob=0.5, ready_prob=0.3, seed=seed + 3),
    ]
    results = run_plan(verilator_model(core, name), segments, work_dir)

    for label, segment, result, want in zip(
            ["random stalls", "no stalls", "reset mid-sample", "after reset, back-pressure"],
            segments, results, [expected, expected[:quick], expected[:per_sample], expected]):
        got = result["outputs"]
        mismatch = _first_mismatch(core, beats, want, got)
        if mismatch:
            raise AssertionError(f"{name}, segment '{label}': {mismatch}")
        if segment["reset_after"] is None:
            assert len(got) == len(want), f"{name}, segment '{label}': {len(got)} outputs, " \
                                          f"expected {len(want)}"
        else:
            assert result["accepted"] == cut, f"{name}: reset came after {result['accepted']} beats"
    no_stall = results[1]
    interval = no_stall["last_accept_cycle"] - no_stall["first_accept_cycle"]
    return NeuronCheck(
        updates_checked=2 * len(words) + quick + len(results[2]["outputs"]),
        samples=len(samples), cycles_per_update=interval / (quick - 1),
        cycles=sum(r["cycles"] for r in results))
