"""Fast tests of the SI-exp table trainer (golden/si_exp_fit.py) and the shipped tables."""

import math

import pytest
import torch

pytest.importorskip("cma")

from golden.fixed import Format  # noqa: E402
from golden.si_exp import SIExpTable, evaluate_table, shipped_tables, si_exp  # noqa: E402
from golden.si_exp_fit import fit_si_exp, integer_mse  # noqa: E402

SMALL = dict(restarts=2, evaluations=300, kicks=1, points=600, train_points=300, progress=False)


@pytest.fixture(scope="module")
def small_fit():
    return fit_si_exp(4, -1.0, 1.0, seed=3, command="test", **SMALL)


def test_deterministic_for_a_seed(small_fit):
    again = fit_si_exp(4, -1.0, 1.0, seed=3, command="test", **SMALL)
    assert again == small_fit
    assert again.info["float_mse"] == small_fit.info["float_mse"]
    assert again.info["measured"] == small_fit.info["measured"]


def test_other_seed_is_a_valid_fit():
    other = fit_si_exp(4, -1.0, 1.0, seed=4, **SMALL)
    assert other.K == 4 and other.info["seed"] == 4


def test_reported_error_is_the_integer_models(small_fit):
    t = small_fit
    measured = t.info["measured"]
    assert measured == evaluate_table(t, SMALL["points"])
    assert math.isclose(integer_mse(t, SMALL["points"]), measured["mse"], rel_tol=1e-9)
    # Independently: run the integer model itself on the quantised grid.
    x = torch.linspace(-1.0, 1.0, SMALL["points"], dtype=torch.float64)
    out = si_exp(t.input_format.quantise(x), t).out
    mse = float(((t.output_format.to_float(out) - torch.exp(x)) ** 2).mean())
    assert math.isclose(mse, measured["mse"], rel_tol=1e-9)


def test_records_provenance(small_fit):
    info = small_fit.info
    assert info["target"] == "exp" and info["seed"] == 3 and info["command"] == "test"
    assert info["restarts"] == SMALL["restarts"] and info["kicks"] == SMALL["kicks"]
    assert small_fit.range == (-1.0, 1.0)
    assert small_fit.input_format == Format(16, 12) and small_fit.output_format.frac == 14


def test_short_fit_reaches_a_sane_error(small_fit):
    # A best straight line through exp on [-1, 1] has MSE ~ 7e-3; 4 spikes must do better
    # than a constant (variance of exp, 0.43) by far.
    assert small_fit.info["measured"]["mse"] < 0.02
    assert small_fit.info["float_mse"] < 0.02


def test_other_target_and_range():
    t = fit_si_exp(3, -8.0, 0.0, seed=0, target=torch.sigmoid, target_name="sigmoid", **SMALL)
    m = evaluate_table(t, SMALL["points"], torch.sigmoid)
    assert m == t.info["measured"] and m["mse"] < 0.01 and t.target == "sigmoid"
    assert evaluate_table(t, SMALL["points"]) == m  # the table's own target by default
    assert t.range == (-8.0, 0.0)


def test_a_range_off_the_grid_is_taken_on_it_and_the_target_is_named():
    t = fit_si_exp(2, -0.3, 1.0, target=torch.sigmoid, **SMALL)
    assert t.range == (-1229 / 4096, 1.0)  # -0.3 rounded to the input format
    assert t.target == "sigmoid" and t.info["measured"] == evaluate_table(t, SMALL["points"])
    assert (t.info["points"], t.info["train_points"]) == (SMALL["points"], SMALL["train_points"])
    named = fit_si_exp(2, -1.0, 1.0, target=lambda x: x * x, target_name="square", **SMALL)
    assert named.info["target"] == "square"


def test_round_trip(small_fit, tmp_path):
    path = tmp_path / "t.json"
    small_fit.save(path)
    back = SIExpTable.load(path)
    assert back == small_fit and back.info == small_fit.info
    assert back.output_format == small_fit.output_format


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(K=0), ValueError, ["K", "0", "1"]),
    (dict(K=33), ValueError, ["K", "33", "32"]),
    (dict(K=2.0), TypeError, ["K", "2.0"]),
    (dict(lo=1.0, hi=-1.0), ValueError, ["lo < hi", "1", "-1"]),
    (dict(lo=float("nan")), TypeError, ["lo", "nan"]),
    (dict(hi=100.0), ValueError, ["hi", "100", "range"]),
    (dict(seed=-1), ValueError, ["seed", "-1"]),
    (dict(restarts=0), ValueError, ["restarts", "0"]),
    (dict(evaluations=10), ValueError, ["evaluations", "10", "100"]),
    (dict(kicks=-1), ValueError, ["kicks", "-1"]),
    (dict(train_points=601), ValueError, ["train_points", "601", "600"]),
    (dict(target="exp"), TypeError, ["target", "'exp'"]),
    (dict(input_format=(16, 12)), TypeError, ["input_format"]),
    (dict(input_format=Format(32, 20)), ValueError, ["2097153 inputs", "at most 2**20 + 1"]),
    (dict(lo=0.0, hi=0.0001), ValueError, ["holds one input"]),
    (dict(target=lambda x: x * x), ValueError, ["target_name must name"]),
    (dict(target=torch.sigmoid, target_name="exp"), ValueError, ["'exp' does not name"]),
    (dict(target=lambda x: x * x, target_name="tanh"), ValueError, ["'tanh' does not name"]),
])
def test_bad_arguments(kwargs, exc, words):
    args = dict(K=3, lo=-1.0, hi=1.0)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    options = dict(SMALL, **kwargs)
    with pytest.raises(exc) as info:
        fit_si_exp(args["K"], args["lo"], args["hi"], **options)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("path", shipped_tables(), ids=lambda p: p.stem)
def test_shipped_table(path):
    t = SIExpTable.load(path)
    info = t.info
    assert info["target"] == "exp" and isinstance(info["seed"], int)
    assert info["command"].startswith("python -m golden si-exp fit ")
    assert f"--K {t.K} " in info["command"]
    assert info["measured"] == evaluate_table(t)
    lo, hi = t.range
    assert path.name == f"si_exp_k{t.K}_{lo:g}_{hi:g}.json".replace("-", "m")
