"""Test stimulus for the neuron models: random samples and edge cases.

A *sample* is an integer tensor ``x`` of shape ``(T, P)``: T time steps of input to P neurons.
Edge cases are per-neuron input sequences (length T) chosen to hit the corners of the numeric
contract: format extremes held for all T steps (the largest membrane excursions), inputs that
land exactly on each firing threshold and one LSB either side (the ``>=`` ties of D2), and
alternating extremes.
"""

from __future__ import annotations

import torch

from .if_neuron import IFConfig
from .mt_neuron import MTConfig

__all__ = ["edge_sequences", "random_samples", "pack_sequences", "samples_for"]


def _hold(value: int, T: int) -> torch.Tensor:
    return torch.full((T,), value, dtype=torch.int64)


def _first_then(value: int, rest: int, T: int) -> torch.Tensor:
    seq = torch.full((T,), rest, dtype=torch.int64)
    seq[0] = value
    return seq


def edge_sequences(config: IFConfig | MTConfig) -> list[torch.Tensor]:
    """Per-neuron input sequences (each of length T) that exercise the edge cases."""
    fmt, T = config.input_format, config.time_steps
    lo, hi = fmt.min_int, fmt.max_int
    seqs = [_hold(hi, T), _hold(lo, T), _hold(0, T)]
    alternating = torch.tensor([hi if t % 2 == 0 else lo for t in range(T)], dtype=torch.int64)
    seqs += [alternating, -alternating.clamp(min=-hi)]
    # (first input, input on later steps): the first step lands the membrane on a threshold or
    # one LSB either side; then either nothing more, the same input again, or exactly what a
    # spike at that threshold subtracts, which lands on the same threshold at every step.
    if isinstance(config, IFConfig):
        v0, theta = config.initial_potential, config.threshold
        starts = [(theta - v0 + d, theta) for d in (-1, 0, 1)]
        starts += [(theta + d, theta) for d in (-1, 0, 1)]
    else:
        pos, neg = config.thresholds
        starts = [(pos[k] + d, config.lambda_pos << k) for k in range(config.levels)
                  for d in (-1, 0, 1)]
        starts += [(neg[k] + d, -(config.lambda_neg << k)) for k in range(config.levels)
                   for d in (-1, 0, 1)]
    for first, step in starts:
        if lo <= first <= hi:
            seqs += [_first_then(first, 0, T), _hold(first, T)]
            if lo <= step <= hi:
                seqs.append(_first_then(first, step, T))
    unique = {tuple(seq.tolist()): seq for seq in seqs}
    return list(unique.values())


def random_samples(config: IFConfig | MTConfig, neurons: int, count: int,
                   generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` samples of shape (T, neurons): half uniform over the input format, half
    concentrated near the thresholds, where the decisions are made."""
    fmt, T = config.input_format, config.time_steps
    if isinstance(config, IFConfig):
        scale = config.threshold
    else:
        scale = max(config.lambda_pos, config.lambda_neg) << (config.levels - 1)
    near_lo, near_hi = max(fmt.min_int, -2 * scale), min(fmt.max_int, 2 * scale)
    samples = []
    for n in range(count):
        lo, hi = (fmt.min_int, fmt.max_int) if n % 2 == 0 else (near_lo, near_hi)
        samples.append(torch.randint(lo, hi + 1, (T, neurons), generator=generator))
    return samples


def pack_sequences(seqs: list[torch.Tensor], neurons: int, config, generator) -> list[torch.Tensor]:
    """Lay per-neuron sequences side by side into samples of ``neurons`` columns; unused
    columns get random input."""
    samples = []
    for start in range(0, len(seqs), neurons):
        chunk = seqs[start:start + neurons]
        sample = random_samples(config, neurons, 1, generator)[0]
        for j, seq in enumerate(chunk):
            sample[:, j] = seq
        samples.append(sample)
    return samples


def samples_for(config: IFConfig | MTConfig, neurons: int, *, min_updates: int,
                seed: int) -> list[torch.Tensor]:
    """Edge-case samples first, then random samples covering at least ``min_updates`` neuron
    updates (T · P per sample) on their own."""
    generator = torch.Generator().manual_seed(seed)
    samples = pack_sequences(edge_sequences(config), neurons, config, generator)
    per_sample = config.time_steps * neurons
    samples += random_samples(config, neurons, -(-min_updates // per_sample), generator)
    return samples
