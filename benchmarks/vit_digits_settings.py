"""How much the digits-ViT conversion depends on its calibration settings, and how much of the
test-split accuracy at small t is noise.

    .venv/bin/python benchmarks/vit_digits_settings.py [--T 8] [--out build/benchmarks/vit_digits_settings.json]

Integer mode, spiking softmax (the configuration of ``python -m golden vit-digits --int``). For
each setting: the mean squared error of the SNN's mean output after t steps against the ANN's
logits on all 1,257 *training* images (a smooth measure a setting could be chosen by without
looking at the test split), the test accuracy after t steps (540 images: one image is 0.19
points) and the SIT energy ratio. Settings: ECMT's defaults, the probability site's λ_s scaled
by 2, 4 and 8, calibration percentiles 0.97 and 0.995, and ECMT's ViT fc2 override.
"""

from __future__ import annotations

import time

import torch

import record  # puts the repository on sys.path; the shared command line and record

from golden.convert import MAX_TIME_STEPS, ConversionConfig, convert  # noqa: E402
from golden.digits_experiment import ANALOG, calibration_batches  # noqa: E402
from golden.energy import energy_report  # noqa: E402
from golden.vit_digits import (DEFAULT_CHECKPOINT, ViTConfig, accuracy, digits_split,  # noqa: E402
                               load_or_train)

S = 0.0125  # ECMT's λ of the probability site
SETTINGS = {
    "ECMT defaults": {},
    "λ_s × 2": {"lambdas": {"s": (2 * S, 2 * S)}},
    "λ_s × 4": {"lambdas": {"s": (4 * S, 4 * S)}},
    "λ_s × 8": {"lambdas": {"s": (8 * S, 8 * S)}},
    "percentile 0.97": {"percentiles": (0.97, 0.03)},
    "percentile 0.995": {"percentiles": (0.995, 0.005)},
    "fc2 0.25/0.08": {"lambdas": {"s": (S, S), "fc2": (0.25, 0.08)}},
}


@torch.no_grad()
def cumulative_means(snn, x, T, batch=180):
    y = torch.cat([snn.to_real(snn(x[i:i + batch], T=T)).double()
                   for i in range(0, len(x), batch)], dim=1)
    return y / torch.arange(1, T + 1, dtype=torch.float64).view(-1, 1, 1)


def main(argv=None):
    p = record.parser(__file__, __doc__)
    p.add_argument("--T", type=int, default=8, help="time steps")
    args = p.parse_args(argv)
    if not 1 <= args.T <= MAX_TIME_STEPS:
        p.error(f"--T must be from 1 to {MAX_TIME_STEPS}, not {args.T}")
    model, _ = load_or_train(record.REPO / DEFAULT_CHECKPOINT, ViTConfig(), progress=True)
    model.eval()
    x_tr, _, x_te, y_te = digits_split()
    calibration = calibration_batches(x_tr)
    with torch.no_grad():
        ann_train = model(x_tr).double()
        ann_test = accuracy(model, x_te, y_te)
    print(f"ANN test accuracy {ann_test:.2f} %; t = 1..{args.T}", flush=True)
    rows = []
    for name, options in SETTINGS.items():
        start = time.monotonic()
        config = ConversionConfig(softmax="spiking", integer=True, analog=ANALOG, **options)
        snn = convert(model, calibration, config)
        train = cumulative_means(snn, x_tr, args.T)
        stats = snn.record_stats()
        test = cumulative_means(snn, x_te, args.T)
        row = {"setting": name,
               "train_logit_mse": [float(((m - ann_train) ** 2).mean()) for m in train],
               "test_accuracy": [100.0 * float((m.argmax(-1) == y_te).double().mean())
                                 for m in test],
               "energy_ratio": energy_report(stats)["energy_ratio"],
               "seconds": round(time.monotonic() - start, 1)}
        row["test_loss"] = [ann_test - a for a in row["test_accuracy"]]
        rows.append(row)
        print(f"{name:>17}: train logit MSE "
              + " ".join(f"{v:.4f}" for v in row["train_logit_mse"])
              + " | test loss " + " ".join(f"{v:+.2f}" for v in row["test_loss"])
              + " | E/E_ANN " + " ".join(f"{v:.3f}" for v in row["energy_ratio"]), flush=True)
    record.write(p, args, argv, {"T": args.T, "ann_test_accuracy": ann_test, "settings": rows})


if __name__ == "__main__":
    main()
