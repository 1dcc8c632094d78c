"""Bit-exact regressions of the emitted Verilog of SI-exp, SI-norm and the spiking softmax
(Verilator via cocotb) against the golden model.

Per parameter set (see sim/softmax_check.py): SI-exp and SI-norm at least 10,000 random inputs
plus inputs that land exactly on a threshold and one LSB either side (every one for SI-exp; for
SI-norm up to 1,000 sampled exact divisions), and the range and
format edges; the softmax at least 2,000 random rows plus one-element, all-equal, saturating,
n_max-long and overlong rows. The sets named ``_tagged`` give every beat a random tag that
must come back on its output. Every set runs under random stalls, is cut by a reset in mid-stream
(mid-row for the softmax), runs again under heavy back-pressure (the first 2,000 inputs for
the iterative SI-exp, the first 600 rows for the softmax), and is timed without stalls.
Measured figures go to build/sim/<name>.json.
"""

import json
from pathlib import Path

import pytest

from golden.fixed import Format
from hwgen.cores.si_exp import SIExp
from hwgen.cores.si_norm import SINorm
from hwgen.cores.softmax import SpikingSoftmax
from sim.softmax_check import check_si_exp, check_si_norm, check_softmax, make_test_table

REPO = Path(__file__).resolve().parents[1]


def si_exp_sets():
    return {
        "si_exp_unrolled_k12": lambda: SIExp(
            K=12, lo=-1.0, hi=1.0, variant="unrolled", table=make_test_table(12, -1.0, 1.0)),
        "si_exp_iterative_k12": lambda: SIExp(
            K=12, lo=-8.0, hi=0.0, variant="iterative", table=make_test_table(12, -8.0, 0.0)),
        # Random tables: negative h, thresholds outside the range, negative outputs; tags
        # (random per beat) must come back on their beat's output.
        "si_exp_random_k5_tagged": lambda: SIExp(
            K=5, lo=-2.0, hi=1.5, variant="unrolled", tag_width=7,
            table=make_test_table(5, -2.0, 1.5, kind="random", seed=5,
                                  input_format=Format(9, 5), output_frac=8)),
        # The shipped default: the trained table for K = 12 on [-1, 1].
        "si_exp_shipped_k12": lambda: SIExp(),
        "si_exp_iterative_random_k3_tagged": lambda: SIExp(
            K=3, lo=-1.0, hi=1.0, variant="iterative", tag_width=3,
            table=make_test_table(3, -1.0, 1.0, kind="random", seed=3)),
    }


SI_NORM_SETS = {
    "si_norm_default": dict(e_width=16, n_max=16, N=256, rounding="round"),
    "si_norm_wide_floor_tagged": dict(e_width=20, n_max=200, N=1 << 16, rounding="floor",
                                      tag_width=9),
    # Small enough to add every pair e <= vth.
    "si_norm_small_exhaustive": dict(e_width=4, n_max=4, N=8, rounding="round"),
    # One divider step reused q + 1 times: a result every q + 1 cycles.
    "si_norm_iterative_tagged": dict(e_width=12, n_max=10, N=64, rounding="round",
                                     tag_width=4, variant="iterative"),
}


def softmax_sets():
    return {
        "softmax_default": lambda: SpikingSoftmax(
            n_max=16, K=12, table=make_test_table(12, -8.0, 0.0), N=256),
        # The shipped default: the trained table for K = 12 on [-8, 0], N = 256, n_max = 16.
        "softmax_shipped_default": lambda: SpikingSoftmax(),
        "softmax_no_max_floor": lambda: SpikingSoftmax(
            n_max=16, K=12, table=make_test_table(12, -1.0, 1.0), N=256, subtract_max=False,
            rounding="floor"),
        # n_max not a power of two; a table with negative outputs (clamped to 0, rows may sum
        # to Vth = 0); N = 16.
        "softmax_small_random": lambda: SpikingSoftmax(
            n_max=5, K=4, table=make_test_table(4, -8.0, 0.0, kind="random", seed=4), N=16),
        # One SI-exp stage used K times and the iterative SI-norm: a row of n every
        # n·max(K, q + 1) cycles.
        "softmax_iterative_no_max": lambda: SpikingSoftmax(
            n_max=8, K=6, table=make_test_table(6, -1.0, 1.0), N=64, subtract_max=False,
            variant="iterative"),
    }


def record(name, core_name, params, result, **extra):
    out = REPO / "build" / "sim" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"core": core_name, "params": params, **extra,
                               **result.__dict__}, indent=2))


@pytest.mark.parametrize("name", si_exp_sets())
def test_si_exp_bit_exact(name, tmp_path):
    core = si_exp_sets()[name]()
    result = check_si_exp(core, name, tmp_path, count=10_000, seed=1)
    assert result.vectors["random"] >= 10_000 and result.vectors["ties"] >= core.K // 2
    assert result.timing["latency"] == core.latency
    assert result.timing["cycles_per_beat"] == pytest.approx(1 / core.throughput)
    record(name, "si_exp", {"K": core.K, "range": list(core.table.range),
                            "variant": core.variant, "table": core.table.to_json()}, result)


@pytest.mark.parametrize("name", SI_NORM_SETS)
def test_si_norm_bit_exact(name, tmp_path):
    params = SI_NORM_SETS[name]
    core = SINorm(**params)
    result = check_si_norm(core, name, tmp_path, count=10_000, seed=2,
                           exhaustive=core.vth_width <= 8)
    assert result.vectors["random"] >= 10_000
    assert result.vectors["ties"] > 100 or "exhaustive" in result.vectors
    assert result.timing["latency"] == core.latency
    assert result.timing["cycles_per_beat"] == pytest.approx(1 / core.throughput)
    record(name, "si_norm", params, result)


@pytest.mark.parametrize("name", softmax_sets())
def test_softmax_bit_exact(name, tmp_path):
    core = softmax_sets()[name]()
    result = check_softmax(core, name, tmp_path, rows=2000, seed=3)
    assert result.vectors["random_rows"] >= 2000
    for key, measured in result.timing.items():
        n = int(key.removeprefix("n="))
        assert measured["latency_first_in_to_first_out"] == core.row_latency(n), key
        assert measured["cycles_per_row"] == n / core.throughput, key
    record(name, "softmax", {"n_max": core.n_max, "K": core.K, "range": list(core.table.range),
                             "N": core.N, "subtract_max": core.subtract_max,
                             "rounding": core.rounding, "variant": core.variant},
           result, formulas={"row_latency": {f"n={n}": core.row_latency(n)
                                             for n in (1, core.n_max)},
                             "cycles_per_row": "n" if core.variant == "unrolled"
                             else "n·max(K, q + 1)"})
