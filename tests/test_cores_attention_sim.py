"""Amaranth-simulator tests of the spiking attention head core against the golden head
:func:`golden.attention.attention_head`: random codes, random valid/ready stalls, several heads
back to back (state restarts with ``first``), lanes, cycles per step, parameter checks."""

import pytest
import torch

from golden.attention import attention_head, random_codes
from golden.si_exp import shipped_table
from sim.amaranth_stream import run_stream
from sim.attention_check import small_config
from sim.softmax_check import make_test_table
from hwgen.cores import core_parameters, make_core, parse_params
from hwgen.cores.attention import AttentionHead, default_head_config

config = small_config  # 4 tokens, head_dim 4, T = 4, 3 levels


def head_beats(q, k, v):
    beats = []
    for t in range(q.shape[0]):
        for tok in range(q.shape[1]):
            beats.append({"q": q[t, tok].tolist(), "k": k[t, tok].tolist(),
                          "v": v[t, tok].tolist(), "first": int(t == 0)})
    return beats


def run(core, beats, **options):
    """Stream ``beats`` in; return (output beats as (codes, last), accept cycles, output
    cycles)."""
    got, accepts, outputs = run_stream(core, beats, max_cycles=2_000_000, **options)
    return [([int(x) for x in p.out], int(p.last)) for p in got], accepts, outputs


def expected(cfg, heads):
    out = []
    for q, k, v in heads:
        res = attention_head(q, k, v, cfg).out
        for t in range(res.shape[0]):
            for tok in range(cfg.tokens):
                out.append((res[t, tok].tolist(), int(tok == cfg.tokens - 1)))
    return out


def make_heads(cfg, count, seed, steps=None):
    g = torch.Generator().manual_seed(seed)
    heads = []
    for h in range(count):
        T = steps[h] if steps else cfg.time_steps
        heads.append(tuple(random_codes((T, cfg.tokens, cfg.head_dim), cfg.levels,
                                        0.4 + 0.15 * (h % 4), g)
                           for _ in range(3)))
    return heads


CONFIGS = {
    "n4d4L3": (config(), 1),
    "n4d4L4": (config(levels=4, q_exponents=(-2, -2), k_exponents=(-2, -2),
                      v_exponents=(-2, -2), s_exponents=(-3, -3), out_exponents=(-2, -2)), 1),
    "n3d4L3_lanes2": (config(tokens=3, time_steps=5, score_scale=1.0), 2),
    "n2d3L4_lanes2": (config(tokens=2, head_dim=3, levels=4, rounding="floor",
                             out_exponents=(-1, -2)), 2),
    # M = 45875 has nine signed digits, the lowest negative: the constant multiplier's
    # subtractions (every other set scales by a power of two).
    "n4d4L3_scale035": (config(score_scale=0.35), 1),
    # max(K, log2 N + 1) = 4 <= ceil(d / lanes): the softmax is the iterative variant.
    "n5d4K3N8_iterative": (config(tokens=5, table=make_test_table(3, -8.0, 0.0), N=8), 1),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_heads_back_to_back_under_stalls(name):
    cfg, lanes = CONFIGS[name]
    core = AttentionHead(cfg, lanes=lanes)
    # Heads of full length and shorter, back to back; each restarts with first = 1.
    steps = [cfg.time_steps, 2, cfg.time_steps, 1]
    heads = make_heads(cfg, len(steps), seed=len(name), steps=steps)
    beats = [b for h in heads for b in head_beats(*h)]
    got, _, _ = run(core, beats, valid_prob=0.6, ready_prob=0.5, seed=3)
    want = expected(cfg, heads)
    assert got == want
    # The test is not vacuous: the outputs hold spikes of both signs.
    codes = [c for beat, _ in want for c in beat]
    assert any(c > 0 for c in codes) and any(c < 0 for c in codes)


def test_saturating_codes():
    """Every code at its largest magnitude: the widths derived from T hold the extremes."""
    cfg, lanes = CONFIGS["n4d4L4"]
    core = AttentionHead(cfg, lanes=lanes)
    top = 1 << (cfg.levels - 1)
    shape = (cfg.time_steps, cfg.tokens, cfg.head_dim)
    g = torch.Generator().manual_seed(5)
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -top, top)
    heads = [(torch.full(shape, top), torch.full(shape, top), torch.full(shape, -top)),
             (torch.full(shape, -top), torch.full(shape, top), sign),
             (sign, -sign, torch.full(shape, top))]
    beats = [b for h in heads for b in head_beats(*h)]
    got, _, _ = run(core, beats, ready_prob=0.7, seed=1)
    assert got == expected(cfg, heads)


def test_overrun_rises_past_time_steps_and_holds_until_the_next_head():
    """A head run for 5·T steps (its step counter would have wrapped twice) keeps ``overrun``
    up from its step T + 1 on; the next head's ``first`` clears it and is bit-exact again."""
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator
    cfg = config(tokens=2, head_dim=2, time_steps=2)
    core = AttentionHead(cfg)
    long, short = make_heads(cfg, 2, seed=9, steps=[5 * cfg.time_steps, cfg.time_steps])
    beats = head_beats(*long) + head_beats(*short)
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.core = core
    seen = []

    async def producer(ctx):
        for beat in beats:
            ctx.set(core.i.payload, beat)
            ctx.set(core.i.valid, 1)
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)

    async def consumer(ctx):
        ctx.set(core.o.ready, 1)
        while len(seen) < len(beats):
            *_, payload, valid, overrun = await ctx.tick().sample(core.o.payload, core.o.valid,
                                                                  core.overrun)
            if valid:
                seen.append(([int(x) for x in payload.out], int(payload.last), int(overrun)))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    n, T = cfg.tokens, cfg.time_steps
    flags = [flag for _, _, flag in seen]
    assert flags == [0] * (n * T) + [1] * (n * 4 * T) + [0] * (n * T)
    assert [(out, last) for out, last, _ in seen[-n * T:]] == expected(cfg, [short])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cycles_per_step(name):
    """Without stalls, a step takes exactly step_cycles() cycles, input to input."""
    cfg, lanes = CONFIGS[name]
    core = AttentionHead(cfg, lanes=lanes)
    heads = make_heads(cfg, 1, seed=7)
    beats = [b for h in heads for b in head_beats(*h)]
    got, accepts, outputs = run(core, beats)
    assert got == expected(cfg, heads)
    n = cfg.tokens
    firsts = accepts[::n]
    assert [b - a for a, b in zip(firsts, firsts[1:])] == [core.step_cycles()] * (len(firsts) - 1)
    assert outputs[n - 1] - accepts[0] == core.latency
    assert core.throughput == n / core.step_cycles()
    # Each step's n input beats are taken one per ceil(d / lanes) cycles.
    chunks = -(-cfg.head_dim // lanes)
    assert all(accepts[s * n + n - 1] - accepts[s * n] == (n - 1) * chunks
               for s in range(len(firsts)))


def test_widths_cover_the_golden_intermediates():
    cfg, _ = CONFIGS["n4d4L4"]
    core = AttentionHead(cfg)
    w = core.widths
    top = (1 << (cfg.levels - 1)) * cfg.time_steps
    p_max = cfg.head_dim * top * top
    assert p_max < 1 << (w["P"] - 1)
    assert cfg.time_steps * cfg.N < 1 << w["cum (unsigned)"]
    assert core.code_width == cfg.levels + 1


@pytest.mark.parametrize("kw, lanes, error, message", [
    ({"softmax": "exact"}, 1, ValueError,
     r"^config.softmax must be 'spiking' for the attention core, not 'exact'$"),
    ({"softmax_input": "sigmoid", "table": shipped_table(12, -1.0, 1.0)}, 1, ValueError,
     r"^config.softmax_input must be 'max' for the attention core, not 'sigmoid'$"),
    ({}, 0, ValueError, r"^lanes must be an integer from 1 to 4, not 0$"),
    ({}, 5, ValueError, r"^lanes must be an integer from 1 to 4, not 5$"),
])
def test_rejects_bad_parameters(kw, lanes, error, message):
    with pytest.raises(error, match=message):
        AttentionHead(config(**kw), lanes=lanes)


def test_rejects_non_config():
    with pytest.raises(TypeError, match=r"^config must be a HeadConfig, not dict$"):
        AttentionHead({"tokens": 4})


def test_stream_beats_of_a_head():
    """input_beats / output_beats follow the stream order the class documents."""
    cfg = config()
    core = AttentionHead(cfg)
    (q, k, v), = make_heads(cfg, 1, seed=2, steps=[3])
    assert core.input_beats(q, k, v) == head_beats(q, k, v)
    out = attention_head(q, k, v, cfg).out
    assert [(b["out"], b["last"]) for b in core.output_beats(out)] == expected(cfg, [(q, k, v)])


def zeros(*shape, dtype=torch.int64):
    return torch.zeros(shape, dtype=dtype)


def with_code(codes, value):
    codes[0, 0, 0] = value
    return codes


@pytest.mark.parametrize("q, k, v, error, message", [
    (zeros(4, 4, 4, 1), zeros(4, 4, 4), zeros(4, 4, 4), ValueError,
     r"^q must have shape \(steps, 4, 4\) with 1 <= steps <= 4, not \(4, 4, 4, 1\)$"),
    (zeros(5, 4, 4), zeros(5, 4, 4), zeros(5, 4, 4), ValueError,
     r"^q must have shape .* not \(5, 4, 4\)$"),
    (zeros(2, 4, 4), with_code(zeros(2, 4, 4), 3), zeros(2, 4, 4), ValueError,
     r"^k holds 3, which is not an MT code"),
    (zeros(2, 4, 4), zeros(2, 4, 4, dtype=torch.float32), zeros(2, 4, 4), TypeError,
     r"^k must be an integer tensor of MT codes, not torch.float32$"),
    (zeros(2, 4, 4), zeros(3, 4, 4), zeros(3, 4, 4), ValueError,
     r"^q, k and v must have one shape, not \(2, 4, 4\), \(3, 4, 4\), \(3, 4, 4\)$"),
])
def test_input_beats_rejects_bad_codes(q, k, v, error, message):
    with pytest.raises(error, match=message):
        AttentionHead(config()).input_beats(q, k, v)


def test_registry():
    """Registered as "attention": the CLI sets lanes; the head itself is the default config."""
    assert [p.name for p in core_parameters("attention")] == ["lanes", "head"]
    assert all(p.doc for p in core_parameters("attention"))
    core = make_core("attention", parse_params("attention", ["lanes=2"]))
    assert core.lanes == 2 and core.config == default_head_config()
    assert core.config.table == shipped_table(12, -8.0, 0.0)
    digits = make_core("attention", parse_params("attention", ["head=digits"]))
    assert (digits.config.tokens, digits.config.head_dim, digits.config.levels) == (16, 16, 8)
    with pytest.raises(ValueError, match=r"^head must be one of default, digits, not 'vit'$"):
        AttentionHead(head="vit")
    with pytest.raises(ValueError, match=r"^head must be one of default, digits, not 'vit'$"):
        AttentionHead(small_config(), head="vit")  # used to be ignored beside a config
    with pytest.raises(ValueError, match=r"^give either config or head, not both "
                                         r"\(head='digits'\)$"):
        AttentionHead(small_config(), head="digits")
