"""The plan segments that sim.runner hands to the generic testbench sim.tb_stream."""

import pytest

from sim.runner import plan_segment


def test_segment_fields_and_cycle_budget():
    s = plan_segment([1, 2, 3, 4], 4, valid_prob=0.5, ready_prob=0.25, seed=7, reset_after=2)
    assert s == {"inputs": [1, 2, 3, 4], "outputs": 4, "valid_prob": 0.5, "ready_prob": 0.25,
                 "seed": 7, "reset_after": 2, "max_cycles": 4 * 16 + 2000}
    # A core that takes 3 cycles per input gets three times the budget for its inputs.
    assert plan_segment([0] * 100, 100, cycles_per_input=3)["max_cycles"] == 4 * 300 + 2000
    # An explicit budget and the optional flags are passed through.
    s = plan_segment([], 0, max_cycles=10, skip_idle=True, record_cycles=True)
    assert (s["max_cycles"], s["skip_idle"], s["record_cycles"]) == (10, True, True)


def test_segment_rejects_unknown_fields():
    with pytest.raises(TypeError, match=r"^unknown segment fields \['skip_idel'\]; the optional "
                                        r"fields are reset_at_end, skip_idle, record_cycles$"):
        plan_segment([], 0, skip_idel=True)
