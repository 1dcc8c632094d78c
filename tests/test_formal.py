"""Bounded model check of the SI-norm core against floor((N·e + v_init) / vth) (sim/formal.py):
every input value in every pipeline position, resets in any cycle, on small widths."""

import pytest
from amaranth import Signal

from hwgen.cores.si_norm import SINorm
from sim.formal import check_si_norm_formally

CORES = {
    "e4_n8_round": dict(e_width=4, n_max=4, N=8),
    "e6_n16_floor": dict(e_width=6, n_max=4, N=16, rounding="floor"),
    "e4_n8_iterative": dict(e_width=4, n_max=4, N=8, variant="iterative"),
    "e3_n1": dict(e_width=3, n_max=2, N=1),
}


@pytest.mark.parametrize("name", CORES)
def test_si_norm_equals_its_closed_form_in_every_trace(name, tmp_path):
    result = check_si_norm_formally(SINorm(**CORES[name]), tmp_path)
    assert result["status"] == "PASS", result["log"]


@pytest.mark.parametrize("name", ["e4_n8_round", "e4_n8_iterative"])
def test_the_check_finds_a_wrong_rounding(name, tmp_path):
    # The property expecting floor where the core rounds: a counterexample must exist.
    result = check_si_norm_formally(SINorm(**CORES[name]), tmp_path, expect_rounding="floor")
    assert result["status"] == "FAIL", result["log"]
    assert "Assert failed" in result["log"]


class _StopsAccepting(SINorm):
    """Takes its first beat, then never raises i.ready again: no output is ever wrong."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        took = Signal()
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += took.eq(1)
        with m.If(took):
            m.d.comb += self.i.ready.eq(0)
        return m


@pytest.mark.parametrize("variant", ["pipelined", "iterative"])
def test_the_check_finds_a_core_that_stops_accepting(variant, tmp_path):
    core = _StopsAccepting(e_width=4, n_max=4, N=8, variant=variant)
    result = check_si_norm_formally(core, tmp_path)
    assert result["status"] == "FAIL", result["log"]
