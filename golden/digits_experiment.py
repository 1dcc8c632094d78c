"""The digits-ViT conversion experiment (``python -m golden vit-digits``): ANN accuracy, SNN
accuracy after every step, conversion loss, spikes, synaptic operations and energy per image.

Calibration uses the first ``calibration_images`` training images in batches of 256 (ECMT
calibrates on the evaluation set; we keep the test split unseen). Accuracy at step t is the
argmax of the cumulative output after t steps (ECMT's readout); ties count as wrong unless the
label is the first maximum (``torch.argmax``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .convert import MAX_TIME_STEPS, ConversionConfig, convert
from .energy import energy_report
from .fixed import check_int
from .vit_digits import DEFAULT_CHECKPOINT, ViTConfig, accuracy, digits_split, load_or_train

__all__ = ["run_experiment", "calibration_batches", "write_outputs", "format_table", "ANALOG"]

#: ECMT keeps real-valued inputs at the patch embedding and the classifier.
ANALOG = ("patch_embed", "head")
DEFAULT_CALIBRATION_IMAGES = 1024
#: Settings of the integer arithmetic (SI-norm rounding, formats), recorded in every result.
_NUMERIC_SETTINGS = ("rounding", "act_frac", "weight_frac", "act_width", "weight_width")


def calibration_batches(x_train: torch.Tensor,
                        images: int = DEFAULT_CALIBRATION_IMAGES) -> list[torch.Tensor]:
    """The calibration data: the first ``images`` training images in batches of 256."""
    n = min(images, len(x_train))
    return [x_train[i:min(i + 256, n)] for i in range(0, n, 256)]


def run_experiment(T: int = 8, softmax: str = "spiking", integer: bool = True, *,
                   softmax_input: str = "max", checkpoint: Path | str = DEFAULT_CHECKPOINT,
                   vit: ViTConfig = ViTConfig(),
                   calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                   batch: int = 180, limit: int | None = None, progress: bool = True,
                   **conversion) -> dict:
    """Convert the (trained or loaded) digits ViT and measure it on the test split."""
    from tqdm import tqdm
    check_int("T", T, minimum=1, maximum=MAX_TIME_STEPS)  # all checks come before any training
    check_int("batch", batch, minimum=1, maximum=1 << 20)
    start = time.monotonic()
    x_tr, _, x_te, y_te = digits_split()
    check_int("calibration_images", calibration_images, minimum=1, maximum=len(x_tr))
    if limit is not None:
        check_int("limit", limit, minimum=1, maximum=len(y_te))
        x_te, y_te = x_te[:limit], y_te[:limit]
    config = ConversionConfig(softmax=softmax, softmax_input=softmax_input, integer=integer,
                              analog=ANALOG, **conversion)
    model, info = load_or_train(checkpoint, vit, progress)
    snn = convert(model, calibration_batches(x_tr, calibration_images), config)
    stats = snn.record_stats()
    correct = torch.zeros(T, dtype=torch.float64)
    for i in tqdm(range(0, len(y_te), batch), desc=f"SNN T={T}", disable=not progress,
                  leave=False):
        y = snn(x_te[i:i + batch], T=T)
        correct += (y.argmax(-1) == y_te[i:i + batch]).sum(-1).double()
    ann = accuracy(model, x_te, y_te)
    snn_acc = (100.0 * correct / len(y_te)).tolist()
    result = {
        "T": T, "softmax": softmax, "softmax_input": softmax_input, "integer": integer,
        "K": config.K if softmax == "spiking" else None,
        "N": config.N if softmax == "spiking" else None,
        "levels": config.levels, "percentiles": list(config.percentiles),
        **{name: getattr(config, name) for name in _NUMERIC_SETTINGS},
        "fixed_lambdas": {key: list(value) for key, value in config.lambdas.items()},
        "table": config.table.to_json() if config.table is not None else None,
        "calibration_images": calibration_images,
        "test_images": len(y_te), "limit": limit,
        "ann_accuracy": ann,
        "snn_accuracy": snn_acc,
        "conversion_loss": [ann - a for a in snn_acc],
        **energy_report(stats),
        "checkpoint": str(checkpoint),
        "model": {k: v for k, v in info.items() if k != "config"} | {"config": info["config"]},
        "lambdas": {name: site.lambdas for name, site in snn.sites.items()},
        "seconds": round(time.monotonic() - start, 1),
    }
    return result


def format_table(r: dict) -> str:
    mode = "integer" if r["integer"] else "real"
    head = (f"digits ViT, {r['test_images']} test images, softmax {r['softmax']}"
            + (f" (K={r['K']}, N={r['N']}, {r['softmax_input']})" if r["softmax"] == "spiking"
               else "") + f", {mode} mode, MT levels {r['levels']}\n"
            f"ANN accuracy {r['ann_accuracy']:.2f} %, ANN energy {r['energy_ann_uj']:.3f} µJ "
            f"per image ({r['ann_flops'] / 1e6:.2f} M MAC)\n")
    cols = ("t", "SNN acc %", "loss (pts)", "spikes/neuron", "SOPs (M)", "E SIT (µJ)",
            "E/E_ANN SIT", "E/E_ANN ECMT")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for t in range(r["T"]):
        lines.append("| " + " | ".join([
            str(t + 1), f"{r['snn_accuracy'][t]:.2f}", f"{r['conversion_loss'][t]:+.2f}",
            f"{r['spikes_per_neuron'][t]:.3f}", f"{r['sops'][t] / 1e6:.3f}",
            f"{r['energy_snn_uj'][t]:.3f}", f"{r['energy_ratio'][t]:.3f}",
            f"{r['energy_ratio_ecmt'][t]:.3f}"]) + " |")
    return head + "\n".join(lines)


def output_stem(result: dict) -> str:
    """File name of a result: T, softmax and mode, then every setting off its default (so runs
    with other settings do not overwrite each other). Settings that are not a number (fixed λ,
    an SI-exp table, the ViT's configuration, a checkpoint path other than the default) are
    named by a short hash of their value."""
    default = ConversionConfig()
    stem = (f"vit_digits_T{result['T']}_{result['softmax']}"
            f"_{'int' if result['integer'] else 'real'}")
    if result["softmax_input"] != default.softmax_input:
        stem += f"_{result['softmax_input']}"
    if result["rounding"] != default.rounding:
        stem += f"_{result['rounding']}"
    for key, tag in (("K", "K"), ("N", "N"), ("levels", "levels"), ("act_frac", "af"),
                     ("weight_frac", "wf"), ("act_width", "aw"), ("weight_width", "ww")):
        if result[key] is not None and result[key] != getattr(default, key):
            stem += f"_{tag}{result[key]}"
    if tuple(result["percentiles"]) != default.percentiles:
        stem += "_p" + "_".join(f"{p:g}" for p in result["percentiles"])
    if result["calibration_images"] != DEFAULT_CALIBRATION_IMAGES:
        stem += f"_cal{result['calibration_images']}"
    for name, value, usual in (
            ("lambdas", result["fixed_lambdas"],
             {key: list(v) for key, v in default.lambdas.items()}),
            ("table", result["table"], None),
            ("vit", result["model"]["config"], asdict(ViTConfig())),
            ("checkpoint", result.get("checkpoint", str(DEFAULT_CHECKPOINT)),
             str(DEFAULT_CHECKPOINT))):
        if value != usual:
            digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
            stem += f"_{name}-{digest[:8]}"
    if result["limit"] is not None:
        stem += f"_limit{result['limit']}"
    return stem


def write_outputs(result: dict, out: Path) -> list[Path]:
    """JSON of the result and a PNG of accuracy vs t into the folder ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(result)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = list(range(1, result["T"] + 1))
    ax.plot(steps, result["snn_accuracy"], marker="o", label="SNN (cumulative output)")
    ax.axhline(result["ann_accuracy"], color="k", linestyle="--", label="ANN")
    ax.set_xlabel("time step t")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits ViT: {result['softmax']} softmax, "
                 f"{'integer' if result['integer'] else 'real'} mode")
    ax.set_ylim(max(0, min(result["snn_accuracy"]) - 5), 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = out / f"{stem}.png"
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return [json_path, png_path]
