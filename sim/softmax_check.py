"""Bit-exact regressions of the SI-exp, SI-norm and spiking-softmax cores on Verilator.

Each check builds its vectors (random ones and the edge cases of the core), runs them through
the generic testbench :mod:`sim.tb_stream` and compares every output bit with the golden twin:

1. every vector under random valid and ready stalls;
2. a stretch cut by a reset after a random number of beats (for the softmax, in mid-row): what
   came out before the reset must be a prefix of the golden outputs;
3. the vectors again under heavy back-pressure (after the reset: the core must start clean;
   for the iterative SI-exp the first 2,000, for the softmax the first 600 rows);
4. short runs without stalls that measure latency and cycles per beat (or per row).

Tables for tests come from :func:`make_test_table` (deterministic, made in milliseconds; not
trained: bit-exactness does not depend on the quality of the approximation).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from golden.fixed import Format
from golden.si_exp import SIExpTable
from golden.stimulus import softmax_rows

from .payload import pack, unpack
from .runner import plan_segment, run_plan, verilator_model

__all__ = ["StreamCheck", "make_test_table", "si_exp_inputs", "si_norm_inputs", "check_si_exp",
           "check_si_norm", "check_softmax"]


def make_test_table(K: int, lo: float, hi: float, *, kind: str = "smooth", seed: int = 0,
                    input_format: Format = Format(16, 12), output_frac: int = 14) -> SIExpTable:
    """A deterministic SI-exp table for tests.

    "smooth": step 0 always fires (a bias), steps 1.. extract the binary digits of ``v - lo``;
    d is the least-squares fit of exp on the integer grid, so outputs are positive and
    increasing. "random": random h (some negative), T (some outside the range) and d (some
    negative, so outputs can be negative and the softmax's clamp at 0 is exercised).
    """
    f = input_format
    lo_q, hi_q = f.quantise_scalar("lo", lo), f.quantise_scalar("hi", hi)
    span = hi_q - lo_q
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        h = torch.randint(-span // 4, span + 1, (K,), generator=g).tolist()
        T = torch.randint(lo_q - span // 8, hi_q + span // 8 + 1, (K,), generator=g).tolist()
        d = torch.randint(-(1 << output_frac - 1), 1 << output_frac, (K,), generator=g).tolist()
    elif kind == "smooth":
        h = [0] + [max(1, span >> s) for s in range(1, K)]
        T = [lo_q] + [lo_q + step for step in h[1:]]
        x = torch.arange(lo_q, hi_q + 1)
        v, columns = x.clone(), []
        for t in range(K):
            z = v >= T[t]
            columns.append(z.double())
            v = v - h[t] * z
        fit = torch.linalg.lstsq(torch.stack(columns, 1),
                                 torch.exp(f.to_float(x)).unsqueeze(1)).solution
        d = [round(float(w) * 2 ** output_frac) for w in fit]
    else:
        raise ValueError(f"kind must be smooth or random, not {kind!r}")
    draft = SIExpTable(f, Format(62, output_frac), lo_q, hi_q, tuple(h), tuple(d), tuple(T))
    width = max(draft.accumulator_format.width, Format.for_range(min(d), max(d)).width)
    return SIExpTable(f, Format(width, output_frac), lo_q, hi_q, tuple(h), tuple(d), tuple(T),
                      {"made_by": f"sim.softmax_check.make_test_table(kind={kind!r}, "
                                  f"seed={seed})"})


# -- vectors ---------------------------------------------------------------------------------

def si_exp_ties(table: SIExpTable, limit: int = 6000, seed: int = 0) -> list[int]:
    """Inputs whose potential lands exactly on the step's threshold at some step (ties of the
    ``>=`` test), at most ``limit``, keeping every step's first tie."""
    x = torch.arange(table.lo, table.hi + 1)
    v = x.clone()
    hit = torch.zeros_like(x, dtype=torch.bool)
    firsts = set()
    for t in range(table.K):
        tie = v == table.T[t]
        if tie.any():
            firsts.add(int(x[tie][0]))
        hit |= tie
        v = v - table.h[t] * (v >= table.T[t])
    ties = x[hit].tolist()
    if len(ties) > limit:
        ties = sorted(firsts | set(random.Random(seed).sample(ties, limit - len(firsts))))
    return ties


def si_exp_inputs(table: SIExpTable, count: int, seed: int = 0) -> tuple[list[int], dict]:
    """Edge inputs (every threshold tie and one LSB either side, the clamp edges, the format
    extremes) followed by ``count`` random inputs; and how many of each."""
    f = table.input_format
    ties = si_exp_ties(table, seed=seed)
    edges = sorted({x + d for x in ties for d in (-1, 0, 1)}
                   | {table.lo + d for d in (-1, 0, 1)} | {table.hi + d for d in (-1, 0, 1)}
                   | {f.min_int, f.max_int, 0})
    edges = [x for x in edges if f.min_int <= x <= f.max_int]
    g = torch.Generator().manual_seed(seed)
    span = table.hi - table.lo
    near = torch.randint(max(f.min_int, table.lo - span // 8),
                         min(f.max_int, table.hi + span // 8) + 1, (count - count // 5,),
                         generator=g)
    anywhere = torch.randint(f.min_int, f.max_int + 1, (count // 5,), generator=g)
    return edges + near.tolist() + anywhere.tolist(), {"ties": len(ties), "edges": len(edges),
                                                       "random": count}


def si_norm_ties(core, count: int, rng: random.Random) -> list[tuple[int, int]]:
    """Up to ``count`` pairs (e, vth), e <= vth, where ``N·e + v_init`` is an exact multiple
    c·vth (the firing test is met with equality at the last input spike), for random c."""
    e_max, vth_max, N = (1 << core.e_width) - 1, (1 << core.vth_width) - 1, core.N
    ties = set()
    for _ in range(20 * count):
        if len(ties) >= count:
            break
        c = rng.randint(1, N)
        # e = e0 + k·step makes the division exact; k is drawn so that vth and e fit.
        if core.rounding == "floor":
            # N·e = c·vth
            e0, step = 0, c // math.gcd(c, N)
        elif rng.random() < 0.5:
            # vth = 2u: N·e + u = 2c·u
            e0, step = 0, 2 * c - 1
        else:
            # vth = 2u + 1: N·e + u = c·(2u + 1)
            step = 2 * c - 1
            e0 = c * pow(N, -1, step) % step
        vth_per_e = 2 * N / (2 * c - 1) if core.rounding == "round" else N / c
        k_max = int(min(e_max, vth_max / vth_per_e) - e0) // step
        if k_max < 0:
            continue
        e = e0 + rng.randint(0, k_max) * step
        if core.rounding == "floor":
            vth = N * e // c
        elif e0 == 0:
            vth = 2 * (N * e // step)
        else:
            vth = 2 * ((N * e - c) // step) + 1
        if 1 <= vth <= vth_max and e <= min(vth, e_max):
            ties.add((e, vth))
    return sorted(ties)


def si_norm_inputs(core, count: int, seed: int = 0) -> tuple[list[tuple[int, int]], dict]:
    """(e, vth) pairs with e <= vth: exact divisions (ties of the firing test) with e one LSB
    either side, the extremes, then ``count`` random pairs (vth log-uniform)."""
    e_max, vth_max = (1 << core.e_width) - 1, (1 << core.vth_width) - 1
    rng = random.Random(seed)
    ties = si_norm_ties(core, 1000, rng)
    pairs = [(0, 0), (0, 1), (1, 1), (e_max, e_max), (e_max, vth_max), (0, vth_max),
             (1, vth_max)]
    pairs += [(e + d, vth) for e, vth in ties for d in (-1, 0, 1)
              if 0 <= e + d <= min(vth, e_max)]
    edges = len(pairs)
    for _ in range(count):
        vth = min(vth_max, int(2 ** rng.uniform(0, core.vth_width + 0.999)))
        pairs.append((rng.randint(0, min(vth, e_max)), vth))
    return pairs, {"ties": len(ties), "edges": edges, "random": count}


# -- running ---------------------------------------------------------------------------------

@dataclass
class StreamCheck:
    vectors: dict  #: what was checked (counts by kind)
    beats_checked: int = 0
    cycles: int = 0
    timing: dict = field(default_factory=dict)


def _compare(name, label, layout, beats, want, got, *, prefix=False):
    for n, (w, g) in enumerate(zip(want, got)):
        if w != g:
            where = f", input {beats[n]}" if len(beats) == len(want) else ""
            raise AssertionError(f"{name}, segment '{label}': output {n}{where}: expected "
                                 f"{unpack(layout, w)}, got {unpack(layout, g)}")
    if not prefix and len(got) != len(want):
        raise AssertionError(f"{name}, segment '{label}': {len(got)} outputs, expected "
                             f"{len(want)}")


def _run(core, name, work_dir, beats, expected, *, reset_upto, reset_after, pressure_upto,
         timing, seed, cycles_per_input=1):
    """Segments 1-3 on ``beats`` (the reset segment on the first ``reset_upto`` = (beats,
    outputs), the back-pressure one on the first ``pressure_upto``), then the no-stall
    ``timing`` segments (label -> (beats, expected)). Returns the outputs checked, the
    cycles used and the timing segments' results by label."""
    i_layout, o_layout = core.i.payload.shape(), core.o.payload.shape()
    runs = [
        ("random stalls", beats, expected, dict(valid_prob=0.7, ready_prob=0.6)),
        ("reset mid-stream", beats[:reset_upto[0]], expected[:reset_upto[1]],
         dict(valid_prob=0.8, ready_prob=0.8, reset_after=reset_after)),
        ("after reset, back-pressure", beats[:pressure_upto[0]], expected[:pressure_upto[1]],
         dict(valid_prob=0.5, ready_prob=0.3)),
        *((label, b, e, dict(valid_prob=1.0, ready_prob=1.0, record_cycles=True))
          for label, (b, e) in timing.items()),
    ]
    segments, wanted = [], []
    for n, (label, b, e, stalls) in enumerate(runs):
        wanted.append([pack(o_layout, o) for o in e])
        segments.append(plan_segment([pack(i_layout, x) for x in b], len(e), seed=seed + n,
                                     cycles_per_input=cycles_per_input, **stalls))
    results = run_plan(verilator_model(core, name), segments, work_dir)
    checked = 0
    for (label, b, _, _), segment, want, result in zip(runs, segments, wanted, results):
        got = result["outputs"]
        if segment["reset_after"] is not None and result["accepted"] != segment["reset_after"]:
            raise AssertionError(f"{name}: reset came after {result['accepted']} beats")
        _compare(name, label, o_layout, b, want, got,
                 prefix=segment["reset_after"] is not None)
        checked += len(got)
    return checked, sum(r["cycles"] for r in results), dict(zip(timing, results[3:]))


def _beat_timing(result, beats: int) -> dict:
    return {"cycles_per_beat": (result["last_accept_cycle"] - result["first_accept_cycle"])
            / max(1, beats - 1),
            "first_in_to_last_out": result["last_output_cycle"] - result["first_accept_cycle"]}


def _add_tags(core, beats: list[dict], expected: list[dict], seed: int) -> None:
    """When the core's payloads carry a ``tag``, give every beat a random one and expect it
    back on the beat's output."""
    tag = dict(core.i.payload.shape()).get("tag")
    if tag is None:
        return
    rng = random.Random(seed ^ 0x7A6)
    for beat, out in zip(beats, expected, strict=True):
        beat["tag"] = out["tag"] = rng.randrange(1 << tag.shape.width)


def check_si_exp(core, name: str, work_dir: Path, *, count: int = 10_000,
                 seed: int = 0) -> StreamCheck:
    """SI-exp against :func:`golden.si_exp.si_exp`, random tags copied through when the core
    has them; timing: latency and cycles per beat."""
    xs, vectors = si_exp_inputs(core.table, count, seed)
    beats = [{"x": x} for x in xs]
    expected = core.reference_outputs(torch.tensor(xs))
    _add_tags(core, beats, expected, seed)
    timing = {"one beat": (beats[:1], expected[:1]), "64 beats": (beats[:64], expected[:64])}
    cut = random.Random(seed).randrange(1, 200)
    pressure = len(beats) if core.throughput == 1 else 2000
    checked, cycles, t = _run(core, name, work_dir, beats, expected, reset_upto=(400, 400),
                              reset_after=cut, pressure_upto=(pressure, pressure),
                              timing=timing, seed=seed, cycles_per_input=1 / core.throughput)
    return StreamCheck(vectors, checked, cycles, {
        "latency": _beat_timing(t["one beat"], 1)["first_in_to_last_out"],
        "cycles_per_beat": _beat_timing(t["64 beats"], 64)["cycles_per_beat"]})


def check_si_norm(core, name: str, work_dir: Path, *, count: int = 10_000, seed: int = 0,
                  exhaustive: bool = False) -> StreamCheck:
    """SI-norm against the closed form (itself equal to the spiking definition,
    :func:`golden.si_norm.si_norm_spiking`, checked exhaustively in the simulator tests),
    random tags copied through when the core has them; ``exhaustive`` adds every pair
    e <= vth of the core's widths."""
    pairs, vectors = si_norm_inputs(core, count, seed)
    if exhaustive:
        every = [(e, v) for v in range(1 << core.vth_width)
                 for e in range(min(v, (1 << core.e_width) - 1) + 1)]
        pairs = every + pairs
        vectors["exhaustive"] = len(every)
    beats = [{"e": e, "vth": v} for e, v in pairs]
    expected = core.reference_outputs([e for e, _ in pairs], [v for _, v in pairs])
    _add_tags(core, beats, expected, seed)
    timing = {"one beat": (beats[:1], expected[:1]), "64 beats": (beats[:64], expected[:64])}
    cut = random.Random(seed).randrange(1, 200)
    checked, cycles, t = _run(core, name, work_dir, beats, expected, reset_upto=(400, 400),
                              reset_after=cut, pressure_upto=(len(beats), len(beats)),
                              timing=timing, seed=seed, cycles_per_input=1 / core.throughput)
    return StreamCheck(vectors, checked, cycles, {
        "latency": _beat_timing(t["one beat"], 1)["first_in_to_last_out"],
        "cycles_per_beat": _beat_timing(t["64 beats"], 64)["cycles_per_beat"]})


def check_softmax(core, name: str, work_dir: Path, *, rows: int = 2000,
                  seed: int = 0) -> StreamCheck:
    """Spiking softmax against :func:`golden.softmax.spiking_softmax`, row by row; timing:
    latency of one row (first score in to first count out) and cycles per row with 16 rows
    of n back to back (between the first counts of the first and the last row), for n = 1,
    n_max // 2 and n_max."""
    all_rows, vectors = softmax_rows(core.table, core.n_max, rows, seed)
    beats, expected = core.input_beats(all_rows), core.reference_outputs(all_rows)
    rng = random.Random(seed)
    # The reset comes in the middle of a row of at least 2 scores, after a few rows.
    start = sum(len(r) for r in all_rows[:10])
    row = next(r for r in all_rows[10:] if len(r) >= 2)
    cut = start + sum(len(r) for r in all_rows[10:all_rows.index(row, 10)]) + \
        rng.randrange(1, len(row))
    pressure = sum(len(r) for r in all_rows[:600])
    timing = {}
    g = torch.Generator().manual_seed(seed)
    for n in sorted({1, max(1, core.n_max // 2), core.n_max}):
        t_rows = [torch.randint(-4096, 4096, (n,), generator=g).tolist() for _ in range(16)]
        timing[f"one row of {n}"] = (core.input_beats(t_rows[:1]),
                                     core.reference_outputs(t_rows[:1]))
        timing[f"16 rows of {n}"] = (core.input_beats(t_rows), core.reference_outputs(t_rows))
    checked, cycles, t = _run(core, name, work_dir, beats, expected,
                              reset_upto=(cut + 4 * core.n_max, cut), reset_after=cut,
                              pressure_upto=(pressure, pressure), timing=timing, seed=seed,
                              cycles_per_input=1 / core.throughput)
    measured = {}
    for n in sorted({1, max(1, core.n_max // 2), core.n_max}):
        one, many = t[f"one row of {n}"], t[f"16 rows of {n}"]
        measured[f"n={n}"] = {
            "latency_first_in_to_first_out":
                one["output_cycles"][0] - one["accept_cycles"][0],
            "cycles_per_row": (many["output_cycles"][15 * n] - many["output_cycles"][0]) / 15,
        }
    return StreamCheck(vectors, checked, cycles, measured)
