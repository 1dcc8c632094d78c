# amaranth: UnusedElaboratable=no
"""SelfTest in the Amaranth simulator: it passes on a correct core and fails on a wrong vector.

(The first line lets tests build cores only for their vectors or their error paths.)
"""

import random

import pytest
import torch
from amaranth import Module, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.attention import attention_head
from golden.softmax import spiking_softmax
from hwgen.cores.attention import AttentionHead
from hwgen.cores.if_neuron import IFPopulation
from hwgen.cores.mt_neuron import MTPopulation
from hwgen.cores.softmax import SpikingSoftmax
from hwgen.selftest import (ATTENTION_DENSITIES, SelfTest, attention_selftest_vectors,
                            neuron_selftest_vectors, softmax_selftest_vectors)

IF_SMALL = (IFPopulation, dict(neurons=4, width=6, threshold=20, time_steps=4))
# Two neurons: the MT core (3-stage recurrence) then inserts bubbles, which the test also covers.
MT_SMALL = (MTPopulation,
            dict(neurons=2, width=8, lambda_pos=5, lambda_neg=3, levels=3, time_steps=4))


def make_core(cls, params):
    return cls(**params)


def run_selftest(dut: SelfTest, cycles: int, stop_after_passes: int = 3) -> dict:
    """Clock ``dut`` until it has completed ``stop_after_passes`` passes or ``cycles`` elapse;
    return its outputs, whether ``passed`` ever fell after rising, and how often the self-test
    left the core's input idle (``gaps``) and held back its output (``backpressure``). Asserts
    the stream rule on both of the core's streams."""
    state = {}
    i, o = dut.core.i, dut.core.o
    streams = {"input": (i, Value.cast(i.payload)), "output": (o, Value.cast(o.payload))}

    async def testbench(ctx):
        was_passed = dropped = False
        pending = {}  # stream -> payload of a beat offered but not taken in the previous cycle
        gaps = backpressure = 0
        for cycle in range(cycles):
            await ctx.tick()
            for name, (port, payload) in streams.items():
                valid, ready, beat = ctx.get(port.valid), ctx.get(port.ready), ctx.get(payload)
                if pending.get(name) is not None:
                    assert valid and beat == pending[name], \
                        f"{name} beat withdrawn or changed at {cycle}"
                pending[name] = beat if valid and not ready else None
            gaps += not ctx.get(i.valid)
            backpressure += ctx.get(o.valid) and not ctx.get(o.ready)
            passed = ctx.get(dut.passed)
            dropped |= was_passed and not passed
            was_passed = passed
            if ctx.get(dut.passes) >= stop_after_passes:
                break
        state.update(cycle=cycle, passed=ctx.get(dut.passed), failed=ctx.get(dut.failed),
                     passes=ctx.get(dut.passes), dropped=dropped, gaps=gaps,
                     backpressure=backpressure)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return state


@pytest.mark.parametrize("cls, params", [IF_SMALL, MT_SMALL], ids=["if", "mt"])
def test_selftest_passes(cls, params):
    core = make_core(cls, params)
    vectors = neuron_selftest_vectors(core, samples=2, seed=5)
    state = run_selftest(SelfTest(core, vectors.inputs, vectors.expected), cycles=4000)
    assert state["passes"] >= 3, state
    assert state["passed"] == 1 and state["failed"] == 0 and not state["dropped"], state
    # The stimulus did exercise gaps and back-pressure.
    assert state["gaps"] > 0 and state["backpressure"] > 0, state


@pytest.mark.parametrize("cls, params", [IF_SMALL, MT_SMALL], ids=["if", "mt"])
def test_selftest_detects_a_wrong_expected_value(cls, params):
    core = make_core(cls, params)
    inputs, expected, _ = neuron_selftest_vectors(core, samples=2, seed=5)
    expected[len(expected) // 2] ^= 1
    state = run_selftest(SelfTest(core, inputs, expected), cycles=4000, stop_after_passes=1)
    assert state["passes"] >= 1, state
    assert state["failed"] == 1 and state["passed"] == 0, state


@pytest.mark.parametrize("beat", [0, 5])
def test_selftest_flags_a_mismatch_two_cycles_after_its_beat(beat):
    # The documented timing of ``failed``, and ``passed`` never rising on the way.
    core = make_core(*IF_SMALL)
    inputs, expected, _ = neuron_selftest_vectors(core, samples=1, seed=5)
    expected[beat] ^= 1
    dut = SelfTest(core, inputs, expected)
    seen = {}

    async def testbench(ctx):
        transfers = 0
        for cycle in range(400):
            if ctx.get(dut.failed) and "failed" not in seen:
                seen["failed"] = cycle
            seen["passed"] = seen.get("passed", 0) | ctx.get(dut.passed)
            if ctx.get(core.o.valid) and ctx.get(core.o.ready):
                if transfers == beat:
                    seen["transfer"] = cycle
                transfers += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["failed"] == seen["transfer"] + 2 and seen["passed"] == 0, seen


class _Puppet(wiring.Component):
    """A core without logic: the testbench drives its ``i.ready`` and its output beats."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(unsigned(8))),
                          "o": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform):
        return Module()


# i.ready patterns: random, long stretches low, and high while nothing is offered.
READY_PATTERNS = {
    "random": lambda rng, cycle, valid: rng.random() < 0.5,
    "long_low": lambda rng, cycle, valid: cycle // 37 % 3 == 2,
    "when_idle": lambda rng, cycle, valid: not valid or rng.random() < 0.3,
}


@pytest.mark.parametrize("pattern", READY_PATTERNS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_selftest_walks_its_roms_in_order(depth, pattern):
    # Every input entry reaches the core once per pass, in order and across the wrap, a held
    # beat stays put, and ``passes`` counts each pass two cycles after its last output beat.
    rng = random.Random(depth)
    inputs = [(17 * k + 3) % 256 for k in range(depth)]
    expected = [(29 * k + 11) % 256 for k in range(depth)]
    core = _Puppet()
    dut = SelfTest(core, inputs, expected)
    seen = {"in": [], "pass_due": [], "pass_seen": [], "held": []}

    async def testbench(ctx):
        held = None
        out_count, offered = 0, None
        passes = 0
        for cycle in range(500):
            valid = ctx.get(core.i.valid)
            ctx.set(core.i.ready, READY_PATTERNS[pattern](rng, cycle, valid))
            if offered is None and rng.random() < 0.7:
                offered = expected[out_count % depth]
                out_count += 1
            ctx.set(core.o.valid, offered is not None)
            ctx.set(core.o.payload, offered or 0)
            ready, payload = ctx.get(core.i.ready), ctx.get(core.i.payload)
            if held is not None:
                seen["held"].append(valid and payload == held)
            held = payload if valid and not ready else None
            if valid and ready:
                seen["in"].append(payload)
            if offered is not None and ctx.get(core.o.ready):
                offered = None
                if out_count % depth == 0:
                    seen["pass_due"].append(cycle + 2)
            if ctx.get(dut.passes) != passes:
                passes = ctx.get(dut.passes)
                seen["pass_seen"].append(cycle)
            await ctx.tick()
        assert not ctx.get(dut.failed)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert len(seen["in"]) > 3 * depth and all(seen["held"])
    assert seen["in"] == [inputs[k % depth] for k in range(len(seen["in"]))]
    assert seen["pass_seen"] == [c for c in seen["pass_due"] if c < 500]


def test_vectors_order_and_edges():
    core = make_core(*IF_SMALL)
    cfg = core.config
    inputs, expected, samples = neuron_selftest_vectors(core, samples=1)
    layout = core.i.payload.shape()
    beats = [layout.from_bits(v) for v in inputs]
    steps, neurons = cfg.time_steps, core.neurons
    assert len(beats) == samples * steps * neurons and len(expected) == len(beats)
    for index, beat in enumerate(beats):
        assert beat["first"] == int(index // neurons % steps == 0)
    xs = [beat["x"] for beat in beats]
    # Extremes held for a whole sample, and a first step landing exactly on the threshold.
    assert [xs[t * neurons] for t in range(steps)] == [cfg.input_format.max_int] * steps
    assert [xs[t * neurons + 1] for t in range(steps)] == [cfg.input_format.min_int] * steps
    assert cfg.threshold - cfg.initial_potential in xs


def test_vectors_are_reproducible():
    core = make_core(*MT_SMALL)
    assert neuron_selftest_vectors(core, seed=3) == neuron_selftest_vectors(core, seed=3)
    assert neuron_selftest_vectors(core, seed=3) != neuron_selftest_vectors(core, seed=4)


def test_selftest_rejects_bad_vectors():
    core = make_core(*IF_SMALL)
    with pytest.raises(ValueError, match=r"^inputs must hold at least one beat$"):
        SelfTest(core, [], [0])
    with pytest.raises(ValueError,
                       match=r"^expected\[1\] must be an integer from 0 to 1 \(a 1-bit payload\), "
                             r"not 2$"):
        SelfTest(core, [0], [0, 2])
    with pytest.raises(TypeError, match=r"^core must be a neuron population core"):
        neuron_selftest_vectors(object())


# -- spiking softmax ------------------------------------------------------------------------

SOFTMAX_SMALL = dict(n_max=4)  # the shipped K = 12 table on [-8, 0], max subtraction


def test_softmax_selftest_passes():
    # Two passes: the second starts over from the first row, right after the last one.
    core = SpikingSoftmax(**SOFTMAX_SMALL)
    vectors = softmax_selftest_vectors(core, rows=8, seed=5)
    state = run_selftest(SelfTest(core, vectors.inputs, vectors.expected),
                         cycles=4 * len(vectors.inputs), stop_after_passes=2)
    assert state["passes"] >= 2, state
    assert state["passed"] == 1 and state["failed"] == 0 and not state["dropped"], state
    assert state["gaps"] > 0 and state["backpressure"] > 0, state


@pytest.mark.parametrize("field, bit", [("c", 0), ("c", 8), ("last", 0), ("cut", 0)])
def test_softmax_selftest_detects_a_wrong_expected_value(field, bit):
    core = SpikingSoftmax(**SOFTMAX_SMALL)
    inputs, expected, _ = softmax_selftest_vectors(core, rows=8, seed=5)
    expected[-1] ^= 1 << (core.o.payload.shape()[field].offset + bit)
    state = run_selftest(SelfTest(core, inputs, expected), cycles=4 * len(inputs),
                         stop_after_passes=1)
    assert state["passes"] >= 1, state
    assert state["failed"] == 1 and state["passed"] == 0, state


def test_softmax_vectors_layout():
    core = SpikingSoftmax(**SOFTMAX_SMALL)
    n_max, f = core.n_max, core.table.input_format
    inputs, expected, samples = softmax_selftest_vectors(core, rows=10, seed=2)
    beats = [core.i.payload.shape().from_bits(v) for v in inputs]
    outs = [core.o.payload.shape().from_bits(v) for v in expected]
    rows, row = [], []
    for beat in beats:
        row.append(int(beat.x))
        if beat.last:
            rows.append(row)
            row = []
    assert row == [] and len(rows) == samples
    lengths = [len(r) for r in rows]
    assert lengths[0] == 1 and max(lengths) > n_max  # one-score rows and rows to be cut
    assert [f.max_int] * n_max in rows and [f.min_int] * n_max in rows
    assert all(1 <= n <= n_max for n in lengths[-10:])  # the random rows
    # The expected beats are the golden counts of each piece of at most n_max scores.
    want = []
    for r in rows:
        pieces = [r[i:i + n_max] for i in range(0, len(r), n_max)]
        for p, piece in enumerate(pieces):
            counts = spiking_softmax(torch.tensor(piece), core.table, core.N,
                                     subtract_max=True).counts.tolist()
            ends = [j == len(piece) - 1 for j in range(len(piece))]
            want += [(c, int(end), int(end and p + 1 < len(pieces)))
                     for c, end in zip(counts, ends)]
    assert [(int(o.c), int(o.last), int(o.cut)) for o in outs] == want
    assert any(cut for _, _, cut in want) and len({c for c, _, _ in want}) > 10


def test_softmax_vectors_are_reproducible_and_checked():
    core = SpikingSoftmax(**SOFTMAX_SMALL)
    assert softmax_selftest_vectors(core, seed=3) == softmax_selftest_vectors(core, seed=3)
    assert softmax_selftest_vectors(core, seed=3) != softmax_selftest_vectors(core, seed=4)
    with pytest.raises(TypeError, match=r"^core must be a spiking softmax core"):
        softmax_selftest_vectors(make_core(*IF_SMALL))
    with pytest.raises(ValueError, match=r"^rows must be an integer from 0 to 4096, not -1$"):
        softmax_selftest_vectors(core, rows=-1)


# -- attention head -------------------------------------------------------------------------

def test_attention_selftest_passes():
    # The default head (the board design's core). Two passes: the second starts over from the
    # first ROM entry, a new head with first = 1 after a head of T steps.
    core = AttentionHead()
    vectors = attention_selftest_vectors(core, heads=2, seed=5)
    state = run_selftest(SelfTest(core, vectors.inputs, vectors.expected), cycles=20000,
                         stop_after_passes=2)
    assert state["passes"] >= 2, state
    assert state["passed"] == 1 and state["failed"] == 0 and not state["dropped"], state
    assert state["gaps"] > 0 and state["backpressure"] > 0, state


@pytest.mark.parametrize("beat", [0, -1], ids=["first beat", "last beat"])
def test_attention_selftest_detects_a_wrong_expected_value(beat):
    # One output code of one beat is wrong (a bit of the first code: the lowest bits).
    core = AttentionHead()
    inputs, expected, _ = attention_selftest_vectors(core, heads=2, seed=5)
    expected[beat] ^= 1 << 1
    state = run_selftest(SelfTest(core, inputs, expected), cycles=20000, stop_after_passes=1)
    assert state["passes"] >= 1, state
    assert state["failed"] == 1 and state["passed"] == 0, state


def test_attention_vectors_layout():
    core = AttentionHead()
    cfg = core.config
    T, n, d, top = cfg.time_steps, cfg.tokens, cfg.head_dim, 1 << (cfg.levels - 1)
    heads = 5
    inputs, expected, samples = attention_selftest_vectors(core, heads=heads, seed=2)
    assert samples == heads + 1
    assert len(inputs) == len(expected) == (heads + 1) * T * n
    in_layout, out_layout = core.i.payload.shape(), core.o.payload.shape()
    beats = [in_layout.from_bits(v) for v in inputs]
    outs = [out_layout.from_bits(v) for v in expected]
    assert [b.first for b in beats] == [int(i // n % T == 0) for i in range(len(beats))]
    assert [o.last for o in outs] == [int(i % n == n - 1) for i in range(len(outs))]

    def head(h, name):
        rows = [[int(c) for c in getattr(beats[h * T * n + i], name)] for i in range(T * n)]
        return torch.tensor(rows).reshape(T, n, d)

    # The edge head: the largest magnitude everywhere, with the sign of the larger λ.
    for name, (ep, en) in (("q", cfg.q_exponents), ("k", cfg.k_exponents),
                           ("v", cfg.v_exponents)):
        assert (head(0, name) == (top if ep >= en else -top)).all(), name
    # The random heads: each one's density, and the expected beats are the golden head's.
    for h in range(heads + 1):
        q, k, v = (head(h, name) for name in "qkv")
        out = attention_head(q, k, v, cfg).out.reshape(T * n, d).tolist()
        assert [[int(c) for c in o.out] for o in outs[h * T * n:(h + 1) * T * n]] == out
        if h:
            density = float((torch.stack([q, k, v]) != 0).double().mean())
            assert abs(density - ATTENTION_DENSITIES[(h - 1) % 4]) < 0.15, (h, density)
    # Not vacuous: both signs among the expected codes.
    codes = [int(c) for o in outs for c in o.out]
    assert any(c > 0 for c in codes) and any(c < 0 for c in codes)


def test_attention_vectors_are_reproducible_and_checked():
    core = AttentionHead()
    assert attention_selftest_vectors(core, seed=3) == attention_selftest_vectors(core, seed=3)
    assert attention_selftest_vectors(core, seed=3) != attention_selftest_vectors(core, seed=4)
    with pytest.raises(TypeError, match=r"^core must be an attention head core"):
        attention_selftest_vectors(make_core(*IF_SMALL))
    with pytest.raises(ValueError, match=r"^heads must be an integer from 0 to 4096, not -1$"):
        attention_selftest_vectors(core, heads=-1)


def test_selftest_passes_saturate():
    # One-entry ROMs and an output offered in every cycle: a pass per output transfer, so
    # 65,535 passes come in about 90,000 cycles; the count must then stay at 65,535.
    core = _Puppet()
    dut = SelfTest(core, [7], [9])
    seen = []

    async def testbench(ctx):
        ctx.set(core.i.ready, 1)
        ctx.set(core.o.valid, 1)
        ctx.set(core.o.payload, 9)
        for _ in range(150):  # a bound, so that a counter that wraps cannot hang the test
            if ctx.get(dut.passes) >= 65000:
                break
            await ctx.tick().repeat(1000)
        for _ in range(2000):
            await ctx.tick()
            seen.append(ctx.get(dut.passes))
        seen.append(ctx.get(dut.passed))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert seen[-2] == 65535 and seen[-1] == 1
    assert seen[:-1] == sorted(seen[:-1])  # it never wrapped
