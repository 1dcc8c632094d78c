"""Accuracy of the integer spiking softmax against float softmax on a seeded evaluation set.

The set: rows of every length in ``LENGTHS`` (1 to 256; 197 is ViT-B/16's token count), logits
drawn from N(0, scale²) for every scale of the setting, ``rows_per_cell`` rows per (length,
scale), seed 0. Two input settings (D7):

* ``sigmoid``: the paper's setting. The ANN applies a sigmoid before softmax, so the reference
  is ``softmax(sigmoid(z))`` and the spiking softmax gets ``sigmoid(z)`` (in (0, 1), inside the
  SI-exp range [-1, 1]) quantised to the table's input format, without max subtraction.
  Scales 1, 2, 4, 8.
* ``max``: real logits. The reference is ``softmax(z)``; the spiking softmax gets ``z``
  quantised to the input format, subtracts the row maximum and clamps into [-8, 0].
  Scales 0.5, 1, 2 (the s16.12 input format saturates at ±8).

Metrics over all elements (probabilities ``p = c / N`` vs float):
``mse``, ``max_abs``; per row: ``argmax_agreement`` (the float argmax holds the largest count;
counts are quantised to 1/N, so two close elements may tie, and a tie containing the float
argmax counts as agreement), ``argmax_agreement_strict`` (the first index of the largest count
is the float argmax), ``row_sum_error`` (mean of |Σp − 1|) and ``row_sum_error_max``.
"""

from __future__ import annotations

import torch

from .fixed import check_int
from .si_exp import SIExpTable, shipped_table
from .si_norm import check_power_of_two_N
from .softmax import spiking_softmax

__all__ = ["LENGTHS", "SETTINGS", "evaluation_rows", "evaluate_softmax"]

LENGTHS = (1, 2, 3, 4, 8, 16, 32, 64, 128, 197, 256)
#: The set holds 7·len(LENGTHS)·rows_per_cell rows: 2.3 M at this bound.
MAX_ROWS_PER_CELL = 30_000
SETTINGS = {
    "sigmoid": {"scales": (1.0, 2.0, 4.0, 8.0), "range": (-1.0, 1.0), "subtract_max": False},
    "max": {"scales": (0.5, 1.0, 2.0), "range": (-8.0, 0.0), "subtract_max": True},
}


def evaluation_rows(setting: str, rows_per_cell: int = 30, seed: int = 0):
    """Yield (length, scale, logits of shape (rows, length)) for the setting, seeded."""
    generator = torch.Generator().manual_seed(seed)
    for length in LENGTHS:
        for scale in SETTINGS[setting]["scales"]:
            yield length, scale, scale * torch.randn(rows_per_cell, length, dtype=torch.float64,
                                                     generator=generator)


def _metrics(sums: dict) -> dict:
    return {
        "mse": sums["sq"] / sums["elements"],
        "max_abs": sums["max_abs"],
        "argmax_agreement": sums["agree"] / sums["rows"],
        "argmax_agreement_strict": sums["agree_strict"] / sums["rows"],
        "row_sum_error": sums["row_sum_abs"] / sums["rows"],
        "row_sum_error_max": sums["row_sum_max"],
        "rows": sums["rows"],
        "elements": sums["elements"],
    }


def evaluate_softmax(K: int = 12, N: int = 256, rounding: str = "round",
                     rows_per_cell: int = 30, seed: int = 0,
                     tables: dict[str, SIExpTable] | None = None) -> dict:
    """Metrics per setting and overall (see the module docstring). ``N`` is a power of two
    (D6: ``N = 2**q``)."""
    check_power_of_two_N(N)
    check_int("rows_per_cell", rows_per_cell, minimum=1, maximum=MAX_ROWS_PER_CELL)
    check_int("seed", seed, minimum=0, maximum=2**63 - 1)  # what torch's generator takes
    unknown = sorted(set(tables or {}) - set(SETTINGS))
    if unknown:
        raise ValueError(f"tables has keys {', '.join(map(repr, unknown))}; the settings are "
                         f"{', '.join(SETTINGS)}")
    result, overall = {}, None
    for setting, spec in SETTINGS.items():
        table = (tables or {}).get(setting) or shipped_table(K, *spec["range"])
        sums = {"sq": 0.0, "elements": 0, "max_abs": 0.0, "agree": 0, "agree_strict": 0,
                "rows": 0, "row_sum_abs": 0.0, "row_sum_max": 0.0}
        for _, _, z in evaluation_rows(setting, rows_per_cell, seed):
            if spec["subtract_max"]:
                inputs, reference = z, torch.softmax(z, dim=-1)
            else:
                inputs = torch.sigmoid(z)
                reference = torch.softmax(inputs, dim=-1)
            counts = spiking_softmax(table.input_format.quantise(inputs), table, N,
                                     subtract_max=spec["subtract_max"], rounding=rounding).counts
            p = counts.to(torch.float64) / N
            err = p - reference
            top = reference.argmax(dim=-1, keepdim=True)
            sums["sq"] += float((err ** 2).sum())
            sums["elements"] += err.numel()
            sums["max_abs"] = max(sums["max_abs"], float(err.abs().max()))
            sums["agree"] += int((counts.gather(-1, top) == counts.max(dim=-1, keepdim=True)
                                  .values).sum())
            sums["agree_strict"] += int((counts.argmax(dim=-1, keepdim=True) == top).sum())
            row_sum = (p.sum(dim=-1) - 1).abs()
            sums["rows"] += len(row_sum)
            sums["row_sum_abs"] += float(row_sum.sum())
            sums["row_sum_max"] = max(sums["row_sum_max"], float(row_sum.max()))
        result[setting] = {"K": table.K, "range": list(table.range), **_metrics(sums)}
        if overall is None:
            overall = dict(sums)
        else:
            for key in ("sq", "elements", "agree", "agree_strict", "rows", "row_sum_abs"):
                overall[key] += sums[key]
            overall["max_abs"] = max(overall["max_abs"], sums["max_abs"])
            overall["row_sum_max"] = max(overall["row_sum_max"], sums["row_sum_max"])
    result["overall"] = _metrics(overall)
    result["N"], result["rounding"], result["rows_per_cell"], result["seed"] = \
        N, rounding, rows_per_cell, seed
    return result
