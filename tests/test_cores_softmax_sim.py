"""Amaranth-simulator unit tests of the SI-exp, SI-norm and spiking-softmax cores: stream
protocol (stalls, back-pressure, rows back to back, reset in mid-row), latency and throughput,
the SI-norm divider against the spiking definition (exhaustive on small widths), and parameter
checks. The bit-exact regressions on the emitted Verilog are in test_cocotb_softmax."""

import dataclasses
import math
import random

import pytest
import torch

from golden.fixed import Format
from golden.si_exp import SIExpTable, shipped_table
from golden.si_norm import si_norm_spiking
from hwgen.cores import core_parameters, make_core, parse_params
from hwgen.cores.si_exp import SIExp
from hwgen.cores.si_norm import SINorm
from hwgen.cores.softmax import SpikingSoftmax
from sim.amaranth_stream import payload_dict, run_stream
from sim.softmax_check import make_test_table

SMALL = Format(10, 6)


def stream_dicts(core, beats, **options):
    """:func:`sim.amaranth_stream.run_stream` with the outputs as dicts."""
    got, accepts, outputs = run_stream(core, beats, **options)
    return [payload_dict(p) for p in got], accepts, outputs


def strip_tag(outputs):
    return [{k: v for k, v in o.items() if k != "tag"} for o in outputs]


# -- SI-exp ----------------------------------------------------------------------------------

def si_exp_core(K, variant, kind="smooth", tag_width=0):
    if kind == "small":
        table = make_test_table(K, -2.0, 1.5, kind="random", seed=K, input_format=SMALL,
                                output_frac=8)
        return SIExp(K=K, lo=-2.0, hi=1.5, variant=variant, table=table, tag_width=tag_width)
    table = make_test_table(K, -1.0, 1.0, kind=kind, seed=K)
    return SIExp(K=K, lo=-1.0, hi=1.0, variant=variant, table=table, tag_width=tag_width)


def si_exp_inputs(core, count, seed):
    f, t = core.input_format, core.table
    x = torch.randint(t.lo - 40, t.hi + 40, (count,), generator=torch.Generator().manual_seed(seed))
    edges = torch.tensor([f.min_int, f.max_int, t.lo - 1, t.lo, t.hi, t.hi + 1, *t.T])
    return torch.cat([edges.clamp(f.min_int, f.max_int), x])


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
@pytest.mark.parametrize("K, kind", [(1, "smooth"), (3, "random"), (12, "smooth"),
                                     (12, "random"), (5, "small")])
def test_si_exp_matches_golden_under_stalls(variant, K, kind):
    core = si_exp_core(K, variant, kind)
    x = si_exp_inputs(core, 150 if variant == "unrolled" else 60, seed=K)
    got, _, _ = stream_dicts(core, [{"x": int(v)} for v in x], valid_prob=0.7, ready_prob=0.6,
                           seed=K)
    assert got == core.reference_outputs(x)


def test_si_exp_unrolled_equals_iterative_with_tags():
    x = si_exp_inputs(si_exp_core(7, "unrolled", "random"), 200, seed=7)
    beats = [{"x": int(v), "tag": n % 8} for n, v in enumerate(x)]
    results = []
    for variant in ("unrolled", "iterative"):
        core = si_exp_core(7, variant, "random", tag_width=3)
        got, _, _ = stream_dicts(core, beats, valid_prob=0.8, ready_prob=0.5, seed=1)
        assert [o["tag"] for o in got] == [b["tag"] for b in beats]
        assert strip_tag(got) == core.reference_outputs(x)
        results.append(got)
    assert results[0] == results[1]


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
@pytest.mark.parametrize("K", [1, 2, 12])
def test_si_exp_latency_and_throughput(variant, K):
    """Measured without stalls: the documented latency and one beat per 1/throughput cycles."""
    core = si_exp_core(K, variant)
    beats = [{"x": v} for v in range(-300, 300, 37)]
    got, accepts, outputs = stream_dicts(core, beats)
    assert accepts[0] == 0  # the first cycle after reset
    assert outputs[0] - accepts[0] == core.latency == K + 1
    assert (accepts[-1] - accepts[0]) / (len(beats) - 1) == 1 / core.throughput
    assert core.throughput == (1.0 if variant == "unrolled" else 1 / K)


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
def test_si_exp_output_backpressure(variant):
    core = si_exp_core(4, variant, "random")
    x = si_exp_inputs(core, 40, seed=3)
    got, _, _ = stream_dicts(core, [{"x": int(v)} for v in x], hold_ready_cycles=30)
    assert got == core.reference_outputs(x)


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
@pytest.mark.parametrize("settle", [0, 2])
def test_si_exp_reset_mid_stream(variant, settle):
    """A reset with beats in flight drops them; the core then computes the stream exactly."""
    core = si_exp_core(5, variant, "random")
    x = si_exp_inputs(core, 30, seed=5)
    got, _, _ = stream_dicts(core, [{"x": int(v)} for v in x], reset_after=7, settle=settle,
                           ready_prob=0.7, seed=2)
    assert got == core.reference_outputs(x)


def test_si_exp_widths_come_from_the_table():
    core = si_exp_core(12, "unrolled")
    t = core.table
    assert core.i.payload.x.shape().width == t.input_format.width
    assert core.o.payload.out.shape().width == t.accumulator_format.width
    assert core.o.payload.spikes.shape().width == 4
    assert core.potential_format == t.potential_format


# -- SI-norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["pipelined", "iterative"])
@pytest.mark.parametrize("rounding", ["floor", "round"])
@pytest.mark.parametrize("e_width, n_max, N", [(4, 4, 1), (4, 4, 2), (4, 4, 4), (4, 4, 8),
                                               (2, 2, 16), (2, 1, 256)])
def test_si_norm_equals_spiking_definition_exhaustively(e_width, n_max, N, rounding, variant):
    """Every (e, vth) with e <= vth (4-bit e and 6-bit vth for n_max = 4; also N larger than
    vth's range) against the N-step spiking neuron of golden.si_norm (a row [e, vth - e] has
    threshold vth)."""
    core = SINorm(e_width=e_width, n_max=n_max, N=N, rounding=rounding, variant=variant)
    e_max = (1 << e_width) - 1
    pairs = [(e, v) for v in range(1 << core.vth_width) for e in range(min(v, e_max) + 1)]
    rows = torch.tensor([[e, v - e] for e, v in pairs])
    want = si_norm_spiking(rows, N, rounding)[:, 0].tolist()
    got, _, _ = stream_dicts(core, [{"e": e, "vth": v} for e, v in pairs])
    assert [o["c"] for o in got] == want
    assert [o["c"] for o in core.reference_outputs(*zip(*pairs))] == want


@pytest.mark.parametrize("variant", ["pipelined", "iterative"])
@pytest.mark.parametrize("rounding", ["floor", "round"])
def test_si_norm_stalls_tags_and_latency(rounding, variant):
    core = SINorm(e_width=8, n_max=16, N=64, rounding=rounding, tag_width=2, variant=variant)
    rng = random.Random(1)
    pairs = []
    for _ in range(300):
        vth = rng.randint(0, (1 << core.vth_width) - 1)
        pairs.append((rng.randint(0, min(vth, 255)), vth))
    beats = [{"e": e, "vth": v, "tag": n % 4} for n, (e, v) in enumerate(pairs)]
    got, _, _ = stream_dicts(core, beats, valid_prob=0.7, ready_prob=0.5, seed=3)
    assert strip_tag(got) == core.reference_outputs(*zip(*pairs))
    assert [o["tag"] for o in got] == [b["tag"] for b in beats]
    got, accepts, outputs = stream_dicts(
        SINorm(e_width=8, n_max=16, N=64, rounding=rounding, variant=variant),
        [{"e": e, "vth": v} for e, v in pairs[:20]])
    assert outputs[0] - accepts[0] == core.latency == 8
    interval = 1 if variant == "pipelined" else 7  # q + 1
    assert accepts == list(range(accepts[0], accepts[0] + 20 * interval, interval))
    assert core.throughput == 1 / interval


def test_si_norm_widths():
    core = SINorm(e_width=15, n_max=12, N=256)
    assert core.i.payload.vth.shape().width == 19
    assert core.o.payload.c.shape().width == 9


# -- softmax ---------------------------------------------------------------------------------

def softmax_core(subtract_max=True, rounding="round", n_max=5, kind="smooth",
                 variant="unrolled"):
    lo, hi = (-8.0, 0.0) if subtract_max else (-1.0, 1.0)
    table = make_test_table(4, lo, hi, kind=kind, seed=4)
    return SpikingSoftmax(n_max=n_max, K=4, table=table, N=16, subtract_max=subtract_max,
                          rounding=rounding, variant=variant)


def random_rows(core, count, seed, longest=None):
    g = torch.Generator().manual_seed(seed)
    longest = longest or core.n_max
    rows = []
    for _ in range(count):
        n = int(torch.randint(1, longest + 1, (1,), generator=g))
        rows.append(torch.randint(-40000, 40000, (n,), generator=g).clamp(-32768, 32767)
                    .tolist())
    return rows


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
@pytest.mark.parametrize("kind", ["smooth", "random"])
@pytest.mark.parametrize("subtract_max, rounding", [(True, "round"), (True, "floor"),
                                                    (False, "round"), (False, "floor")])
def test_softmax_rows_under_stalls(subtract_max, rounding, kind, variant):
    core = softmax_core(subtract_max, rounding, kind=kind, variant=variant)
    rows = random_rows(core, 40, seed=1) + [[7], [5, 5, 5, 5, 5], [-32768], [32767, -32768]]
    got, _, _ = stream_dicts(core, core.input_beats(rows), valid_prob=0.7, ready_prob=0.6, seed=2)
    assert got == core.reference_outputs(rows)


@pytest.mark.parametrize("subtract_max", [True, False])
def test_softmax_overlong_rows_are_cut(subtract_max):
    """Rows longer than n_max come out as pieces of n_max, each normalised on its own; the
    end of a cut piece has last = cut = 1, and the next row is unaffected."""
    core = softmax_core(subtract_max)
    rows = [list(range(-900, 0, 100)), [1, 2], list(range(10)), [3]]
    got, _, _ = stream_dicts(core, core.input_beats(rows), ready_prob=0.8, seed=4)
    assert got == core.reference_outputs(rows)
    assert [(o["last"], o["cut"]) for o in got][:10] == \
        [(0, 0)] * 4 + [(1, 1)] + [(0, 0)] * 3 + [(1, 0)] + [(0, 0)]


@pytest.mark.parametrize("subtract_max", [True, False])
def test_softmax_rows_of_one(subtract_max):
    """n_max = 1: every score is a row of its own (longer rows are cut after each score)."""
    core = softmax_core(subtract_max, n_max=1)
    rows = [[5], [-7, 8], [0], [100, 200, 300]]
    got, _, _ = stream_dicts(core, core.input_beats(rows), valid_prob=0.8, ready_prob=0.7, seed=6)
    assert got == core.reference_outputs(rows)
    assert [o["c"] for o in got] == [16] * 7


@pytest.mark.parametrize("subtract_max", [True, False])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_softmax_rows_back_to_back(subtract_max, n):
    """Without stalls: one row of n every n cycles, and the documented latency."""
    core = softmax_core(subtract_max)
    rows = random_rows(core, 12, seed=n, longest=n)
    rows = [(r * n)[:n] for r in rows]
    got, accepts, outputs = stream_dicts(core, core.input_beats(rows))
    assert got == core.reference_outputs(rows)
    assert accepts == list(range(accepts[0], accepts[0] + 12 * n))
    assert outputs == list(range(outputs[0], outputs[0] + 12 * n))
    assert outputs[0] - accepts[0] == core.row_latency(n)


@pytest.mark.parametrize("subtract_max", [True, False])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_iterative_softmax_rows_back_to_back(subtract_max, n):
    """The iterative variant without stalls: the documented latency for the first row (sent
    in the first cycle after reset), then one row of n out every n·max(K, q + 1) cycles."""
    core = softmax_core(subtract_max, variant="iterative")
    rows = random_rows(core, 30, seed=n, longest=n)
    rows = [(r * n)[:n] for r in rows]
    got, accepts, outputs = stream_dicts(core, core.input_beats(rows))
    assert got == core.reference_outputs(rows)
    assert accepts[0] == 0 and outputs[0] == core.row_latency(n)
    period = n * max(core.K, core.q + 1)
    assert core.throughput == 1 / max(core.K, core.q + 1)
    # The row buffers take the first rows faster; the rate they settle to is the outputs'.
    row_outputs = outputs[::n]
    assert {b - a for a, b in zip(row_outputs[10:], row_outputs[11:])} == {period}


@pytest.mark.parametrize("subtract_max", [True, False])
def test_softmax_output_backpressure(subtract_max):
    core = softmax_core(subtract_max)
    rows = random_rows(core, 20, seed=8)
    got, _, _ = stream_dicts(core, core.input_beats(rows), hold_ready_cycles=60, ready_prob=0.3,
                           seed=8)
    assert got == core.reference_outputs(rows)


@pytest.mark.parametrize("variant", ["unrolled", "iterative"])
@pytest.mark.parametrize("subtract_max", [True, False])
@pytest.mark.parametrize("reset_after, settle", [(2, 0), (9, 3), (13, 30)])
def test_softmax_reset_mid_row(subtract_max, reset_after, settle, variant):
    """A reset in mid-row (and with rows in every stage) leaves no partial row, sum or
    maximum behind: the next rows come out exactly."""
    core = softmax_core(subtract_max, variant=variant)
    rows = [[100, -200, 300], [5, 6, 7, 8], [-1, -2], [4000, 4000, 0, -9000, 1], [0]]
    got, _, _ = stream_dicts(core, core.input_beats(rows), reset_after=reset_after, settle=settle,
                           ready_prob=0.6, seed=5)
    assert got == core.reference_outputs(rows)


def test_softmax_widths_and_formulas():
    core = softmax_core(n_max=16)
    assert core.i.payload.x.shape().width == 16
    assert core.o.payload.c.shape().width == 5
    assert core.vth_width == core.e_width + 4
    assert core.row_latency(16) == 2 * 16 + 4 + 4 + 10
    assert softmax_core(False, "floor", n_max=16).row_latency(16) == 16 + 4 + 4 + 7
    assert core.latency == core.row_latency(16) and core.throughput == 1.0


# -- parameters and registry -----------------------------------------------------------------

def test_default_ranges_follow_subtract_max():
    table = make_test_table(4, -1.0, 1.0)
    assert SpikingSoftmax(K=4, table=table, subtract_max=False).table is table
    with pytest.raises(ValueError, match=r"no shipped SI-exp table for K=5 on \[-8, 0\]"):
        SpikingSoftmax(K=5)
    with pytest.raises(ValueError, match=r"no shipped SI-exp table for K=5 on \[-1, 1\]"):
        SpikingSoftmax(K=5, subtract_max=False)


def test_table_from_json_path(tmp_path):
    table = make_test_table(3, -1.0, 1.0, kind="random")
    table.save(tmp_path / "t.json")
    assert SIExp(K=3, table=str(tmp_path / "t.json")).table == table
    assert SpikingSoftmax(K=3, table=str(tmp_path / "t.json"), subtract_max=False).table == table
    # K and the range default to the table's, not to the shipped tables' 12 and [-1, 1].
    wide = make_test_table(3, -6.0, 6.0, kind="random")
    wide.save(tmp_path / "wide.json")
    assert SIExp(table=str(tmp_path / "wide.json")).table == wide
    assert SpikingSoftmax(table=str(tmp_path / "wide.json"), subtract_max=False).table == wide
    assert SIExp().table == shipped_table(12, -1.0, 1.0)


TABLE = make_test_table(4, -1.0, 1.0)
TANH_TABLE = dataclasses.replace(TABLE, info={"target": "tanh"})
UNSIGNED_TABLE = SIExpTable(Format(8, 4, signed=False), Format(16, 8), 0, 255, (64, 32, 16),
                            (300, 100, 50), (64, 32, 16))
#: Outputs up to 2**48 + 3·2**47 (both steps fire): 50 bits, past what SI-norm takes.
WIDE_TABLE = SIExpTable(Format(16, 12), Format(52, 48), -4096, 4096, (0, 4096),
                        (1 << 48, 3 << 47), (-4096, 0))


@pytest.mark.parametrize("cls, params, error, message", [
    (SIExp, {"K": 5, "table": TABLE}, ValueError,
     r"^K=5 does not match the table, which has K=4$"),
    (SIExp, {"K": 4, "lo": -2.0, "table": TABLE}, ValueError,
     r"^range \[-2, 1\] does not match the table's range \[-1, 1\]$"),
    (SIExp, {"K": 4, "variant": "fast", "table": TABLE}, ValueError,
     r"^variant must be one of unrolled, iterative, not 'fast'$"),
    (SIExp, {"K": 4, "table": TABLE, "tag_width": 65}, ValueError,
     r"^tag_width must be an integer from 0 to 64, not 65$"),
    (SIExp, {"K": 0}, ValueError, r"^K must be an integer from 1 to 64, not 0$"),
    (SIExp, {"K": 4, "lo": 1.0, "hi": 1.0}, ValueError,
     r"^lo must be less than hi, not lo=1, hi=1$"),
    (SIExp, {"K": 4, "lo": "low"}, TypeError, r"^lo must be a number, not 'low'$"),
    (SIExp, {"K": 4, "hi": math.nan}, ValueError, r"^hi must be a finite number, not nan$"),
    (SIExp, {"K": 4, "table": 3}, TypeError,
     r"^table must be an SIExpTable, a path to a table JSON or None, not 3$"),
    (SIExp, {"K": 4, "table": ""}, ValueError,
     r"^table must be the path of a table JSON, an SIExpTable or None, not an empty path ''$"),
    (SIExp, {"K": 7, "lo": -3.0, "hi": 3.0}, ValueError,
     r"^no shipped SI-exp table for K=7 on \[-3, 3\]; shipped: "),
    (SINorm, {"N": 100}, ValueError, r"^N must be a power of two from 1 to 16777216, not 100$"),
    (SINorm, {"N": 0}, ValueError, r"^N must be an integer from 1 to 16777216, not 0$"),
    (SINorm, {"rounding": "up"}, ValueError,
     r"^rounding must be one of floor, round, not 'up'$"),
    (SINorm, {"e_width": 0}, ValueError, r"^e_width must be an integer from 1 to 48, not 0$"),
    (SINorm, {"n_max": 0}, ValueError, r"^n_max must be an integer from 1 to 65536, not 0$"),
    (SpikingSoftmax, {"n_max": 5000}, ValueError,
     r"^n_max must be an integer from 1 to 4096, not 5000$"),
    (SpikingSoftmax, {"subtract_max": 1}, TypeError, r"^subtract_max must be a bool, not 1$"),
    # The table's type is checked before its range is read.
    (SpikingSoftmax, {"table": 12}, TypeError,
     r"^table must be an SIExpTable, a path to a table JSON or None, not 12$"),
    (SpikingSoftmax, {"table": 1.5}, TypeError,
     r"^table must be an SIExpTable, a path to a table JSON or None, not 1.5$"),
    (SpikingSoftmax, {"table": ""}, ValueError,
     r"^table must be the path of a table JSON, an SIExpTable or None, not an empty path ''$"),
    (SpikingSoftmax, {"N": 3}, ValueError, r"^N must be a power of two from 1 to 16777216"),
    (SpikingSoftmax, {"K": 5, "table": TABLE, "subtract_max": False}, ValueError,
     r"^K=5 does not match the table, which has K=4$"),
    (SpikingSoftmax, {"K": 4, "table": TANH_TABLE, "subtract_max": False}, ValueError,
     r"^the spiking softmax needs a table of exp; this one approximates tanh$"),
    (SpikingSoftmax, {"K": 4, "table": TABLE, "lo": -8.0}, ValueError,
     r"^range \[-8, 1\] does not match the table's range \[-1, 1\]$"),
    (SIExp, {"K": 3, "table": UNSIGNED_TABLE}, ValueError,
     r"^the cores take signed inputs; this table's input format u8\.4 is unsigned$"),
    (SpikingSoftmax, {"K": 3, "table": UNSIGNED_TABLE, "subtract_max": False}, ValueError,
     r"^the cores take signed inputs"),
    (SpikingSoftmax, {"K": 4, "table": TABLE}, ValueError,
     r"^subtract_max=True needs a table whose range ends at 0 \(the scores minus their row "
     r"maximum\); this one covers \[-1\.0, 1\.0\]$"),
    (SpikingSoftmax, {"K": 2, "table": WIDE_TABLE, "subtract_max": False}, ValueError,
     r"^the table's outputs reach 703687441776640, 50 bits; SI-norm takes exponentials of at "
     r"most 48 bits$"),
])
def test_rejects_bad_parameters(cls, params, error, message):
    with pytest.raises(error, match=message):
        cls(**params)


def test_registry():
    assert [p.name for p in core_parameters("si_exp")] == ["K", "lo", "hi", "variant", "table",
                                                           "tag_width"]
    assert [p.name for p in core_parameters("si_norm")] == ["e_width", "n_max", "N", "rounding",
                                                            "tag_width", "variant"]
    assert [p.name for p in core_parameters("softmax")] == [
        "n_max", "K", "lo", "hi", "table", "N", "subtract_max", "rounding", "variant",
        "x_width"]
    assert all(p.doc for name in ("si_exp", "si_norm", "softmax")
               for p in core_parameters(name))
    assert parse_params("softmax", ["subtract_max=false", "N=0x100", "rounding=floor"]) == \
        {"subtract_max": False, "N": 256, "rounding": "floor"}
    assert parse_params("si_exp", ["lo=-8", "hi=0", "variant=iterative"]) == \
        {"lo": -8.0, "hi": 0.0, "variant": "iterative"}
    # A table path stays text, even one that reads as a number; integers take leading zeros.
    assert parse_params("softmax", ["table=12", "x_width=016", "n_max=0x10"]) == \
        {"table": "12", "x_width": 16, "n_max": 16}
    # The defaults load the shipped tables: K = 12 on [-8, 0] with max subtraction.
    assert make_core("softmax").table == shipped_table(12, -8.0, 0.0)
    assert make_core("si_exp").table == shipped_table(12, -1.0, 1.0)
    core = make_core("si_norm", parse_params("si_norm", ["N=16", "rounding=floor"]))
    assert core.latency == 6 and core.o.payload.c.shape().width == 5
