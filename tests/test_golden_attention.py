"""The integer ECM operators and the integer attention head against step-by-step references
written with Python integers (the specification the hardware head implements)."""

import dataclasses
import math
import random

import pytest
import torch

from golden.attention import (HeadConfig, attention_head, check_codes, decode_codes,
                              matmul_sops, random_codes)
from golden.ecm import ecm_matmul, ecm_matmul_int, ecm_unary, ecm_unary_int
from golden.si_exp import shipped_table


def test_ecm_unary_int_telescopes_exactly():
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(-5000, 5000, (9, 4, 7), generator=gen)
    f = lambda m: torch.nn.functional.gelu(m)  # noqa: E731
    o = ecm_unary_int(x, f, in_frac=10, out_frac=8)
    C = torch.cumsum(o, 0)
    for t in range(1, 10):
        S = x[:t].sum(0).double() / 1024
        expect = torch.floor(t * f(S / t) * 256 + 0.5).to(torch.int64)
        assert torch.equal(C[t - 1], expect)


def test_ecm_matmul_int_telescopes_to_floor_of_running_product():
    rng = random.Random(2)
    T, n, m, p = 6, 3, 4, 2
    a = [[[rng.choice([0, 1, -2, 4, -8]) for _ in range(m)] for _ in range(n)] for _ in range(T)]
    b = [[[rng.choice([0, 2, -1, 16]) for _ in range(p)] for _ in range(m)] for _ in range(T)]
    C = torch.cumsum(ecm_matmul_int(torch.tensor(a), torch.tensor(b)), 0)
    SA = [[0] * m for _ in range(n)]
    SB = [[0] * p for _ in range(m)]
    for t in range(T):
        for i in range(n):
            for j in range(m):
                SA[i][j] += a[t][i][j]
        for j in range(m):
            for k in range(p):
                SB[j][k] += b[t][j][k]
        for i in range(n):
            for k in range(p):
                prod = sum(SA[i][j] * SB[j][k] for j in range(m))
                assert C[t, i, k] == prod // (t + 1)  # Python // is floor


def test_ecm_real_forms_telescope():
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    o = ecm_unary(x, lambda m: torch.softmax(m, -1))
    t = torch.arange(1, 8, dtype=torch.float64).reshape(7, 1, 1)
    assert torch.allclose(torch.cumsum(o, 0), t * torch.softmax(torch.cumsum(x, 0) / t, -1))
    a, b = torch.randn(7, 3, 4, dtype=torch.float64), torch.randn(7, 4, 2, dtype=torch.float64)
    mean = (torch.cumsum(a, 0) / t) @ (torch.cumsum(b, 0) / t)
    assert torch.allclose(torch.cumsum(ecm_matmul(a, b), 0) / t, mean)


# ---------------------------------------------------------------------------------------------
# Reference head: one element at a time, Python integers, straight from the docstring.

def _mt_step(v, lp, ln, levels):
    for k in reversed(range(levels)):
        if 2 * v >= lp * ((2 << k) - 1):
            return 1 << k, v - (lp << k)
        if 2 * v <= -ln * ((2 << k) - 1):
            return -(1 << k), v + (ln << k)
    return 0, v


def _mt_lambdas(exponents, in_unit):
    shift = max(0, 1 - (min(exponents) - in_unit))
    return shift, [1 << (e - in_unit + shift) for e in exponents]


def _value(code, exponents):
    u = min(exponents)
    return code * (1 << ((exponents[0] if code > 0 else exponents[1]) - u))


def reference_head(q, k, v, c: HeadConfig):
    T, n, d = len(q), c.tokens, c.head_dim
    tab = c.table
    M, shift = c.score_constant
    SQ = [[0] * d for _ in range(n)]
    SK = [[0] * d for _ in range(n)]
    SV = [[0] * d for _ in range(n)]
    SA = [[0] * n for _ in range(n)]
    prev_cum = [[0] * n for _ in range(n)]
    prev_C2 = [[0] * d for _ in range(n)]
    vs = [[0] * n for _ in range(n)]
    vo = [[0] * d for _ in range(n)]
    s_shift, (s_lp, s_ln) = _mt_lambdas(c.s_exponents, -c.q)
    o_unit = min(c.s_exponents) + min(c.v_exponents)
    o_shift, (o_lp, o_ln) = _mt_lambdas(c.out_exponents, o_unit)
    outs, all_counts, all_s = [], [], []
    for t in range(1, T + 1):
        for i in range(n):
            for j in range(d):
                SQ[i][j] += _value(q[t - 1][i][j], c.q_exponents)
                SK[i][j] += _value(k[t - 1][i][j], c.k_exponents)
                SV[i][j] += _value(v[t - 1][i][j], c.v_exponents)
        out_t = [[0] * d for _ in range(n)]
        s_codes = [[0] * n for _ in range(n)]
        row_counts = []
        for i in range(n):
            C = [sum(SQ[i][x] * SK[j][x] for x in range(d)) // t for j in range(n)]
            X = [(2 * Cj * M + (t << shift)) // (2 * (t << shift)) for Cj in C]
            if c.softmax_input == "sigmoid":
                X = [math.floor(2 ** tab.input_format.frac
                                / (1 + math.exp(-x * 2.0 ** -tab.input_format.frac)) + 0.5)
                     for x in X]
            else:
                top = max(X)
                X = [max(x - top, tab.input_format.min_int) for x in X]
            e = []
            for x in X:
                pot, acc = min(max(x, tab.lo), tab.hi), 0
                for h, dd, th in zip(tab.h, tab.d, tab.T):
                    if pot >= th:
                        acc += dd
                        pot -= h
                e.append(max(acc, 0))
            vth = sum(e)
            counts = [(c.N * ej + vth // 2) // vth if vth else 0 for ej in e]
            row_counts.append(counts)
            for j in range(n):
                cum = t * counts[j]
                s_in = (cum - prev_cum[i][j]) << s_shift
                prev_cum[i][j] = cum
                s_codes[i][j], vs[i][j] = _mt_step(vs[i][j] + s_in, s_lp, s_ln, c.levels)
        for i in range(n):
            for j in range(n):
                SA[i][j] += _value(s_codes[i][j], c.s_exponents)
        for i in range(n):
            for x in range(d):
                C2 = sum(SA[i][j] * SV[j][x] for j in range(n)) // t
                o_in = (C2 - prev_C2[i][x]) << o_shift
                prev_C2[i][x] = C2
                out_t[i][x], vo[i][x] = _mt_step(vo[i][x] + o_in, o_lp, o_ln, c.levels)
        outs.append(out_t)
        all_counts.append(row_counts)
        all_s.append(s_codes)
    return outs, all_counts, all_s


CONFIGS = {
    "tiny": dict(tokens=3, head_dim=2, time_steps=5, levels=3, q_exponents=(-1, -2),
                 k_exponents=(0, 0), v_exponents=(-3, -1), s_exponents=(-7, -7),
                 out_exponents=(-4, -3), K=12, lo=-8.0, score_scale=0.7),
    "square": dict(tokens=4, head_dim=4, time_steps=6, levels=4, q_exponents=(-2, -2),
                   k_exponents=(-1, -2), v_exponents=(-1, -1), s_exponents=(-6, -8),
                   out_exponents=(-2, -2), K=16, lo=-8.0, score_scale=0.5),
    "sigmoid": dict(tokens=3, head_dim=3, time_steps=4, levels=3, q_exponents=(-1, -1),
                    k_exponents=(-1, -1), v_exponents=(-2, -2), s_exponents=(-7, -7),
                    out_exponents=(-3, -3), K=12, lo=-1.0, score_scale=0.6,
                    softmax_input="sigmoid"),
}


def _config(name):
    p = dict(CONFIGS[name])
    K, lo = p.pop("K"), p.pop("lo")
    return HeadConfig(table=shipped_table(K, lo, 0.0 if lo == -8.0 else 1.0), N=256, **p)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_attention_head_matches_step_by_step_reference(name):
    c = _config(name)
    gen = torch.Generator().manual_seed(hash(name) % 1000)
    for trial in range(12):
        shape = (c.time_steps, c.tokens, c.head_dim)
        q, k, v = (random_codes(shape, c.levels, 0.2 + 0.05 * trial, gen) for _ in range(3))
        res = attention_head(q, k, v, c)
        out, counts, s_codes = reference_head(q.tolist(), k.tolist(), v.tolist(), c)
        assert res.counts.tolist() == counts
        assert res.s_codes.tolist() == s_codes
        assert res.out.tolist() == out


def test_attention_head_is_vectorised_over_batch_and_heads():
    c = _config("square")
    gen = torch.Generator().manual_seed(5)
    shape = (c.time_steps, 2, 3, c.tokens, c.head_dim)
    q, k, v = (random_codes(shape, c.levels, 0.6, gen) for _ in range(3))
    res = attention_head(q, k, v, c)
    for b in range(2):
        for h in range(3):
            one = attention_head(q[:, b, h], k[:, b, h], v[:, b, h], c)
            assert torch.equal(res.out[:, b, h], one.out)
            assert torch.equal(res.counts[:, b, h], one.counts)


def test_attention_head_softmax_counts_are_the_spiking_softmax_of_the_mean_score():
    c = _config("square")
    gen = torch.Generator().manual_seed(9)
    shape = (c.time_steps, c.tokens, c.head_dim)
    q, k, v = (random_codes(shape, c.levels, 0.6, gen) for _ in range(3))
    res = attention_head(q, k, v, c)
    # rows of counts sum to about N: SI-norm rounds each of n elements
    sums = res.counts.sum(-1)
    assert ((sums - c.N).abs() <= c.tokens).all()
    # the probability site's cumulative input telescopes to t * counts
    assert res.s_codes.shape == res.counts.shape


def test_head_config_and_codes_are_checked():
    c = _config("tiny")
    with pytest.raises(ValueError, match="N must be a power of two"):
        HeadConfig(**{**c.__dict__, "N": 100})
    with pytest.raises(ValueError, match="rounding must be one of"):
        HeadConfig(**{**c.__dict__, "rounding": "nearest"})
    with pytest.raises(ValueError, match="q_exponents"):
        HeadConfig(**{**c.__dict__, "q_exponents": (1.5, 2)})
    with pytest.raises(ValueError, match="softmax_input"):
        HeadConfig(**{**c.__dict__, "softmax_input": "clip"})
    with pytest.raises(ValueError, match="range ends at 0"):
        HeadConfig(**{**c.__dict__, "table": shipped_table(12)})
    with pytest.raises(ValueError, match="needs a table of exp; this one approximates gelu"):
        HeadConfig(**{**c.__dict__, "table": dataclasses.replace(c.table, info={"target": "gelu"})})
    with pytest.raises(ValueError, match=r"score_scale \* 2\*\*\(score_unit \+ input frac\) = "
                                         r"\S+ is too small: the softmax input divides by "
                                         r"t \* 2\*\*\d+, beyond int64"):
        HeadConfig(**{**c.__dict__, "q_exponents": (-30, -30), "k_exponents": (-30, -30)})
    HeadConfig(**{**c.__dict__, "q_exponents": (-20, -20), "k_exponents": (-20, -20)})
    with pytest.raises(ValueError, match=r"^v_exponents = \(40, -40\) with levels = 3: a code "
                                         r"reaches 2\*\*82 in units of the smaller λ, beyond "
                                         r"int64 \(\|ep - en\| \+ levels - 1 must be at most "
                                         r"62\)$"):
        HeadConfig(**{**c.__dict__, "v_exponents": (40, -40)})  # used to overflow in decoding
    with pytest.raises(ValueError, match="not an MT code"):
        check_codes("q_codes", torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="not an MT code"):
        check_codes("q_codes", torch.tensor([8]), 3)
    with pytest.raises(ValueError, match="holds -9223372036854775808, which is not an MT code"):
        check_codes("q_codes", torch.tensor([-2**63]), 3)  # its abs() wraps to a "power of 2"
    with pytest.raises(ValueError, match="shape"):
        attention_head(torch.zeros(2, 3, 3, dtype=torch.int64),
                       torch.zeros(2, 3, 3, dtype=torch.int64),
                       torch.zeros(2, 3, 3, dtype=torch.int64), c)
    with pytest.raises(ValueError, match="time_steps"):
        z = torch.zeros(6, 3, 2, dtype=torch.int64)
        attention_head(z, z, z, c)


def test_decode_codes_is_a_shift_per_sign():
    codes = torch.tensor([0, 1, -1, 4, -8])
    assert decode_codes(codes, (-2, -5)).tolist() == [0, 8, -1, 32, -8]
    assert decode_codes(codes, (3, 3)).tolist() == codes.tolist()
    assert math.isclose(_config("tiny").score_constant[0] / 2 ** _config("tiny").score_constant[1],
                        0.7 * 2 ** (-2 + 0 + 12), rel_tol=2 ** -15)


class _ECMTMonitoredAtNeuron:
    """ECMT's AtNeuron with its SOPMonitor hook, step by step (trans_utils.py): the hook runs
    after forward, so it sees the running sums with this step's spikes added."""

    def __init__(self):
        self.tot_a = self.tot_b = None

    def step(self, a, b):
        self.tot_a = a.clone() if self.tot_a is None else self.tot_a + a
        self.tot_b = b.clone() if self.tot_b is None else self.tot_b + b
        nz = lambda x: (x != 0).double()  # noqa: E731
        return float((nz(a) @ nz(b) + nz(a) @ nz(self.tot_b) + nz(self.tot_a) @ nz(b)).sum())


def test_matmul_sops_is_ecmt_sop_monitor():
    # Smallest cases: a spike against a zero operand and a zero running sum costs nothing;
    # at t = 1 a pair of spikes counts three times; a running sum that cancels drops out.
    one = lambda *v: torch.tensor(v, dtype=torch.float64).reshape(-1, 1, 1)  # noqa: E731
    assert matmul_sops(one(1), one(0)).tolist() == [0]
    assert matmul_sops(one(1), one(1)).tolist() == [3]
    assert matmul_sops(one(1, -1), one(1, 0)).tolist() == [3, 1]  # SA_2 = 0: only A_2 SB_2
    generator = torch.Generator().manual_seed(3)
    for density in (0.1, 0.5, 0.9):
        a = random_codes((5, 2, 3, 4), 3, density, generator).double()
        b = random_codes((5, 2, 4, 6), 3, density, generator).double()
        neurons = [_ECMTMonitoredAtNeuron() for _ in range(2)]
        want = [sum(neuron.step(a[t, h], b[t, h]) for h, neuron in enumerate(neurons))
                for t in range(5)]
        assert matmul_sops(a, b).tolist() == want


# -- the int64 guards at their limits, and the exact softmax's rounding -------------------------

_T12 = shipped_table(12, -8, 0)


def _head(**changes) -> HeadConfig:
    base = dict(tokens=2, head_dim=2, time_steps=2, levels=3, q_exponents=(0, 0),
                k_exponents=(0, 0), v_exponents=(0, 0), s_exponents=(-3, -3),
                out_exponents=(0, 0), table=_T12)
    return HeadConfig(**(base | changes))


@pytest.mark.parametrize("scale", [0.5, 0.3, 1 / 3, 7.0, 1e-3])
@pytest.mark.parametrize("bits", [2, 8, 16])
def test_score_constant_has_scale_bits(scale, bits):
    M, shift = _head(score_scale=scale, scale_bits=bits).score_constant
    assert M.bit_length() == bits or shift == 0


def test_code_width_limit_is_exact():
    with pytest.raises(ValueError, match="beyond int64"):
        _head(levels=16, q_exponents=(-24, 24))
    _head(levels=16, q_exponents=(-23, 24))


def test_score_shift_limit_is_exact():
    # score_scale = 2**(15 - 62 - frac): the shift is 62, and 2·T << 62 leaves int64.
    with pytest.raises(ValueError, match="too small"):
        _head(time_steps=1, score_scale=2.0 ** (15 - 62 - _T12.input_format.frac))


def test_exact_softmax_counts_round_half_up():
    c = _head(softmax="exact", N=256, head_dim=1, time_steps=1, score_scale=1.0)
    q, k = torch.tensor([[[1], [1]]]), torch.tensor([[[1], [0]]])
    counts = attention_head(q, k, torch.ones_like(q), c).counts
    X = torch.floor(torch.tensor([[1.0, 0.0]]) * c.score_alpha + 0.5) * _T12.input_format.lsb
    p = torch.softmax(X - X.max(), dim=-1)
    assert counts[0, 0].tolist() == torch.floor(p[0] * 256 + 0.5).long().tolist()


def test_score_overflow_counts_the_rounding_term():
    # Scores summing to 2**47 - 1 with M = 2**15 and shift 16: only the rounding term added
    # before the shift takes the product past int64.
    c = HeadConfig(tokens=1, head_dim=47, time_steps=1, levels=16, q_exponents=(24, 0),
                   k_exponents=(0, 0), v_exponents=(0, 0), s_exponents=(-3, -3),
                   out_exponents=(0, 0), table=_T12,
                   score_scale=2.0 ** (-1 - _T12.input_format.frac))
    assert c.score_constant == (1 << 15, 16)
    q, k = [], []
    for i in range(47):
        if i <= 30:
            j = min(i, 15)
            q.append(-(1 << j))
            k.append(-(1 << (i - j)))
        else:
            j = min(i - 24, 15)
            q.append(1 << j)
            k.append(1 << (i - 24 - j))
    q, k = torch.tensor([[q]]), torch.tensor([[k]])
    products = decode_codes(q, c.q_exponents) * decode_codes(k, c.k_exponents)
    assert int(products.sum()) == 2**47 - 1
    with pytest.raises(ValueError, match="overflow"):
        attention_head(q, k, torch.ones_like(q), c)


def test_ecm_matmul_refuses_a_running_sum_beyond_int64():
    with pytest.raises(ValueError, match="can sum beyond int64"):
        ecm_matmul_int(torch.full((2, 1, 1), 2**63 - 1), torch.tensor([[[1]], [[0]]]))
