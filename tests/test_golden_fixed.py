import re

import pytest
import torch
from hypothesis import given, strategies as st

from golden.fixed import Format, bits_for_range


def test_format_range():
    f = Format(8, 4)
    assert (f.min_int, f.max_int) == (-128, 127)
    assert (f.min, f.max) == (-8.0, 127 / 16)
    u = Format(8, 0, signed=False)
    assert (u.min_int, u.max_int) == (0, 255)
    assert str(f) == "s8.4" and str(u) == "u8.0"


def test_quantise_rounds_half_up_and_saturates():
    f = Format(8, 1)
    x = torch.tensor([0.25, -0.25, 0.75, -0.75, 1.0, 100.0, -100.0])
    # 0.25*2 = 0.5 -> 1; -0.5 -> 0 (half up, not half away from zero); 1.5 -> 2; -1.5 -> -1
    assert f.quantise(x).tolist() == [1, 0, 2, -1, 2, 127, -128]


def test_quantise_is_exact_next_to_half_and_saturates_wide_formats_inside():
    below_half = 0.49999999999999994  # x + 0.5 rounds to 1.0 in float64
    assert Format(8, 0).quantise(below_half).item() == 0
    assert Format(8, 0).quantise_scalar("x", below_half) == 0
    assert Format(54, 0).quantise(float(2**52 + 1)).item() == 2**52 + 1
    for width in (53, 55, 62):  # max_int = 2**(w-1) - 1 is no float64 from w = 55 on
        f = Format(width, 0)
        got = f.quantise(torch.tensor([2.0 ** (width - 1), 1e30, float("inf"), -1e30]))
        assert got.tolist() == [f.max_int, f.max_int, f.max_int, f.min_int]
        assert f.contains(got)
    u = Format(4, 0, signed=False)
    assert u.quantise(torch.tensor([15.4, 15.5, -3.0])).tolist() == [15, 15, 0]


def test_to_float_inverts_quantise_on_grid():
    f = Format(12, 5)
    q = torch.arange(f.min_int, f.max_int + 1)
    assert torch.equal(f.quantise(f.to_float(q)), q)


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 1}, "width must be an integer from 2 to 62, not 1"),
    ({"width": 70}, "width must be an integer from 2 to 62, not 70"),
    ({"width": 8.0}, "width must be an integer, not 8.0"),
])
def test_format_rejects_bad_width(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Format(**kwargs)


def test_check_names_parameter_and_range():
    with pytest.raises(ValueError, match=r"x has values from -9 to 3; format s4.0 allows -8 to 7"):
        Format(4).check("x", torch.tensor([-9, 3]))
    with pytest.raises(TypeError, match="x must be an integer tensor"):
        Format(4).check("x", torch.tensor([0.5]))


@pytest.mark.parametrize("method", ["saturate", "to_float", "contains"])
def test_integer_methods_refuse_reals_instead_of_truncating(method):
    assert getattr(Format(4), method)([3, -2]) is not None  # Python integers are fine
    for reals in (torch.tensor([2.7]), torch.tensor([float("nan")]), torch.tensor([True])):
        with pytest.raises(TypeError, match=r"q must be an integer tensor in format s4\.0"):
            getattr(Format(4), method)(reals)


def test_quantise_scalar_refuses_to_saturate():
    with pytest.raises(ValueError, match="threshold = 9.0 is outside format s8.4"):
        Format(8, 4).quantise_scalar("threshold", 9.0)
    assert Format(8, 4).quantise_scalar("threshold", 1.03) == 16
    # A real outside the stated range is refused on either side, even when it rounds into it.
    for outside in (-8.01, 7.9376):
        with pytest.raises(ValueError, match="outside format s8.4 \\(-8.0 to 7.9375\\)"):
            Format(8, 4).quantise_scalar("threshold", outside)
    assert Format(8, 4).quantise_scalar("threshold", -8.0) == -128
    # Round half up, as quantise does: 0.5 LSB goes up and -0.5 LSB goes to 0.
    assert Format(8, 1).quantise_scalar("x", 0.25) == 1
    assert Format(8, 1).quantise_scalar("x", -0.25) == 0


@pytest.mark.parametrize("value, message", [
    (float("nan"), "x = nan is not a finite number"),
    (float("-inf"), "x = -inf is not a finite number"),
    (1e308, "x = 1e+308 is outside format s8.4"),  # overflows once scaled
])
def test_quantise_scalar_names_non_finite_and_huge_values(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Format(8, 4).quantise_scalar("x", value)


@given(st.integers(-10**6, 10**6), st.integers(0, 10**6))
def test_bits_for_range_is_minimal(lo, span):
    hi = lo + span
    w = bits_for_range(lo, hi)
    assert -(1 << (w - 1)) <= lo and hi < (1 << (w - 1))
    if w > 1:
        assert not (-(1 << (w - 2)) <= lo and hi < (1 << (w - 2)))
