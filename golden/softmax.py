"""The spiking softmax of SIT: SI-exp then SI-norm over each row (numeric contract D7).

``x`` are integer scores in the SI-exp table's input format, rows along the last dimension (any
leading shape: batch, heads, rows). Per row: optional max subtraction (``x - max(x)``, for real
logits), clamp into the table's range (inside SI-exp), ``e = SI-exp(x)`` clamped at 0 (a trained
table can dip below 0 near the bottom of its range; the clamp is explicit), ``Vth = sum(e)``,
``c = floor((N * e + v_init) / Vth)``. The result ``c`` are counts out of ``N = 2**q``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .si_exp import SIExpTable, check_exp_table, si_exp
from .si_norm import check_power_of_two_N, si_norm

__all__ = ["SpikingSoftmaxResult", "spiking_softmax", "spiking_softmax_float"]


class SpikingSoftmaxResult(NamedTuple):
    counts: torch.Tensor  #: int64 counts c out of N, same shape as x
    e: torch.Tensor  #: int64 SI-exp outputs after the clamp at 0
    spikes: torch.Tensor  #: SI-exp spikes per element


def spiking_softmax(x, table: SIExpTable, N: int = 256, *, subtract_max: bool = False,
                    rounding: str = "round", keep=None) -> SpikingSoftmaxResult:
    """Counts out of ``N`` (a power of two, D6) for each row of ``x`` (see the module).

    ``keep`` (bool, broadcastable to ``x``; None keeps all) leaves out the entries where it is
    False, as an attention mask drops keys: their ``e`` is 0 and they take no part in the row
    max. The hardware has no mask: with ``keep`` this is a golden-model extension."""
    check_power_of_two_N(N)
    check_exp_table(table)
    x = table.input_format.check("x", x)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (the rows run along the last)")
    if keep is not None:
        keep = torch.as_tensor(keep)
        if keep.dtype != torch.bool:
            raise TypeError(f"keep must be a bool tensor, not {keep.dtype}")
        keep = keep.expand_as(x)
    if subtract_max and x.shape[-1] > 0:  # an empty row has no maximum and no counts
        kept = x if keep is None else x.masked_fill(~keep, table.input_format.min_int)
        x = x - kept.max(dim=-1, keepdim=True).values
        # x - max lies in [min - max, 0]; SI-exp clamps it into the table's range, so the
        # difference may exceed the input format only below the range, where it is clamped.
        x = x.clamp(min=table.input_format.min_int, max=0)
    res = si_exp(x, table)
    e = res.out.clamp(min=0)
    spikes = res.spikes
    if keep is not None:
        e, spikes = e.masked_fill(~keep, 0), spikes.masked_fill(~keep, 0)
    return SpikingSoftmaxResult(si_norm(e, N, rounding), e, spikes)


def spiking_softmax_float(x, table: SIExpTable, N: int = 256, *, subtract_max: bool = False,
                          rounding: str = "round", keep=None) -> torch.Tensor:
    """Probabilities ``c / N`` for real scores ``x`` (quantised to the table's input format)."""
    q = table.input_format.quantise(torch.as_tensor(x, dtype=torch.float64))
    return spiking_softmax(q, table, N, subtract_max=subtract_max, rounding=rounding,
                           keep=keep).counts.to(torch.float64) / N
