"""Expectation compensation (ECM, numeric contract D8): mean coding over time steps.

Every tensor here is time-major, ``(T, ...)``, holding the per-step values ``x_1..x_T``. With
``S_t = x_1 + ... + x_t`` the running sum, an ECM operator emits the cumulative differences
``o_t = C_t - C_(t-1)`` of

* a unary op ``f``: ``C_t = t * f(S_t / t)`` (:func:`ecm_unary`, :func:`ecm_unary_int`);
* a product of two spike-driven tensors: ``C_t = SA_t @ SB_t / t`` (:func:`ecm_matmul`), in
  integers ``floor(SA_t @ SB_t / t)`` (:func:`ecm_matmul_int`),

so the outputs telescope exactly: ``o_1 + ... + o_t = C_t``. The integer forms divide by t
exactly (floor), as the hardware does with a divider (or a reciprocal table proven exact).
"""

from __future__ import annotations

from typing import Callable

import torch

from .fixed import INT64_MAX, max_magnitude

__all__ = ["steps_like", "cumulative_difference", "ecm_unary", "ecm_unary_int", "ecm_matmul",
           "ecm_matmul_int", "round_shift"]


def steps_like(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """``t = 1..T`` shaped to broadcast against a time-major tensor ``x``."""
    T = x.shape[0]
    shape = (T,) + (1,) * (x.dim() - 1)
    return torch.arange(1, T + 1, dtype=dtype or x.dtype).reshape(shape)


def cumulative_difference(C: torch.Tensor) -> torch.Tensor:
    """Per-step outputs ``o_t = C_t - C_(t-1)`` (with ``C_0 = 0``) of cumulative values ``C``."""
    return torch.diff(C, dim=0, prepend=torch.zeros_like(C[:1]))


def round_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``x * 2**-shift`` rounded half up for ``shift > 0``; exact left shift otherwise."""
    if shift > 0:
        return (x + (1 << (shift - 1))) >> shift
    return x << -shift


def ecm_unary(x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Real-valued unary ECM: ``f`` is evaluated on the running mean (vectorised over t)."""
    t = steps_like(x)
    return cumulative_difference(t * f(torch.cumsum(x, dim=0) / t))


def ecm_unary_int(x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor], in_frac: int,
                  out_frac: int) -> torch.Tensor:
    """Integer unary ECM: ``x`` integers with ``in_frac`` fractional bits; ``C_t`` is
    ``t * f(S_t / t)`` quantised (round half up) to ``out_frac`` fractional bits.

    ``f`` itself is evaluated in float64 on the exact running mean: LayerNorm and GELU have no
    fixed-point core yet, so this stands for a table or approximation the hardware would use."""
    if x.is_floating_point():
        raise TypeError("ecm_unary_int needs an integer tensor")
    S = torch.cumsum(x, dim=0).to(torch.float64) * 2.0 ** -in_frac
    t = steps_like(S)
    C = torch.floor(t * f(S / t) * 2.0 ** out_frac + 0.5).to(torch.int64)
    return cumulative_difference(C)


def ecm_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real-valued matmul ECM of time-major ``a`` (T, ..., n, m) and ``b`` (T, ..., m, p)."""
    t = steps_like(a)
    return cumulative_difference(torch.cumsum(a, dim=0) @ torch.cumsum(b, dim=0) / t)


def ecm_matmul_int(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer matmul ECM: ``C_t = floor(SA_t @ SB_t / t)``, exact in int64."""
    if a.is_floating_point() or b.is_floating_point():
        raise TypeError("ecm_matmul_int needs integer tensors")
    t = steps_like(a, torch.int64)
    for x in (a, b):
        if max_magnitude(x) * x.shape[0] > INT64_MAX:
            raise ValueError(f"ecm_matmul_int: {x.shape[0]} steps of values up to "
                             f"{max_magnitude(x)} can sum beyond int64")
    SA, SB = torch.cumsum(a, dim=0), torch.cumsum(b, dim=0)
    sa, sb = max_magnitude(SA), max_magnitude(SB)
    bound = sa * sb * a.shape[-1]
    if bound > INT64_MAX:
        raise ValueError(f"ecm_matmul_int: running sums up to {sa} and {sb} over "
                         f"{a.shape[-1]} terms can reach {bound}, beyond int64")
    C = torch.div(SA @ SB, t, rounding_mode="floor")
    out = cumulative_difference(C)
    if 2 * max_magnitude(C) > INT64_MAX:
        # A difference of two values of opposite sign wrapped iff its sign is not the first's.
        wrapped = ((C[1:] ^ C[:-1]) < 0) & ((out[1:] ^ C[1:]) < 0)
        if wrapped.any():
            raise ValueError(f"ecm_matmul_int: cumulative products up to {max_magnitude(C)} "
                             f"differ by more than int64 holds between two steps")
    return out
