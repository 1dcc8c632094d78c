from hypothesis import given, settings, strategies as st

from golden.fixed import Format
from golden.if_neuron import IFConfig
from golden.membrane import MembraneRange, membrane_range
from golden.mt_neuron import MTConfig


def step_by_step(reset, breakpoints, *, v_init_lo, v_init_hi, x_lo, x_hi, time_steps):
    """The interval map of the module docstring applied once per step, nothing skipped."""
    v_lo, v_hi = v_init_lo, v_init_hi
    us, vs = [], [v_lo, v_hi]
    for _ in range(time_steps):
        a, c = v_lo + x_lo, v_hi + x_hi
        us += [a, c]
        inner = [b for b in breakpoints if a < b <= c]
        v_lo = min([reset(a)] + [reset(b) for b in inner])
        v_hi = max([reset(c)] + [reset(b - 1) for b in inner])
        vs += [v_lo, v_hi]
    return MembraneRange(min(us), max(us), min(vs), max(vs))


def neurons():
    """An MT or IF neuron with its reset, breakpoints and initial potential, and an input
    interval that is either the whole format or a part of it (which may lie above every
    level, so that the membrane grows for ever)."""
    mt = st.builds(MTConfig, st.builds(Format, st.integers(2, 12)), st.integers(1, 300),
                   st.integers(1, 300), st.integers(1, 6), st.integers(1, 300))
    if_ = st.builds(IFConfig, st.builds(Format, st.integers(2, 12)), st.integers(1, 4096),
                    st.integers(1, 300), st.none())

    def unpack(cfg):
        return cfg, cfg.breakpoints, 0 if isinstance(cfg, MTConfig) else cfg.initial_potential
    return st.one_of(mt, if_).map(unpack)


@settings(max_examples=400, deadline=None)
@given(neuron=neurons(), data=st.data())
def test_skipping_shifted_steps_changes_nothing(neuron, data):
    cfg, breakpoints, v0 = neuron
    lo, hi = cfg.input_format.min_int, cfg.input_format.max_int
    x_lo = data.draw(st.integers(lo, hi))
    x_hi = data.draw(st.one_of(st.just(hi), st.integers(x_lo, hi)))
    x_lo = data.draw(st.sampled_from([lo, x_lo]))
    args = dict(v_init_lo=v0, v_init_hi=v0, x_lo=x_lo, x_hi=x_hi, time_steps=cfg.time_steps)
    assert (membrane_range(cfg.reset, breakpoints, **args)
            == step_by_step(cfg.reset, breakpoints, **args))


def test_longest_sample_in_closed_form():
    """MT with levels 1 and 2 and inputs up to 127: each step leaves 127 - 2 = 125 more on
    the membrane, so after 2^20 steps the largest potential before reset is
    125 * (2^20 - 1) + 127 (and symmetrically 126 below, since -128 fires -2)."""
    T = 1 << 20
    r = MTConfig(Format(8), 1, 1, 2, T).membrane_range
    assert (r.u_hi, r.v_hi) == (125 * (T - 1) + 127, 125 * T)
    assert (r.u_lo, r.v_lo) == (-126 * (T - 1) - 128, -126 * T)
