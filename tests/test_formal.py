"""Bounded model check of the SI-norm core against floor((N·e + v_init) / vth) (sim/formal.py):
every input value in every pipeline position, resets in any cycle, with and without output
back-pressure, on small widths."""

import pytest
from amaranth import Module, Mux, Signal

from hwgen.cores.si_norm import SINorm
from sim.formal import check_si_norm_formally

CORES = {
    "e4_n8_round": dict(e_width=4, n_max=4, N=8),
    "e6_n16_floor": dict(e_width=6, n_max=4, N=16, rounding="floor"),
    "e4_n8_iterative": dict(e_width=4, n_max=4, N=8, variant="iterative"),
    "e3_n1_tagged": dict(e_width=3, n_max=2, N=1, tag_width=2),
}

# Depths of the back-pressure checks: the full depth (latency + 2·(q + 1) + 2) where the solver
# answers in seconds; the pipelined cores with N = 8 and 16 stop at 12 and 10 cycles, where a
# beat still meets a full pipeline and stalls of several cycles (the full 19 takes > 10 min).
BACKPRESSURE_DEPTHS = {"e4_n8_round": 12, "e6_n16_floor": 10, "e4_n8_iterative": None,
                       "e3_n1_tagged": None}


@pytest.mark.parametrize("name", CORES)
def test_si_norm_equals_its_closed_form_in_every_trace(name, tmp_path):
    result = check_si_norm_formally(SINorm(**CORES[name]), tmp_path, backpressure=False)
    assert result["status"] == "PASS", result["log"]


@pytest.mark.parametrize("name", CORES)
def test_si_norm_equals_its_closed_form_under_backpressure(name, tmp_path):
    result = check_si_norm_formally(SINorm(**CORES[name]), tmp_path,
                                    depth=BACKPRESSURE_DEPTHS[name])
    assert result["status"] == "PASS", result["log"]


@pytest.mark.parametrize("name", ["e4_n8_round", "e4_n8_iterative"])
def test_the_check_finds_a_wrong_rounding(name, tmp_path):
    # The property expecting floor where the core rounds: a counterexample must exist.
    result = check_si_norm_formally(SINorm(**CORES[name]), tmp_path, expect_rounding="floor",
                                    backpressure=False)
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


class _IgnoresReady(SINorm):
    """A correct core inside whose output never waits: with ``hold``, a stalled output beat
    stays and the beats that arrive meanwhile are dropped (the stream rule holds, beats go
    missing); without, a stalled beat is replaced by the next one."""

    def __init__(self, *, hold: bool, **kw):
        super().__init__(**kw)
        self.hold = hold

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = SINorm(e_width=self.e_width, n_max=4, N=self.N,
                                            variant=self.variant)
        m.d.comb += [inner.i.valid.eq(self.i.valid), inner.i.payload.eq(self.i.payload),
                     self.i.ready.eq(inner.i.ready), inner.o.ready.eq(1)]
        if not self.hold:
            m.d.comb += [self.o.valid.eq(inner.o.valid), self.o.payload.eq(inner.o.payload)]
            return m
        holding, held = Signal(), Signal.like(self.o.payload)
        m.d.comb += [self.o.valid.eq(holding | inner.o.valid),
                     self.o.payload.eq(Mux(holding, held, inner.o.payload))]
        with m.If(self.o.valid & ~self.o.ready & ~holding):
            m.d.sync += [holding.eq(1), held.eq(inner.o.payload)]
        with m.If(holding & self.o.ready):
            m.d.sync += holding.eq(0)
        return m


@pytest.mark.parametrize("variant", ["pipelined", "iterative"])
@pytest.mark.parametrize("hold", [False, True], ids=["replaces", "drops"])
def test_the_check_finds_a_core_that_ignores_backpressure(variant, hold, tmp_path):
    core = _IgnoresReady(e_width=4, n_max=4, N=8, variant=variant, hold=hold)
    # With o.ready held high the core is correct; only a stall shows the fault.
    assert check_si_norm_formally(core, tmp_path / "ready", backpressure=False)["status"] == \
        "PASS"
    # A dropped beat shows when a later one comes out in its place: three beats for the
    # iterative core, hence its full depth.
    result = check_si_norm_formally(core, tmp_path / "stalls",
                                    depth=10 if variant == "pipelined" else None)
    assert result["status"] == "FAIL", result["log"]
