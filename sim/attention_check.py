"""Bit-exact regression of the spiking attention head core on Verilator, and a whole-model check.

:func:`check_attention` streams heads (MT codes of Q, K and V for T steps) through the emitted
Verilog of :class:`hwgen.cores.attention.AttentionHead` with the generic testbench
:mod:`sim.tb_stream` and compares every output beat, bit for bit (all output codes and
``last``), with :func:`golden.attention.attention_head`. One cocotb run per check; the heads
are cut into segments that exercise:

1. heads back to back, each restarting with ``first = 1`` only (no reset between them);
2. random valid/ready stalls, a different stall profile per segment (heavy back-pressure, a
   slow producer, ...);
3. a reset between heads after some segments; the head that follows a reset is sent with
   ``first = 0`` every other time (a reset alone must start a fresh head);
4. two heads cut by a reset in step 2, one in the middle of its input beats, one as soon as
   its last input beat is taken (the core is computing): what came out before must be a
   prefix of the golden outputs, and the next head must be unaffected;
5. a closing segment without stalls that measures the cycles per step and the cycles from a
   step's first input beat to its first output beat, reported next to ``core.step_cycles()``
   and ``core.latency`` when the core has them (not asserted here: a formula may be a model).

Head kinds (:func:`make_heads`): random codes at densities from 5 % to 100 % (magnitudes
uniform over the levels), all-zero heads, saturating heads (the largest code everywhere, with
sign patterns that drive the scores and the output products to both extremes), shorter heads
(fewer steps than ``time_steps``) and heads with real activations: the q/k/v codes the digits
ViT in integer mode feeds its heads (:func:`capture_digits_heads`).

:func:`check_whole_model` runs the digits ViT in integer mode (the ``--int`` settings of
``python -m golden vit-digits``) with every attention head computed by the Verilator model
and asserts that the logits after every step equal the golden integer model's, bit for bit::

    python -m sim.attention_check --whole-model --images 50 [--lanes 4] [--batch 25]
    python -m sim.attention_check --set small [--heads 20]       # one parameter set

The testbench sleeps through the core's computing phases (``skip_idle``) on a model that
drives its own clock (``hdl_clock``), so long steps cost Verilator time, not Python time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from amaranth import Shape
from amaranth.lib import data

from golden.attention import HeadConfig, attention_head, random_codes
from golden.cli import Parser, output_folder, run, write_output
from golden.fixed import check_int
from golden.si_exp import shipped_table

from .payload import pack, unpack
from .runner import VerilatorModel, plan_segment, run_plan, verilator_model

__all__ = ["Head", "AttentionCheck", "ParameterSet", "parameter_sets", "small_config",
           "make_heads", "digits_snn", "capture_digits_heads", "golden_outputs", "run_heads",
           "check_attention", "check_parameter_set", "check_whole_model",
           "max_cycles_per_step"]

REPO = Path(__file__).resolve().parents[1]

#: (valid_prob, ready_prob) per segment, in turn: moderate stalls, heavy back-pressure with a
#: slow producer, a fast producer against a slow consumer, the reverse, light stalls.
STALLS = ((0.7, 0.6), (0.3, 0.25), (1.0, 0.4), (0.5, 1.0), (0.9, 0.9))


def max_cycles_per_step(config: HeadConfig) -> int:
    """Cycle budget of one step: generous for any reasonable implementation (one that streams
    the score products needs about n²·ceil(d / lanes) + a few hundred cycles) and for stalls,
    but finite, so that a hung core fails instead of running forever."""
    return 50 * (config.tokens ** 2 * config.head_dim + 2000)


# -- heads -----------------------------------------------------------------------------------

@dataclass
class Head:
    """One head's input: MT codes of shape (steps, tokens, head_dim) each, and a label."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    label: str

    @property
    def steps(self) -> int:
        return self.q.shape[0]


def small_config(**overrides) -> HeadConfig:
    """A small head for tests: 4 tokens, head_dim 4, T = 4,
    3 levels, mixed exponents, the shipped K = 12 table on [-8, 0], N = 256."""
    base = dict(tokens=4, head_dim=4, time_steps=4, levels=3, q_exponents=(-2, -3),
                k_exponents=(-3, -2), v_exponents=(-2, -2), s_exponents=(-3, -4),
                out_exponents=(-3, -2), table=shipped_table(12, -8.0, 0.0), N=256,
                score_scale=0.5)
    base.update(overrides)
    return HeadConfig(**base)


def _random_codes(config: HeadConfig, steps: int, density: float,
                  g: torch.Generator) -> torch.Tensor:
    return random_codes((steps, config.tokens, config.head_dim), config.levels, density, g)


def make_heads(config: HeadConfig, count: int, *, seed: int = 0,
               short: int | None = None) -> list[Head]:
    """``count`` random heads of ``time_steps`` steps (densities 0.05, 0.2, 0.5, 0.8, 1.0 in
    turn), an all-zero head and one with zero q and k, six saturating heads, and ``short``
    (default count // 20, at least 2 when T > 1) random heads of 1 to T - 1 steps; in a
    seeded random order."""
    if count < 0:
        raise ValueError(f"count must be at least 0, not {count}")
    c, T = config, config.time_steps
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    densities = (0.05, 0.2, 0.5, 0.8, 1.0)
    heads = []
    for h in range(count):
        d = densities[h % len(densities)]
        heads.append(Head(*(_random_codes(c, T, d, g) for _ in range(3)),
                          label=f"random density {d} #{h}"))
    shape = (T, c.tokens, c.head_dim)
    zero = torch.zeros(shape, dtype=torch.int64)
    heads += [Head(zero, zero, zero, "all zero"),
              Head(zero, zero, _random_codes(c, T, 0.8, g), "zero q, k; random v")]
    top = 1 << (c.levels - 1)
    full = torch.full(shape, top)
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -top, top)
    heads += [Head(full, full, full, "saturating: all +max"),
              Head(-full, -full, -full, "saturating: all -max"),
              Head(full, full, -full, "saturating: scores +max, v -max"),
              Head(-full, full, sign, "saturating: scores -max, v ±max"),
              Head(sign, -sign, full, "saturating: q ±max, k = -q, v +max"),
              Head(sign, sign, sign, "saturating: q = k = v ±max")]
    if short is None:
        short = max(2, count // 20) if T > 1 else 0
    for h in range(short):
        steps = rng.randint(1, T - 1)
        heads.append(Head(*(_random_codes(c, steps, 0.6, g) for _ in range(3)),
                          label=f"short ({steps} steps) #{h}"))
    rng.shuffle(heads)
    return heads


# -- the digits ViT in integer mode ------------------------------------------------------------

def digits_snn(checkpoint: Path | str | None = None, progress: bool = False):
    """The digits ViT converted as ``python -m golden vit-digits --int`` does it (spiking
    softmax, max-subtracted input, K = 12, N = 256, 8 levels, percentiles 0.99 / 0.01,
    calibration on the first 1,024 training images; see golden.digits_experiment); returns
    (spiking model, test images, test labels). Trains the ViT once if it is not cached."""
    from golden.convert import ConversionConfig, convert
    from golden.digits_experiment import ANALOG, calibration_batches
    from golden.vit_digits import DEFAULT_CHECKPOINT, digits_split, load_or_train
    model, _ = load_or_train(REPO / DEFAULT_CHECKPOINT if checkpoint is None else checkpoint,
                             progress=progress)
    x_tr, _, x_te, y_te = digits_split()
    config = ConversionConfig(softmax="spiking", softmax_input="max", integer=True,
                              analog=ANALOG)
    return convert(model, calibration_batches(x_tr), config), x_te, y_te


def _split_heads(q, k, v, label: str) -> list[Head]:
    """Codes (T, ..., tokens, head_dim) → one Head per index of the middle dims."""
    T, n, d = q.shape[0], q.shape[-2], q.shape[-1]
    qs, ks, vs = (x.reshape(T, -1, n, d) for x in (q, k, v))
    return [Head(qs[:, h].clone(), ks[:, h].clone(), vs[:, h].clone(), f"{label} #{h}")
            for h in range(qs.shape[1])]


@functools.lru_cache(maxsize=4)
def capture_digits_heads(images: int = 8, T: int = 8) -> tuple[tuple[HeadConfig, tuple], ...]:
    """Run the first ``images`` test images through the integer digits ViT and record every
    head call: per layer (in call order) its HeadConfig and its heads (one per image and
    head, labelled with the layer, the image and the head)."""
    snn, x_te, _ = digits_snn()
    calls = []

    def recorder(q, k, v, config):
        calls.append((q, k, v, config))
        return attention_head(q, k, v, config)

    snn.head_function = recorder
    snn(x_te[:images], T=T)
    layers = []
    for layer, (q, k, v, config) in enumerate(calls):
        heads = _split_heads(q, k, v, f"digits layer {layer}, image×head")
        layers.append((config, tuple(heads)))
    return tuple(layers)


# -- beats -----------------------------------------------------------------------------------

def _flat_fields(layout, offset: int = 0, path: tuple = ()):
    """(path, offset, width, signed) of every leaf of a (nested) layout."""
    layout = data.Layout.cast(layout)
    for name, f in layout:
        if isinstance(f.shape, data.Layout):
            yield from _flat_fields(f.shape, offset + f.offset, path + (name,))
        else:
            shape = Shape.cast(f.shape)
            yield path + (name,), offset + f.offset, shape.width, shape.signed


class _Codec:
    """Packs head beats into the flat port words of a core, with offsets taken once from
    the layouts (checked against :func:`sim.payload.pack`): tens of thousands of beats of
    433 bits are packed in a fraction of a second."""

    def __init__(self, core):
        d = core.config.head_dim
        self.i_layout, self.o_layout = core.i.payload.shape(), core.o.payload.shape()
        fi = {p: (off, w) for p, off, w, _ in _flat_fields(self.i_layout)}
        fo = {p: (off, w) for p, off, w, _ in _flat_fields(self.o_layout)}
        self.in_offsets = [fi[(name, l)][0] for name in ("q", "k", "v") for l in range(d)]
        self.out_offsets = [fo[("out", l)][0] for l in range(d)]
        self.mask = (1 << fi[("q", 0)][1]) - 1
        self.first, self.last = 1 << fi[("first",)][0], 1 << fo[("last",)][0]
        probe = {"q": [l - d // 2 for l in range(d)], "k": [1] * d, "v": [-1] * d,
                 "first": 1}
        if self.input_word(probe["q"] + probe["k"] + probe["v"], True) != \
                pack(self.i_layout, probe):
            raise AssertionError("the fast packer disagrees with sim.payload.pack")

    def input_word(self, codes: list[int], first: bool) -> int:
        word = self.first if first else 0
        for value, offset in zip(codes, self.in_offsets):
            word |= (value & self.mask) << offset
        return word

    def output_word(self, codes: list[int], last: bool) -> int:
        word = self.last if last else 0
        for value, offset in zip(codes, self.out_offsets):
            word |= (value & self.mask) << offset
        return word

    def head_inputs(self, head: Head, first: bool = True) -> list[int]:
        """Input words: token by token, step by step; ``first`` on the beats of step 0."""
        rows = torch.cat([head.q, head.k, head.v], dim=-1).tolist()
        return [self.input_word(row, first and t == 0) for t, step in enumerate(rows)
                for row in step]

    def outputs(self, out: torch.Tensor) -> list[int]:
        """Output words of codes (steps, tokens, head_dim); ``last`` on the last token."""
        n = out.shape[-2]
        return [self.output_word(row, j == n - 1) for step in out.tolist()
                for j, row in enumerate(step)]

    def decode(self, word: int) -> tuple[list[int], int]:
        fields = unpack(self.o_layout, word)
        return fields["out"], fields["last"]


# -- running ---------------------------------------------------------------------------------

@dataclass
class AttentionCheck:
    """What a check ran and measured."""

    heads: dict  #: heads checked, by kind
    steps: int = 0  #: time steps streamed
    beats_checked: int = 0  #: output beats compared bit for bit
    resets: dict = field(default_factory=dict)  #: between heads, mid-step, first=0 after
    output_codes: dict = field(default_factory=dict)  #: golden output codes by sign
    cycles: int = 0  #: simulated cycles, all segments
    timing: dict = field(default_factory=dict)  #: no-stall measurements vs the formulas
    seconds: dict = field(default_factory=dict)  #: wall time: golden, build, simulation


def _kind(label: str) -> str:
    return label.split(" #")[0].split(":")[0].split(" (")[0]


def _model_name(core) -> str:
    """A Verilog module name that identifies the core's configuration and lanes."""
    c = core.config
    digest = hashlib.sha256(repr((c, core.lanes)).encode()).hexdigest()[:10]
    return f"attention_n{c.tokens}_d{c.head_dim}_l{core.lanes}_{digest}"


def _segment(inputs, outputs, steps, config, *, stalls, seed, reset_after=None,
             reset_at_end=False, record=False) -> dict:
    return plan_segment(inputs, outputs, valid_prob=stalls[0], ready_prob=stalls[1], seed=seed,
                        reset_after=reset_after, reset_at_end=reset_at_end, skip_idle=True,
                        record_cycles=record,
                        max_cycles=max(1, steps) * max_cycles_per_step(config),
                        # Output beats of a step can be a row's MAC apart: watch a whole step.
                        drain_cycles=config.tokens ** 2 * config.head_dim + 2000)


def _compare(name: str, where: str, codec: _Codec, heads: list[Head], n: int,
             want: list[int], got: list[int], *, prefix: bool = False) -> None:
    """Every output word equal; on a difference, say which head, step and token."""
    if len(got) > len(want) or (not prefix and len(got) != len(want)):
        raise AssertionError(f"{name}, {where}: {len(got)} output beats, expected "
                             f"{len(want)}{' at most' if prefix else ''}")
    for index, (w, g) in enumerate(zip(want, got)):
        if w != g:
            h, beat = 0, index
            while beat >= heads[h].steps * n:
                beat -= heads[h].steps * n
                h += 1
            (w_out, w_last), (g_out, g_last) = codec.decode(w), codec.decode(g)
            raise AssertionError(
                f"{name}, {where}: head '{heads[h].label}', step {beat // n + 1}, token "
                f"{beat % n}: expected out {w_out} last {w_last}, got out {g_out} last "
                f"{g_last}")


def golden_outputs(heads: list[Head], config: HeadConfig, chunk: int = 64) -> list[torch.Tensor]:
    """Golden output codes of every head; heads of equal length are stacked into one call
    (the golden head is vectorised, and a call per head costs a lot of Python time)."""
    outs: list[torch.Tensor | None] = [None] * len(heads)
    by_steps: dict[int, list[int]] = {}
    for i, h in enumerate(heads):
        by_steps.setdefault(h.steps, []).append(i)
    for indices in by_steps.values():
        for at in range(0, len(indices), chunk):
            part = indices[at:at + chunk]
            q, k, v = (torch.stack([getattr(heads[i], x) for i in part], dim=1)
                       for x in ("q", "k", "v"))
            out = attention_head(q, k, v, config).out
            for j, i in enumerate(part):
                outs[i] = out[:, j]
    return outs


def run_heads(model: VerilatorModel, groups: list[list[Head]], work_dir: Path, *,
              stalls=(0.8, 0.7), seed: int = 0) -> tuple[list[torch.Tensor], int]:
    """Stream the heads through the model, one segment per group (heads back to back,
    restarting with ``first``); return each head's output codes (steps, tokens, head_dim) in
    order, and the cycles simulated. Checks only that every beat came out, with the right
    ``last``: the codes are the caller's to compare."""
    core = model.core
    codec = _Codec(core)
    c = core.config
    n, d = c.tokens, c.head_dim
    segments = []
    for s, group in enumerate(groups):
        words = [w for head in group for w in codec.head_inputs(head)]
        steps = sum(head.steps for head in group)
        segments.append(_segment(words, len(words), steps, c, stalls=stalls, seed=seed + s))
    results = run_plan(model, segments, work_dir)
    outs = []
    for group, result in zip(groups, results):
        words = result["outputs"]
        if len(words) != sum(h.steps for h in group) * n:
            raise AssertionError(f"{model.name}: {len(words)} output beats, expected "
                                 f"{sum(h.steps for h in group) * n}")
        beats = [codec.decode(w) for w in words]
        for b, (_, last) in enumerate(beats):
            if last != int(b % n == n - 1):
                raise AssertionError(f"{model.name}: output beat {b} has last = {last}")
        at = 0
        for head in group:
            codes = [out for out, _ in beats[at:at + head.steps * n]]
            outs.append(torch.tensor(codes, dtype=torch.int64).reshape(head.steps, n, d))
            at += head.steps * n
    return outs, sum(result["cycles"] for result in results)


def check_attention(core, heads: list[Head], work_dir: Path, *, label: str | None = None,
                    seed: int = 0, heads_per_segment: int = 5,
                    reset_every: int = 3) -> AttentionCheck:
    """Run ``heads`` through the Verilator model of ``core`` (an AttentionHead) and compare
    every output beat with the golden head; raise AssertionError on the first difference. See
    the module docstring for the segments. Returns what was checked and measured."""
    c = core.config
    n = c.tokens
    # The module name depends only on the configuration, so that checks of one configuration
    # (a parameter set, the whole model) share one Verilator build.
    module = _model_name(core)
    name = label or module
    for head in heads:
        for x in (head.q, head.k, head.v):
            if tuple(x.shape[1:]) != (n, c.head_dim) or not 1 <= x.shape[0] <= c.time_steps:
                raise ValueError(f"head '{head.label}' has codes of shape {tuple(x.shape)}; "
                                 f"the core takes (1..{c.time_steps}, {n}, {c.head_dim})")
    if len(heads) < 8:
        raise ValueError(f"check_attention needs at least 8 heads (a timing segment, two cut "
                         f"heads and stalled segments), not {len(heads)}")
    seconds = {}
    start = time.monotonic()
    codec = _Codec(core)
    golden = golden_outputs(heads, c)
    expected = [codec.outputs(out) for out in golden]
    seconds["golden"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    model = verilator_model(core, module, hdl_clock=True)
    seconds["build"] = round(time.monotonic() - start, 1)

    # The timing segment: two full-length random heads, the zero and a saturating head.
    full = [i for i, h in enumerate(heads) if h.steps == c.time_steps]
    pick = lambda kind: next((i for i in full if _kind(heads[i].label) == kind), None)
    timed = [i for i in (pick("random density 0.5"), pick("random density 0.8"),
                         pick("all zero"), pick("saturating")) if i is not None] or full[:2]
    # Two heads cut by a reset in step 2: in the middle of its input beats, and right after
    # its last input beat (the core is computing). Full-length heads other than the timed.
    cuts = [i for i in full if i not in timed][:2] if c.time_steps >= 2 else []
    cut_at = [n + max(1, n // 2), 2 * n]
    rest = [i for i in range(len(heads)) if i not in timed and i not in cuts]

    groups = [rest[i:i + heads_per_segment] for i in range(0, len(rest), heads_per_segment)]
    plan, wanted = [], []  # plan: (label, head indices, segment)
    resets = {"between heads": 0, "mid-step": 0, "first=0 after a reset": 0}
    after_reset, fresh_count = True, 0  # the testbench resets the core before the plan

    def add(label, indices, *, stalls, reset_at_end=False, reset_after=None, record=False):
        nonlocal after_reset, fresh_count
        words = []
        for k, i in enumerate(indices):
            # After a reset, every other head starts without first: the reset must suffice.
            first = not (k == 0 and after_reset and fresh_count % 2 == 1)
            if k == 0 and after_reset:
                fresh_count += 1
                resets["first=0 after a reset"] += not first
            words += codec.head_inputs(heads[i], first)
        want = [w for i in indices for w in expected[i]]
        steps = sum(heads[i].steps for i in indices)
        segment = _segment(words, len(want), steps, c, stalls=stalls, seed=seed + len(plan),
                           reset_after=reset_after, reset_at_end=reset_at_end, record=record)
        plan.append((label, indices, segment))
        wanted.append(want)
        after_reset = reset_at_end or reset_after is not None

    for s, group in enumerate(groups):
        stalls = STALLS[s % len(STALLS)]
        reset = s % reset_every == reset_every - 1 and s < len(groups) - 1
        resets["between heads"] += reset
        add(f"segment {s} (valid {stalls[0]}, ready {stalls[1]}"
            f"{', reset at the end' if reset else ''})", group, stalls=stalls,
            reset_at_end=reset)
        if s == len(groups) // 2:
            for cut, at in zip(cuts, cut_at):
                add(f"segment {s}, cut (reset after {at} input beats)", [cut],
                    stalls=(0.8, 0.8), reset_after=at)
                resets["mid-step"] += 1
    add("timing segment (no stalls)", timed, stalls=(1.0, 1.0), record=True)

    start = time.monotonic()
    results = run_plan(model, [segment for _, _, segment in plan], work_dir)
    seconds["simulation"] = round(time.monotonic() - start, 1)

    checked = 0
    for (label, indices, segment), want, result in zip(plan, wanted, results):
        prefix = segment["reset_after"] is not None
        if prefix and result["accepted"] != segment["reset_after"]:
            raise AssertionError(f"{name}, {label}: the reset came after "
                                 f"{result['accepted']} input beats")
        _compare(name, label, codec, [heads[i] for i in indices], n, want,
                 result["outputs"], prefix=prefix)
        checked += len(result["outputs"])

    timing = _timing(core, [heads[i] for i in timed], results[-1])
    # How much the outputs exercise: a check of all-zero outputs would prove little.
    codes = torch.cat([out.flatten() for out in golden])
    signs = {"positive": int((codes > 0).sum()), "negative": int((codes < 0).sum()),
             "zero": int((codes == 0).sum())}
    kinds: dict[str, int] = {}
    for h in heads:
        kinds[_kind(h.label)] = kinds.get(_kind(h.label), 0) + 1
    return AttentionCheck(heads=kinds, steps=sum(h.steps for h in heads),
                          beats_checked=checked, resets=resets, output_codes=signs,
                          cycles=sum(r["cycles"] for r in results), timing=timing,
                          seconds=seconds)


def _timing(core, heads: list[Head], result: dict) -> dict:
    """Cycles per step (first input beat of a step to the next step's first input beat), and
    from a step's first input beat to its first and to its last output beat, in a no-stall
    segment, by head; next to them the core's ``step_cycles()`` and ``latency`` (first input
    to last output) when it has them, and whether every measurement equals them."""
    n = core.config.tokens
    accepts, outputs = result["accept_cycles"], result["output_cycles"]
    firsts = accepts[::n]
    per_step = [b - a for a, b in zip(firsts, firsts[1:])]
    to_first = [outputs[s * n] - firsts[s] for s in range(len(firsts))]
    to_last = [outputs[s * n + n - 1] - firsts[s] for s in range(len(firsts))]
    by_head, at = {}, 0
    for head in heads:
        steps = range(at, at + head.steps)
        by_head[head.label] = {
            "cycles_per_step": [per_step[s] for s in steps if s < len(per_step)],
            "first_in_to_first_out": [to_first[s] for s in steps],
            "first_in_to_last_out": [to_last[s] for s in steps]}
        at += head.steps
    timing = {"cycles_per_step": {"min": min(per_step), "max": max(per_step),
                                  "mean": round(sum(per_step) / len(per_step), 1)},
              "first_in_to_first_out": {"min": min(to_first), "max": max(to_first)},
              "first_in_to_last_out": {"min": min(to_last), "max": max(to_last)}}
    if callable(getattr(core, "step_cycles", None)):
        formula = core.step_cycles()
        timing["cycles_per_step"] |= {"core.step_cycles()": formula,
                                      "equal": set(per_step) == {formula}}
    if isinstance(getattr(core, "latency", None), int):
        timing["first_in_to_last_out"] |= {"core.latency": core.latency,
                                           "equal": set(to_last) == {core.latency}}
    timing["by_head"] = by_head
    return timing


# -- parameter sets ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ParameterSet:
    """A head configuration, its lanes, and which real digits heads (by layer) it gets."""

    make_config: Callable[[], HeadConfig]
    lanes: int
    digits_layer: int | None = None  #: the config and real heads of this digits layer
    doc: str = ""

    def config(self) -> HeadConfig:
        if self.digits_layer is not None:
            return capture_digits_heads()[self.digits_layer][0]
        return self.make_config()

    def real_heads(self) -> list[Head]:
        if self.digits_layer is None:
            return []
        return list(capture_digits_heads()[self.digits_layer][1])


def parameter_sets() -> dict[str, ParameterSet]:
    return {
        "small": ParameterSet(small_config, 1, doc="n = 4, d_h = 4, T = 4, 3 levels"),
        "small_lanes2": ParameterSet(
            lambda: small_config(tokens=3, head_dim=5, time_steps=5, levels=4,
                                 rounding="floor", out_exponents=(-1, -2),
                                 score_scale=5 ** -0.5), 2,
            doc="n = 3, d_h = 5, lanes 2 (the last chunk has one lane idle), floor rounding, "
                "score scale 1/sqrt(5) (a constant of six signed digits)"),
        "digits": ParameterSet(None, 1, digits_layer=0,
                               doc="the digits ViT's first layer: n = d_h = 16, 8 levels, "
                                   "T = 8, lanes 1"),
        "digits_lanes4": ParameterSet(None, 4, digits_layer=1,
                                      doc="the digits ViT's second layer, lanes 4"),
    }


def check_parameter_set(name: str, work_dir: Path, *, heads: int = 200,
                        seed: int = 0) -> tuple[AttentionCheck, dict]:
    """Random and edge heads plus the set's real heads through :func:`check_attention`;
    returns the check and a JSON-ready record (also the set's parameters)."""
    from hwgen.cores.attention import AttentionHead
    ps = parameter_sets()[name]
    config = ps.config()
    core = AttentionHead(config, lanes=ps.lanes)
    all_heads = make_heads(config, heads, seed=seed) + ps.real_heads()
    result = check_attention(core, all_heads, work_dir, label=f"attention set {name!r}",
                             seed=seed)
    record = {"core": "attention", "set": name, "doc": ps.doc, "lanes": ps.lanes,
              "params": {k: v for k, v in config.__dict__.items() if k != "table"}
              | {"table": config.table.to_json()}, "random_heads": heads,
              **result.__dict__}
    return result, record


# -- the whole model -------------------------------------------------------------------------

def check_whole_model(images: int = 50,
                      work_dir: Path | str = REPO / "build" / "sim" / "whole_model",
                      *, lanes: int = 4, batch: int = 25, T: int = 8, seed: int = 0,
                      log: Callable[[str], None] = lambda line: None) -> dict:
    """The integer digits ViT with every head computed by the Verilator model vs the golden
    integer model, on the first ``images`` test images in batches of ``batch``.

    The hardware head function runs the golden head (for s_codes, counts and sops) and
    replaces its ``out`` by the codes from Verilator; all heads of a call (batch × heads) run
    in one cocotb run, one segment per image, under random stalls. Raises AssertionError if
    any head output or any logit (cumulative output after every step) differs; returns the
    figures (heads, beats, cycles, seconds, accuracy of both)."""
    from golden.vit_digits import digits_split
    from hwgen.cores.attention import AttentionHead, digits_head_config
    if images < 1 or batch < 1:
        raise ValueError(f"images and batch must be at least 1, not {images} and {batch}")
    check_int("lanes", lanes, minimum=1, maximum=digits_head_config().head_dim)  # before work
    tests = len(digits_split()[2])  # the split alone, before the ViT is loaded (or trained)
    if images > tests:
        raise ValueError(f"images must be at most {tests} (the test split), not {images}")
    work_dir = Path(work_dir)
    snn, x_te, y_te = digits_snn()
    models: dict[str, VerilatorModel] = {}  # by repr(config): the table makes it unhashable
    stats = {"head_calls": 0, "heads": 0, "beats": 0, "cycles": 0, "mismatching_heads": 0,
             "seconds_simulation": 0.0, "seconds_build": 0.0}

    def hardware_head(q, k, v, config):
        res = attention_head(q, k, v, config)
        key = repr(config)
        if key not in models:
            start = time.monotonic()
            core = AttentionHead(config, lanes=lanes)
            models[key] = verilator_model(core, _model_name(core), hdl_clock=True)
            stats["seconds_build"] += time.monotonic() - start
        heads = _split_heads(q, k, v, "call")
        per_image = len(heads) // q.shape[1] if q.dim() > 4 else len(heads)
        groups = [heads[i:i + per_image] for i in range(0, len(heads), per_image)]
        start = time.monotonic()
        call = stats["head_calls"]
        outs, cycles = run_heads(models[key], groups, work_dir / f"call{call}",
                                 seed=seed + 1000 * call)
        stats["cycles"] += cycles
        took = time.monotonic() - start
        stats["seconds_simulation"] += took
        out = torch.stack(outs, dim=1).reshape(res.out.shape)
        golden = res.out.reshape(out.shape[0], -1, *out.shape[-2:])
        bad = (torch.stack(outs, dim=1) != golden).flatten(2).any(-1).any(0)
        stats["mismatching_heads"] += int(bad.sum())
        stats["head_calls"] += 1
        stats["heads"] += len(heads)
        stats["beats"] += sum(h.steps for h in heads) * config.tokens
        log(f"  head call {call}: {len(heads)} heads (n={config.tokens}, d={config.head_dim}, "
            f"lanes {lanes}) in {took:.1f} s, {int(bad.sum())} differing from golden")
        return res._replace(out=out)

    golden_logits, hardware_logits = [], []
    start = time.monotonic()
    for at in range(0, images, batch):
        x = x_te[at:min(images, at + batch)]
        log(f"images {at}..{at + len(x) - 1}")
        snn.head_function = attention_head
        golden_logits.append(snn(x, T=T))
        snn.head_function = hardware_head
        hardware_logits.append(snn(x, T=T))
        same = torch.equal(golden_logits[-1], hardware_logits[-1])
        log(f"  logits after each of the {T} steps: {'equal' if same else 'DIFFERENT'}")
    golden_y, hardware_y = torch.cat(golden_logits, 1), torch.cat(hardware_logits, 1)
    labels = y_te[:images]
    result = {"images": images, "T": T, "lanes": lanes, "batch": batch,
              "configs": len(models), **stats,
              "seconds_simulation": round(stats["seconds_simulation"], 1),
              "seconds_build": round(stats["seconds_build"], 1),
              "seconds": round(time.monotonic() - start, 1),
              "logits_equal": torch.equal(golden_y, hardware_y),
              "differing_logits": int((golden_y != hardware_y).sum()),
              "accuracy_golden": [round(float(a), 2) for a in
                                  100.0 * (golden_y.argmax(-1) == labels).double().mean(-1)],
              "accuracy_hardware": [round(float(a), 2) for a in
                                    100.0 * (hardware_y.argmax(-1) == labels).double().mean(-1)]}
    if stats["mismatching_heads"] or not result["logits_equal"]:
        raise AssertionError(
            f"whole model: {stats['mismatching_heads']} of {stats['heads']} heads differ from "
            f"the golden head; {result['differing_logits']} logits differ "
            f"(of {golden_y.numel()})")
    return result


# -- command line ------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = Parser(prog="python -m sim.attention_check", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--whole-model", action="store_true",
                      help="the digits ViT in integer mode with Verilator heads")
    what.add_argument("--set", choices=sorted(parameter_sets()),
                      help="one parameter set of the head regression")
    # Defaults in _run: an option given with the other mode is refused, not ignored.
    parser.add_argument("--images", type=int,
                        help="test images (default 50; --whole-model only)")
    parser.add_argument("--batch", type=int,
                        help="images per forward pass (default 25; --whole-model only)")
    parser.add_argument("--lanes", type=int,
                        help="core lanes (default 4; --whole-model only: a set has its own)")
    parser.add_argument("--heads", type=int,
                        help="random heads of the parameter set (default 200; --set only)")
    parser.add_argument("--out", default=str(REPO / "build" / "sim"), type=output_folder,
                        help="folder for the JSON record and the runs (default build/sim)")
    parser.set_defaults(run=_run)
    return run(parser, argv)


def _run(args) -> None:
    out = args.out
    if args.set is not None:
        given = [f"--{name}" for name in ("images", "batch", "lanes")
                 if getattr(args, name) is not None]
        if given:
            are, them = ("is an option", "it") if len(given) == 1 else ("are options", "them")
            raise ValueError(f"{', '.join(given)} {are} of --whole-model; --set {args.set} "
                             f"would ignore {them}")
    elif args.heads is not None:
        raise ValueError("--heads is an option of --set; --whole-model would ignore it (it "
                         "runs the ViT's own heads)")
    given = {name: getattr(args, name) for name in ("images", "batch", "lanes", "heads")
             if getattr(args, name) is not None}  # the rest take the functions' defaults
    from hwgen.cores.attention import digits_head_config
    maximum = {"lanes": digits_head_config().head_dim}
    for name, value in given.items():  # the functions' own checks name their parameters
        check_int(f"--{name}", value, minimum=0 if name == "heads" else 1,
                  maximum=maximum.get(name))
    if args.whole_model:
        result = check_whole_model(work_dir=out / "whole_model",
                                   log=lambda s: print(s, flush=True), **given)
        path = out / "attention_whole_model.json"
    else:
        _, result = check_parameter_set(args.set, out / f"attention_{args.set}", **given)
        path = out / f"attention_{args.set}.json"
    write_output(path, json.dumps(result, indent=2) + "\n")
    if "timing" in result:  # the per-head timing is in the file; print the summary
        result = result | {"timing": {k: v for k, v in result["timing"].items()
                                      if k != "by_head"}}
    print(json.dumps({k: v for k, v in result.items() if k != "params"}, indent=2))
    print(f"passed; wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
