"""PNG plots of the Spiking-Softmax accuracy (``python -m golden plots``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .si_exp import SIExpTable, evaluate_table, shipped_table, shipped_tables
from .softmax import spiking_softmax
from .softmax_eval import SETTINGS

__all__ = ["write_plots"]


def write_plots(out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    # Error vs K for every shipped table, one line per range.
    curves: dict[tuple, list] = {}
    for path in shipped_tables():
        table = SIExpTable.load(path)
        m = evaluate_table(table)
        curves.setdefault(tuple(m["range"]), []).append((m["K"], m["mse"], m["max_abs"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for rng, points in sorted(curves.items()):
        points.sort()
        ax.semilogy([p[0] for p in points], [p[1] for p in points], "o-",
                    label=f"MSE on [{rng[0]:g}, {rng[1]:g}]")
        ax.semilogy([p[0] for p in points], [p[2] for p in points], "x--",
                    label=f"max |error| on [{rng[0]:g}, {rng[1]:g}]")
    ax.axhline(1e-4, color="grey", lw=0.8, ls=":", label="MSE target 1e-4")
    ax.set_xlabel("K (SI-exp time steps)")
    ax.set_ylabel("error of the integer model vs exp")
    ax.set_title("SI-exp: shipped tables")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out / "si_exp_error_vs_K.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    # Spiking vs float softmax on sample rows of both settings.
    generator = torch.Generator().manual_seed(1)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    for row, (setting, spec) in enumerate(SETTINGS.items()):
        table = shipped_table(12, *spec["range"])
        for col, length in enumerate((8, 32)):
            z = 2.0 * torch.randn(length, dtype=torch.float64, generator=generator)
            inputs = z if spec["subtract_max"] else torch.sigmoid(z)
            reference = torch.softmax(inputs, dim=-1)
            counts = spiking_softmax(table.input_format.quantise(inputs), table, 256,
                                     subtract_max=spec["subtract_max"]).counts
            ax = axes[row][col]
            idx = torch.arange(length).numpy()
            ax.bar(idx - 0.2, reference.numpy(), width=0.4, label="float softmax")
            ax.bar(idx + 0.2, (counts / 256).numpy(), width=0.4, label="spiking (K=12, N=256)")
            ax.set_title(f"{setting} setting, row of {length}", fontsize=9)
    # One legend above the panels: inside one, it would cover bars.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    written.append(out / "softmax_spiking_vs_float.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    return written
