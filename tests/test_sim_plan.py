"""The plan segments that sim.runner hands to the generic testbench sim.tb_stream, and the
testbench's own checks of what the core sends (extra beats, withdrawn beats), on Verilator."""

import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.runner import plan_segment, run_plan, verilator_model


def test_segment_fields_and_cycle_budget():
    s = plan_segment([1, 2, 3, 4], 4, valid_prob=0.5, ready_prob=0.25, seed=7, reset_after=2)
    assert s == {"inputs": [1, 2, 3, 4], "outputs": 4, "valid_prob": 0.5, "ready_prob": 0.25,
                 "seed": 7, "reset_after": 2, "max_cycles": 4 * 16 + 2000, "drain_cycles": 32}
    # A core that takes 3 cycles per input gets three times the budget for its inputs.
    assert plan_segment([0] * 100, 100, cycles_per_input=3)["max_cycles"] == 4 * 300 + 2000
    # An explicit budget and the optional flags are passed through.
    s = plan_segment([], 0, max_cycles=10, skip_idle=True, record_cycles=True)
    assert (s["max_cycles"], s["skip_idle"], s["record_cycles"]) == (10, True, True)


def test_segment_rejects_unknown_fields():
    with pytest.raises(TypeError, match=r"^unknown segment fields \['skip_idel'\]; the optional "
                                        r"fields are reset_at_end, skip_idle, record_cycles$"):
        plan_segment([], 0, skip_idel=True)


class _Echo(wiring.Component):
    """Passes 8-bit beats through one register. Faults for the testbench to catch: ``extra``
    sends the beat 0xFF twice; ``withdraw`` drops an output beat after one stalled cycle."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, fault: str | None = None):
        self._fault = fault
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        repeated = Signal()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1),
                         repeated.eq(0)]
        with m.Elif(self.o.valid & self.o.ready):
            if self._fault == "extra":
                with m.If((self.o.payload == 0xFF) & ~repeated):
                    m.d.sync += repeated.eq(1)  # o.valid stays up: the beat leaves twice
                with m.Else():
                    m.d.sync += self.o.valid.eq(0)
            else:
                m.d.sync += self.o.valid.eq(0)
        if self._fault == "withdraw":
            with m.If(self.o.valid & ~self.o.ready):
                m.d.sync += self.o.valid.eq(0)
        return m


def test_testbench_sees_extra_beats_after_the_last_expected_one(tmp_path):
    beats = [1, 2, 3, 0xFF]
    segments = [plan_segment(beats, len(beats), seed=1),
                plan_segment(beats, len(beats), valid_prob=0.5, ready_prob=0.5, seed=2)]
    good = run_plan(verilator_model(_Echo(), "echo"), segments, tmp_path / "good")
    assert [r["outputs"] for r in good] == [beats, beats]
    bad = run_plan(verilator_model(_Echo("extra"), "echo_extra"), segments, tmp_path / "bad")
    assert [r["outputs"] for r in bad] == [beats + [0xFF], beats + [0xFF]]
    # Also when the expected outputs are all out before the last input (none expected here)
    # and the testbench sleeps through idle cycles.
    early = [plan_segment([5], 0, skip_idle=True),
             plan_segment([5, 6], 1, valid_prob=0.2, seed=4, skip_idle=True)]
    got = run_plan(verilator_model(_Echo(), "echo"), early, tmp_path / "early")
    assert [r["outputs"] for r in got] == [[5], [5, 6]]


def test_testbench_fails_on_a_withdrawn_output_beat(tmp_path, capfd):
    segments = [plan_segment(list(range(50)), 50, ready_prob=0.3, seed=3)]
    run_plan(verilator_model(_Echo(), "echo"), segments, tmp_path / "good")
    with pytest.raises(AssertionError, match="cocotb run of echo_withdraw failed"):
        run_plan(verilator_model(_Echo("withdraw"), "echo_withdraw"), segments, tmp_path / "bad")
    assert "a stalled output beat was withdrawn or changed (stream rule)" in capfd.readouterr().out
