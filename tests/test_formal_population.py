"""Bounded model check of the IF and MT population cores (sim/formal_population.py): within the
contract (samples of at most time_steps steps), no input sequence, stall pattern or reset makes
``overflow`` rise, on small widths; and the check finds the overflows that exist."""

import pytest

from golden.fixed import Format
from hwgen.cores.if_neuron import IFPopulation
from hwgen.cores.mt_neuron import MTPopulation
from sim.formal_population import check_population_formally

CORES = {
    "if_p2": (IFPopulation, dict(neurons=2, width=5, threshold=9, time_steps=3)),
    "if_p1_vinit0": (IFPopulation, dict(neurons=1, width=4, threshold=5, time_steps=4, v_init=0)),
    "mt_p2": (MTPopulation, dict(neurons=2, width=5, lambda_pos=6, lambda_neg=4, levels=2,
                                 time_steps=2)),
    "mt_p1_levels3": (MTPopulation, dict(neurons=1, width=4, lambda_pos=4, lambda_neg=3,
                                         levels=3, time_steps=3)),
    # levels = 1 and lambda_neg = 2**3 for a 3-bit membrane: the reset can take a potential of
    # the format out of it, so the core also tests the membrane after the reset, one bit wider.
    "mt_wide_reset": (MTPopulation, dict(neurons=3, width=2, frac=0, lambda_pos=1,
                                         lambda_neg=8, levels=1, time_steps=1)),
}


def make(name):
    cls, params = CORES[name]
    return cls(**params)


def narrowed(core):
    """The core with a membrane one bit narrower than D1 derives (everything else unchanged)."""
    f = core.membrane_format
    core._membrane_format = Format(f.width - 1, f.frac)
    return core


@pytest.mark.parametrize("name", CORES)
def test_no_sample_within_time_steps_overflows(name, tmp_path):
    result = check_population_formally(make(name), tmp_path)
    assert result["status"] == "PASS", result["log"]


def test_the_wide_reset_configuration_tests_its_reset():
    assert not make("mt_wide_reset").reset_keeps_format()


@pytest.mark.parametrize("name", ["if_p2", "if_p1_vinit0", "mt_p2", "mt_p1_levels3"])
def test_a_narrower_membrane_overflows(name, tmp_path):
    core = make(name)
    hull = core.config.membrane_range
    # The premise: the hull sets the width (not a threshold), and it is exact.
    assert Format.for_range(hull.lo, hull.hi, core.membrane_format.frac) == core.membrane_format
    result = check_population_formally(narrowed(core), tmp_path)
    assert result["status"] == "FAIL", result["log"]
    assert "Assert failed" in result["log"]


def test_one_step_more_overflows(tmp_path):
    # x = -8 for 5 steps from v_init = 0 reaches -40, outside the s6 that 4 steps need.
    core = make("if_p1_vinit0")
    result = check_population_formally(core, tmp_path, steps=core.config.time_steps + 1)
    assert result["status"] == "FAIL", result["log"]
