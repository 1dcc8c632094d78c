"""Test stimulus for the neuron models and the spiking softmax: random samples and edge cases.

A *sample* is an integer tensor ``x`` of shape ``(T, P)``: T time steps of input to P neurons.
Edge cases are per-neuron input sequences (length T) chosen to hit the corners of the numeric
contract: format extremes held for all T steps (the largest membrane excursions), inputs that
land exactly on each firing threshold and one LSB either side (the ``>=`` ties of D2), and
alternating extremes.

For the spiking softmax (:func:`softmax_rows`) a *row* is a list of integer scores in the
SI-exp table's input format.
"""

from __future__ import annotations

import random

import torch

from .if_neuron import IFConfig
from .mt_neuron import MTConfig
from .si_exp import SIExpTable

__all__ = ["edge_sequences", "random_samples", "pack_sequences", "samples_for", "softmax_rows"]


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


def softmax_rows(table: SIExpTable, n_max: int, count: int,
                 seed: int = 0) -> tuple[list[list[int]], dict]:
    """Rows of scores for a spiking softmax whose rows hold up to ``n_max`` scores: the edge
    rows, then ``count`` random rows; and how many of each kind.

    Edge rows: one-element rows (the format's extremes, 0, the table's range ends), all-equal
    rows of 1, 2 and ``n_max`` scores, saturating rows (everything below or above the range,
    one maximum among minima, alternating extremes), 20 rows of ``n_max`` scores near the range
    and 20 over the whole format, and three rows longer than ``n_max`` (a core cuts them into
    pieces). Random rows have 1 to ``n_max`` scores, uniform near the range (the range and a
    quarter of it either side) or, with probability 0.3, over the whole format. Deterministic for
    ``seed``."""
    f = table.input_format
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    span = table.hi - table.lo
    wide = (f.min_int, f.max_int)
    near = (max(f.min_int, table.lo - span // 4), min(f.max_int, table.hi + span // 4))

    def scores(n, bounds):
        return torch.randint(bounds[0], bounds[1] + 1, (n,), generator=g).tolist()

    rows = [[x] for x in (f.min_int, f.max_int, 0, table.lo, table.hi)]
    rows += [[x] * n for x in (f.min_int, f.max_int, table.lo, table.hi, 0)
             for n in sorted({1, 2, n_max})]
    below, above = max(f.min_int, table.lo - span), min(f.max_int, table.hi + span)
    rows += [[below] * n_max, [above] * n_max, [f.max_int] + [f.min_int] * (n_max - 1),
             [f.min_int, f.max_int] * (n_max // 2) + [0] * (n_max % 2)]
    rows += [scores(n_max, near) for _ in range(20)] + [scores(n_max, wide) for _ in range(20)]
    overlong = [scores(n, near) for n in (n_max + 1, 2 * n_max, 2 * n_max + 1)]
    rows += overlong
    edges = len(rows)
    for _ in range(count):
        rows.append(scores(rng.randint(1, n_max), near if rng.random() < 0.7 else wide))
    return rows, {"edge_rows": edges, "overlong_rows": len(overlong), "random_rows": count}
