"""Golden SI-exp, SI-norm and spiking softmax (D5-D7)."""

import dataclasses
import itertools
import json
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

from golden.__main__ import main as golden_main
from golden.fixed import Format
from golden.si_exp import SIExpTable, evaluate_table, shipped_table, si_exp, si_exp_float
from golden.si_norm import si_norm, si_norm_spiking
from golden.softmax import spiking_softmax
from golden.softmax_eval import evaluate_softmax

S8_4 = Format(8, 4)


def binary_table(K=4):
    """h = d = T = 2**-k (the FS ReLU construction): a floor quantiser of x on [0, 1)."""
    w = [1 << (3 - k) for k in range(K)]  # 0.5, 0.25, ... in s8.4 LSBs (1/16)
    return SIExpTable(S8_4, Format(8, 4), 0, 15, tuple(w), tuple(w), tuple(w))


def test_binary_table_is_a_floor_quantiser():
    x = torch.arange(-5, 40)
    out = si_exp(x, binary_table()).out
    assert out.tolist() == x.clamp(0, 15).tolist()  # 4 binary steps reproduce 0..15 exactly


def test_tie_fires_and_clamp():
    t = SIExpTable(S8_4, Format(8, 4), -8, 8, (4,), (3,), (4,))
    assert si_exp(torch.tensor([3, 4, 5, 100]), t).out.tolist() == [0, 3, 3, 3]
    assert si_exp(torch.tensor([3, 4]), t).spikes.tolist() == [0, 1]
    hf, df, Tf = t.to_float()
    inf = float("inf")
    assert si_exp_float(torch.tensor([-inf, inf]), hf, df, Tf, *t.range).tolist() == [0.0, 0.1875]
    with pytest.raises(ValueError, match="NaN"):
        si_exp_float(torch.tensor([0.5, float("nan")]), hf, df, Tf, *t.range)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-64, 64), st.integers(-64, 64), st.integers(-64, 64)),
                min_size=1, max_size=8))
def test_float_twin_and_exact_bounds(steps):
    h, d, T = (tuple(s[i] for s in steps) for i in range(3))
    t = SIExpTable(S8_4, Format(10, 4), -30, 40, h, d, T)
    x = torch.arange(-40, 50)
    res = si_exp(x.clamp(-128, 127), t)
    hf, df, Tf = t.to_float()
    twin = si_exp_float(S8_4.to_float(x), hf, df, Tf, *t.range)
    assert torch.equal(t.output_format.to_float(res.out), twin)
    lo, hi = t.output_range
    assert lo == int(res.out.min()) and hi == int(res.out.max())
    assert t.accumulator_format.contains(res.out)


def test_table_json_round_trip(tmp_path):
    t = binary_table()
    t.save(tmp_path / "t.json")
    assert SIExpTable.load(tmp_path / "t.json") == t
    with pytest.raises(ValueError, match="h, d and T must have one entry per step; got 2, 1 and 1"):
        SIExpTable(S8_4, S8_4, 0, 1, (1, 2), (1,), (1,))
    with pytest.raises(ValueError, match="hi must be an integer from 5 to 127, not 2"):
        SIExpTable(S8_4, S8_4, 5, 2, (1,), (1,), (1,))


def test_evaluate_table_keys():
    m = evaluate_table(binary_table(), points=100, target=lambda x: x)
    assert set(m) >= {"K", "range", "points", "mse", "rmse", "max_abs", "mean_spikes"}
    assert m["max_abs"] <= 1 / 16 + 1e-12  # floor quantiser: at most one LSB low


@pytest.mark.parametrize("rounding", ["floor", "round"])
@pytest.mark.parametrize("N", [1, 2, 4, 8, 16])
def test_si_norm_closed_form_equals_spiking_definition_exhaustively(N, rounding):
    rows = torch.tensor(list(itertools.product(range(8), repeat=3)))  # every row of 3 e in 0..7
    assert torch.equal(si_norm(rows, N, rounding), si_norm_spiking(rows, N, rounding))


def test_si_norm_edge_rows():
    assert si_norm(torch.tensor([[5]]), 256).tolist() == [[256]]       # one element: c = N
    assert si_norm(torch.tensor([[7, 7, 7, 7]]), 256).tolist() == [[64] * 4]  # exact ties
    assert si_norm(torch.tensor([[0, 0, 0]]), 256).tolist() == [[0, 0, 0]]     # Vth = 0
    assert si_norm(torch.tensor([[1, 2]]), 4, "floor").tolist() == [[1, 2]]
    assert si_norm(torch.tensor([[1, 2]]), 4, "round").tolist() == [[1, 3]]
    with pytest.raises(ValueError, match="rounding must be one of floor, round, not 'up'"):
        si_norm(torch.tensor([[1]]), 4, "up")
    with pytest.raises(ValueError, match="e must be non-negative"):
        si_norm(torch.tensor([[-1, 2]]), 4)
    # int64 holds the counts up to (N + 1) * Vth; larger rows are refused, not wrapped
    limit = ((1 << 63) - 1) // 257
    assert si_norm(torch.tensor([[limit - 1, 1]]), 256).tolist() == [[256, 0]]
    with pytest.raises(ValueError, match="summing to"):
        si_norm(torch.tensor([[limit, 1]]), 256)
    with pytest.raises(ValueError, match="has an element"):
        si_norm_spiking(torch.tensor([[1 << 62, 1 << 62]]), 4)
    with pytest.raises(TypeError, match="integer tensor"):
        si_norm(torch.tensor([[True, False]]), 4)


#: A table ending at 0, for max subtraction.
TABLE_TO_0 = SIExpTable(S8_4, Format(10, 4), -40, 0, (8, 4, 2), (5, 3, 1), (-8, -12, -14))


def test_spiking_softmax_vectorised_over_leading_dims():
    x = torch.randint(-20, 30, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))
    full = spiking_softmax(x, TABLE_TO_0, 64, subtract_max=True).counts
    assert len(full.unique()) > 10  # rows of many shapes, not all zero
    for idx in itertools.product(range(2), range(3), range(4)):
        row = spiking_softmax(x[idx].unsqueeze(0), TABLE_TO_0, 64, subtract_max=True).counts[0]
        assert torch.equal(full[idx], row)
    empty = torch.zeros(3, 0, dtype=torch.int64)
    assert spiking_softmax(empty, TABLE_TO_0, 64, subtract_max=True).counts.shape == (3, 0)


def test_max_subtraction_is_shift_invariant():
    t = TABLE_TO_0
    x = torch.randint(-40, 20, (50, 7), generator=torch.Generator().manual_seed(1))
    a = spiking_softmax(x, t, 256, subtract_max=True).counts
    b = spiking_softmax(x + 30, t, 256, subtract_max=True).counts
    assert torch.equal(a, b)


@pytest.mark.parametrize("K, lo, hi", [(16, -8, 0), (12, -1, 1)])  # e(lo) > 0 in both
def test_keys_left_out_get_nothing_and_leave_the_row_as_without_them(K, lo, hi):
    table = shipped_table(K, lo, hi)
    subtract_max = hi == 0  # the max-subtracted setting (D7)
    gen = torch.Generator().manual_seed(2)
    fmt = table.input_format
    x = torch.randint(table.lo, table.hi + 1, (200, 9), generator=gen)
    x[:, 3] = fmt.max_int if subtract_max else table.lo  # a left-out key that would weigh most
    keep = torch.rand(200, 9, generator=gen) < 0.7
    keep[:, 3] = False
    keep[:, 0] = True
    got = spiking_softmax(x, table, 256, subtract_max=subtract_max, keep=keep)
    assert not got.counts[~keep].any() and not got.e[~keep].any()
    assert not got.spikes[~keep].any()
    for row in range(200):
        alone = spiking_softmax(x[row][keep[row]], table, 256, subtract_max=subtract_max)
        assert torch.equal(got.counts[row][keep[row]], alone.counts)
    everything = spiking_softmax(x, table, 256, subtract_max=subtract_max,
                                 keep=torch.ones(9, dtype=torch.bool))
    assert torch.equal(everything.counts, spiking_softmax(x, table, 256,
                                                          subtract_max=subtract_max).counts)
    with pytest.raises(TypeError, match="keep must be a bool tensor, not torch.int64"):
        spiking_softmax(x, table, 256, keep=keep.long())


@pytest.mark.parametrize("x, N, message", [
    (torch.zeros(2, 3, dtype=torch.int64), 3,
     "N must be a power of two from 1 to 16777216, not 3"),
    (torch.zeros(2, 3, dtype=torch.int64), 0, "N must be an integer from 1 to 16777216, not 0"),
    (torch.tensor(5), 256, "x must have at least one dimension"),
    (torch.zeros(2, 3, dtype=torch.int64), 256,
     "the spiking softmax needs a table of exp; this one approximates sigmoid"),
])
def test_spiking_softmax_names_bad_arguments(x, N, message):
    table = shipped_table(12, -8, 0)
    if "sigmoid" in message:
        table = dataclasses.replace(table, info={"target": "sigmoid"})
    with pytest.raises(ValueError, match=re.escape(message)):
        spiking_softmax(x, table, N)


def test_evaluate_softmax_reports_the_documented_keys():
    t1 = SIExpTable(Format(16, 12), Format(18, 14), -4096, 4096, (2048,) * 3, (9000, 7000, 5000),
                    (0, 0, 0))
    t2 = SIExpTable(Format(16, 12), Format(18, 14), -32768, 0, (8192,) * 3, (6000, 5000, 4000),
                    (-8192, -8192, -8192))
    r = evaluate_softmax(tables={"sigmoid": t1, "max": t2}, rows_per_cell=2)
    for setting in ("sigmoid", "max", "overall"):
        assert {"mse", "max_abs", "argmax_agreement", "row_sum_error"} <= set(r[setting])
        assert 0 <= r[setting]["argmax_agreement"] <= 1


def test_table_files_and_tables_must_be_consistent(tmp_path):
    good = binary_table().to_json()
    for change, message in (({"K": 5}, "the table file says K = 5; its tables have 4 steps"),
                            ({"range": [-1.0, 1.0]}, r"says range \[-1.0, 1.0\]; lo and hi give "
                                                     r"\[0.0, 0.9375\]")):
        with pytest.raises(ValueError, match=message):
            SIExpTable.from_json(good | change)
    with pytest.raises(ValueError, match=r"the output reaches \[0, 15\] .* beyond the output "
                                         r"format s4.4 \[-8, 7\]"):
        dataclasses.replace(binary_table(), output_format=Format(4, 4))
    with pytest.raises(ValueError, match="d entry must be an integer from"):
        dataclasses.replace(binary_table(), d=(1 << 62, 0, 0, 0),
                            output_format=Format(62, 4))
    with pytest.raises(ValueError, match="tables has keys 'maximum'; the settings are "):
        evaluate_softmax(tables={"maximum": binary_table()})
    with pytest.raises(ValueError, match=r"e must have at least one dimension"):
        si_norm(torch.tensor(5), 4)


@pytest.mark.parametrize("args, message", [
    (["--rows-per-cell", "0"], "--rows-per-cell must be an integer from 1 to 30000, not 0"),
    (["--N", "3"], "N must be a power of two from 1 to 16777216, not 3"),
    (["--seed", "-1"], "seed must be an integer from 0 to 9223372036854775807, not -1"),
    (["--seed", str(2**64)],
     "seed must be an integer from 0 to 9223372036854775807, not 18446744073709551616"),
])
def test_cli_softmax_eval_rejects_bad_options(args, message, capsys):
    assert golden_main(["softmax", "eval", *args]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_cli_si_exp_eval_on_a_table_file(tmp_path, capsys):
    path = tmp_path / "t.json"
    SIExpTable(Format(16, 12), Format(18, 14), -4096, 4096, (2048, 1024), (9000, 5000),
               (0, 0)).save(path)
    assert golden_main(["si-exp", "eval", "--params", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"K", "range", "points", "mse", "rmse", "max_abs", "mean_spikes"} <= set(result)
    assert result["K"] == 2 and result["points"] == 10_000


@pytest.mark.parametrize("content, extra, message", [
    (None, [], "cannot read SI-exp table {path}: No such file or directory"),
    ("# not json", [], "SI-exp table {path} is not JSON (Expecting value"),
    ("[1, 2]", [], "{path}: not an SI-exp table (format 'list', expected"),
    ('{"format": "hwgen-si-exp-table/1", "h": [1]}', [],
     "{path}: SI-exp table lacks input_format, output_format, lo, hi, d, T"),
    ("table", ["--K", "3"], "--K 3 differs from K = 2 of {path}"),
    ("table", ["--range", "-8", "0"], "--range -8 0 differs from the range [-1, 1] of {path}"),
])
def test_cli_si_exp_eval_names_a_bad_table_file(content, extra, message, tmp_path, capsys):
    path = tmp_path / "t.json"
    if content == "table":
        SIExpTable(Format(16, 12), Format(18, 14), -4096, 4096, (2048, 1024), (9000, 5000),
                   (0, 0)).save(path)
    elif content is not None:
        path.write_text(content)
    assert golden_main(["si-exp", "eval", "--params", str(path), *extra]) == 2
    assert capsys.readouterr().err.startswith("error: " + message.format(path=path))


@pytest.mark.parametrize("points", ["1", "10000001"])
def test_cli_si_exp_eval_rejects_bad_points(points, capsys):
    assert golden_main(["si-exp", "eval", "--points", points]) == 2
    assert capsys.readouterr().err == \
        f"error: points must be an integer from 2 to 10000000, not {points}\n"


def test_cli_missing_table_is_a_clear_error(capsys):
    assert golden_main(["si-exp", "eval", "--K", "3", "--range", "-2", "5"]) == 2
    assert "no shipped SI-exp table for K=3 on [-2, 5]" in capsys.readouterr().err


def test_cli_si_exp_eval_refuses_a_reversed_range(capsys):
    assert golden_main(["si-exp", "eval", "--range", "1", "-1"]) == 2
    assert capsys.readouterr().err == "error: range must have lo < hi, not [1, -1]\n"


def test_plots_are_written(tmp_path):
    assert golden_main(["plots", "--out", str(tmp_path)]) == 0
    for name in ("si_exp_error_vs_K.png", "softmax_spiking_vs_float.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_shipped_softmax_accuracy_targets():
    """Issue 3 targets on the documented evaluation set with the shipped K = 12 tables."""
    r = evaluate_softmax(K=12, N=256, rounding="round")
    for setting in ("sigmoid", "max"):
        assert r[setting]["mse"] <= 1e-5
        assert r[setting]["argmax_agreement"] >= 0.999


def test_float_entry_point_quantises_and_normalises():
    from golden.softmax import spiking_softmax_float
    t = binary_table()
    z = torch.tensor([[0.25, 0.5, 0.75]], dtype=torch.float64)
    p = spiking_softmax_float(z, t, 64)
    counts = spiking_softmax(t.input_format.quantise(z), t, 64).counts
    assert torch.equal(p, counts.to(torch.float64) / 64)
    assert abs(float(p.sum()) - 1) <= 3 / 64
