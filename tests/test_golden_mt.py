import itertools

import pytest
import torch
from hypothesis import given, settings, strategies as st

from golden.fixed import Format
from golden.mt_neuron import MTConfig, mt_decode, mt_neuron, mt_neuron_float, mt_thresholds

# algorithms.md §1.4 worked example: lambda = 1, n = 3 (levels 1, 2, 4), the same x every step.
WORKED = [
    (0.3, [0, 1, 0, 0, 1, 0]),
    (0.6, [1, 0, 1, 0, 1, 1]),
    (1.4, [1, 2, 1, 2, 1, 1]),
    (3.2, [2, 4, 4, 2, 4, 2]),
    (5.0, [4, 4, 4, 4, 4, 4]),
    (-0.7, [-1, 0, -1, -1, 0, -1]),
    (-2.6, [-2, -2, -4, -2, -2, -4]),
]


# The table row for x = -0.7 was computed in float64: at t = 5 the exact membrane is
# 0.2 - 0.7 = -0.5, a tie that fires under the non-strict test, but float64 gives
# -0.49999999999999994 and no spike. The integer model is exact (docs/decisions.md).
EXACT = {-0.7: [-1, 0, -1, -1, -1, 0]}


@pytest.mark.parametrize("x, codes", WORKED)
def test_worked_example_integer(x, codes):
    # lambda = 10 LSBs makes every input of the table exact (x = 0.3 is 3 LSBs), including the
    # tie at t = 5 for x = 0.3 where v = 0.5 exactly meets the >= test.
    r = mt_neuron(torch.full((6,), round(x * 10)), 10, 10, 3)
    assert r.codes.tolist() == EXACT.get(x, codes)


@pytest.mark.parametrize("x, codes", WORKED)
def test_worked_example_float(x, codes):
    assert mt_neuron_float(torch.full((6,), x), 1.0, 1.0, 3).codes.tolist() == codes


def test_thresholds_are_exact_half_levels():
    # lambda odd: 7 * (2^k - 1/2) = 3.5, 10.5, 24.5 -> integer v must reach 4, 11, 25
    assert mt_thresholds(7, 5, 3) == ([4, 11, 25], [-3, -8, -18])


def test_separate_lambdas_and_decode():
    r = mt_neuron(torch.tensor([[40], [-40]]), 8, 3, 4)
    # 40 >= 8*(4-1/2)=28 -> +4 (value 32), v=8; 8-40=-32 <= -3*(8-1/2)=-22.5 -> -8 (value -24)
    assert r.codes.flatten().tolist() == [4, -8]
    assert mt_decode(r.codes, 8, 3).flatten().tolist() == [32, -24]
    assert r.v.tolist() == [-8]


def test_float_twin_agrees_on_integers():
    x = torch.randint(-300, 300, (16, 200), generator=torch.Generator().manual_seed(3))
    r, rf = mt_neuron(x, 6, 10, 5), mt_neuron_float(x.double(), 6.0, 10.0, 5)
    assert torch.equal(r.codes.double(), rf.codes)


@settings(max_examples=300, deadline=None)
@given(lp=st.integers(1, 50), ln=st.integers(1, 50), n=st.integers(1, 6), T=st.integers(1, 40),
       data=st.data())
def test_emitted_sum_tracks_input(lp, ln, n, T, data):
    """Conservation: sum(x) - sum(emitted) is the membrane. Bound (module docstring): with
    |x| <= X <= min(lp, ln) * 2**(n-1), |residual| <= max(X, max(lp, ln) / 2) after every step."""
    X = data.draw(st.integers(0, min(lp, ln) << (n - 1)))
    seq = data.draw(st.lists(st.integers(-X, X), min_size=T, max_size=T))
    x = torch.tensor(seq)
    r = mt_neuron(x, lp, ln, n)
    residual = torch.cumsum(x, 0) - torch.cumsum(mt_decode(r.codes, lp, ln), 0)
    assert int(residual[-1]) == int(r.v)
    assert float(residual.abs().max()) <= max(X, max(lp, ln) / 2)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(2, 14), lp=st.integers(1, 200), ln=st.integers(1, 200),
       n=st.integers(1, 8), T=st.integers(1, 40), data=st.data())
def test_no_overflow_for_declared_range(width, lp, ln, n, T, data):
    cfg = MTConfig(Format(width, 0), lp, ln, n, T)
    fmt, r = cfg.membrane_format, cfg.membrane_range
    lo, hi = cfg.input_format.min_int, cfg.input_format.max_int
    seqs = data.draw(st.lists(st.lists(st.integers(lo, hi), min_size=T, max_size=T),
                              min_size=1, max_size=8))
    res = mt_neuron(torch.tensor(seqs).T, lp, ln, n, record_potential=True)
    assert fmt.contains(res.u) and fmt.contains(res.v)
    assert r.u_lo <= int(res.u.min()) and int(res.u.max()) <= r.u_hi


@pytest.mark.parametrize("width, T", [(2, 4), (3, 3)])
def test_membrane_range_is_exact(width, T):
    """Every input sequence of a tiny format, enumerated: the derived range is reached."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    seqs = torch.tensor(list(itertools.product(range(lo, hi + 1), repeat=T))).T
    for lp, ln, n in itertools.product(range(1, 5), range(1, 5), range(1, 4)):
        r = MTConfig(Format(width), lp, ln, n, T).membrane_range
        u = mt_neuron(seqs, lp, ln, n, record_potential=True).u
        assert (int(u.min()), int(u.max())) == (r.u_lo, r.u_hi)


@pytest.mark.parametrize("kwargs, message", [
    ({"levels": 0}, "levels must be an integer from 1 to 16, not 0"),
    ({"lambda_pos": 0}, "lambda_pos must be an integer from 1 to"),
    ({"lambda_neg": -2}, "lambda_neg must be an integer from 1 to"),
    ({"time_steps": 0}, "time_steps must be an integer from 1 to"),
])
def test_config_rejects_bad_parameters(kwargs, message):
    args = {"input_format": Format(8), "lambda_pos": 4, "lambda_neg": 4, "levels": 3,
            "time_steps": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        MTConfig(**args)


def test_golden_mt_refuses_what_would_wrap():
    with pytest.raises(ValueError, match="x reaches 4611686018427387904 in magnitude; over 2 "
                                         "steps"):
        mt_neuron(torch.tensor([[2**62], [2**62]]), 1, 1, 4)
    with pytest.raises(ValueError, match=r"over 1 steps \(plus 9223372036854775808\)"):
        mt_neuron(torch.tensor([[1]]), 4, 4, 62)  # the top level, 4·2**61, is no int64
    with pytest.raises(ValueError, match=r"the membrane \(input s62.0, time_steps = 2, levels = "
                                         r"4\) \[.*\] needs 63 bits"):
        MTConfig(Format(62), 1, 1, 4, 2).membrane_format
