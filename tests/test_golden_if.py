import itertools

import pytest
import torch
from hypothesis import given, settings, strategies as st

from golden.fixed import Format
from golden.if_neuron import IFConfig, if_neuron, if_neuron_float


def test_hand_worked():
    # threshold 4, v_init 2: v = 2+3=5 -> spike, 1; 1+3=4 -> spike (>=), 0; 0+3=3; 3+3=6 -> spike, 2
    r = if_neuron(torch.tensor([[3], [3], [3], [3]]), 4)
    assert r.spikes.flatten().tolist() == [1, 1, 0, 1]
    assert r.v.tolist() == [2]
    # v_init 0 and the tie at exactly the threshold
    r = if_neuron(torch.tensor([[2], [2], [0], [-1]]), 4, v_init=0)
    assert r.spikes.flatten().tolist() == [0, 1, 0, 0]
    assert r.v.tolist() == [-1]


def test_vectorised_over_neurons_and_batches():
    x = torch.randint(-20, 20, (8, 3, 5), generator=torch.Generator().manual_seed(1))
    batched = if_neuron(x, 7).spikes
    for b in range(3):
        for j in range(5):
            assert torch.equal(batched[:, b, j], if_neuron(x[:, b, j], 7).spikes)


def test_float_twin_agrees_on_integers():
    x = torch.randint(-50, 50, (16, 100), generator=torch.Generator().manual_seed(2))
    r, rf = if_neuron(x, 9, 4), if_neuron_float(x.double(), 9.0, 4.0)
    assert torch.equal(r.spikes.double(), rf.spikes)
    assert torch.equal(r.v.double(), rf.v)


@settings(max_examples=300, deadline=None)
@given(theta=st.integers(1, 1000), T=st.integers(1, 64), data=st.data())
def test_spike_count_is_rounded_rate(theta, T, data):
    """With inputs in [0, theta] the count over T steps is floor((sum x + v_init) / theta);
    for a constant input with the default v_init that is the rate T*x/theta rounded half up."""
    x = data.draw(st.integers(0, theta))
    count = int(if_neuron(torch.full((T, 1), x), theta).spikes.sum())
    assert count == (2 * T * x + theta) // (2 * theta)  # floor(T*x/theta + 1/2)
    seq = data.draw(st.lists(st.integers(0, theta), min_size=T, max_size=T))
    v0 = data.draw(st.integers(0, theta - 1))
    r = if_neuron(torch.tensor(seq).unsqueeze(1), theta, v0)
    assert int(r.spikes.sum()) == (sum(seq) + v0) // theta
    assert int(r.v) == (sum(seq) + v0) % theta


@settings(max_examples=200, deadline=None)
@given(width=st.integers(2, 16), theta=st.integers(1, 3000), T=st.integers(1, 40), data=st.data())
def test_no_overflow_for_declared_range(width, theta, T, data):
    """Any T steps of inputs in the format keep every potential inside the derived membrane
    format."""
    cfg = IFConfig(Format(width, 0), theta, T)
    fmt, r = cfg.membrane_format, cfg.membrane_range
    lo, hi = cfg.input_format.min_int, cfg.input_format.max_int
    seqs = data.draw(st.lists(st.lists(st.integers(lo, hi), min_size=T, max_size=T),
                              min_size=1, max_size=8))
    x = torch.tensor(seqs).T
    res = if_neuron(x, theta, record_potential=True)
    assert fmt.contains(res.u) and fmt.contains(res.v)
    assert r.u_lo <= int(res.u.min()) and int(res.u.max()) <= r.u_hi


@pytest.mark.parametrize("width, T", [(2, 4), (3, 3)])
def test_membrane_range_is_exact(width, T):
    """Every input sequence of a tiny format, enumerated: the derived range is reached."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    seqs = torch.tensor(list(itertools.product(range(lo, hi + 1), repeat=T))).T
    for theta in range(1, 9):
        r = IFConfig(Format(width), theta, T).membrane_range
        u = if_neuron(seqs, theta, record_potential=True).u
        assert (int(u.min()), int(u.max())) == (r.u_lo, r.u_hi)


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 0}, "threshold must be an integer from 1 to"),
    ({"time_steps": 0}, "time_steps must be an integer from 1 to"),
    ({"v_init": 10}, "v_init must be an integer from 0 to 9, not 10"),
    ({"v_init": -1}, "v_init must be an integer from 0 to 9, not -1"),
])
def test_config_rejects_bad_parameters(kwargs, message):
    args = {"input_format": Format(8), "threshold": 10, "time_steps": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        IFConfig(**args)


def test_float_input_rejected():
    with pytest.raises(TypeError, match="x must be an integer tensor"):
        if_neuron(torch.zeros(3, 2), 4)


@pytest.mark.parametrize("x, v_init, error, message", [
    ([[0]], 9.9, TypeError, "v_init must be an integer or an integer tensor, not torch.float"),
    ([[0]], 10, ValueError, r"v_init must lie in 0 \.\. threshold - 1 = 9 \(D3\); it holds "
                            r"10 to 10"),
    ([[0]], torch.tensor([0, -1]), ValueError, "it holds -1 to 0"),
    ([[2**62], [2**62], [2**62]], 0, ValueError,
     "x reaches 4611686018427387904 in magnitude; over 3 steps"),
])
def test_golden_if_refuses_what_it_would_truncate_or_wrap(x, v_init, error, message):
    with pytest.raises(error, match=message):
        if_neuron(torch.tensor(x), 10, v_init=v_init)


def test_a_membrane_wider_than_any_format_is_named():
    with pytest.raises(ValueError, match=r"the membrane \(input s50.0, time_steps = 1048576\) "
                                         r"\[.*\] needs 70 bits; formats hold at most 62"):
        IFConfig(Format(50), threshold=10, time_steps=1 << 20).membrane_format
