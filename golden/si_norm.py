"""SI-norm: the accumulate-and-fire normaliser of SIT (numeric contract D6).

For a row of non-negative integers ``e_1..e_n``, ``Vth = sum(e)`` (exact). Neuron i adds
``w = e_i`` once per input spike for ``N`` input spikes, starting from ``v_init``, fires when
``v >= Vth`` and subtracts ``Vth``. Its count is ``c_i = floor((N * e_i + v_init) / Vth)``:
``v_init = 0`` is the paper's floor, ``v_init = Vth // 2`` rounds to nearest (half up for even
Vth). The probability is ``p_i = c_i / N``. A row whose sum is 0 gives all-zero counts.
"""

from __future__ import annotations

import torch

from .fixed import INT64_MAX, check_int

__all__ = ["ROUNDINGS", "MAX_N", "check_power_of_two_N", "check_rounding", "si_norm",
           "si_norm_spiking"]

ROUNDINGS = ("floor", "round")
MAX_N = 1 << 24  #: the most input spikes (the closed form's widths stay far below 64 bits)


def check_power_of_two_N(N: int) -> int:
    """Check ``N`` as D6 has it for the softmax and the cores, ``N = 2**q`` from 1 to
    :data:`MAX_N`; return q. (:func:`si_norm` itself takes any N from 1.)"""
    check_int("N", N, minimum=1, maximum=MAX_N)
    if N & (N - 1):
        raise ValueError(f"N must be a power of two from 1 to {MAX_N}, not {N}")
    return N.bit_length() - 1


def check_rounding(rounding: str) -> None:
    """``rounding`` must name one of :data:`ROUNDINGS`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")


def _check(e: torch.Tensor, N: int, rounding: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``e`` as int64 and its row sums ``Vth`` (keepdim), refusing what int64 cannot hold:
    the counts need ``N * e_i + v_init <= (N + 1) * Vth``."""
    check_int("N", N, minimum=1, maximum=MAX_N)
    check_rounding(rounding)
    e = torch.as_tensor(e)
    if e.is_floating_point() or e.dtype == torch.bool:
        raise TypeError(f"e must be an integer tensor, not {e.dtype}")
    e = e.to(torch.int64)
    if e.dim() == 0:
        raise ValueError(f"e must have at least one dimension (its rows run along dim={dim})")
    if e.numel() == 0:
        return e, e.sum(dim=dim, keepdim=True)
    if (e < 0).any():
        raise ValueError(f"e must be non-negative (SI-exp outputs); found {int(e.min())}")
    largest_sum = INT64_MAX // (N + 1)
    # max * row length bounds every row sum, so the sum below cannot wrap.
    if int(e.max()) > INT64_MAX // max(1, e.size(dim)):
        raise ValueError(f"e has an element {int(e.max())}; with N={N} a row of SI-norm may sum "
                         f"to at most {largest_sum}")
    vth = e.sum(dim=dim, keepdim=True)
    if int(vth.max()) > largest_sum:
        raise ValueError(f"e has a row summing to {int(vth.max())}; with N={N} a row of SI-norm "
                         f"may sum to at most {largest_sum}")
    return e, vth


def si_norm(e, N: int, rounding: str = "round", dim: int = -1) -> torch.Tensor:
    """Counts ``c`` for rows of ``e`` along ``dim`` by the closed form (vectorised)."""
    e, vth = _check(e, N, rounding, dim)
    v_init = vth // 2 if rounding == "round" else torch.zeros_like(vth)
    safe = vth.clamp(min=1)
    return torch.where(vth > 0, (N * e + v_init) // safe, 0)


def si_norm_spiking(e, N: int, rounding: str = "round", dim: int = -1) -> torch.Tensor:
    """The same counts by running the IF dynamics for N input spikes (the definition)."""
    e, vth = _check(e, N, rounding, dim)
    vth = vth.expand_as(e)
    v = vth // 2 if rounding == "round" else torch.zeros_like(e)
    count = torch.zeros_like(e)
    for _ in range(N):
        v = v + e
        fire = (v >= vth) & (vth > 0)
        count += fire.to(torch.int64)
        v = v - torch.where(fire, vth, 0)
    return count
