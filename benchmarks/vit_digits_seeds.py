"""How much the digits-ViT conversion loss varies with the ANN's training seed: the spread the
single shipped model (seed 0) is one draw from.

    .venv/bin/python benchmarks/vit_digits_seeds.py [--seeds 0 1 2 3 4 5] [--T 8] [--out build/benchmarks/vit_digits_seeds.json]

Integer mode, spiking softmax (the configuration of ``python -m golden vit-digits --int``), the
same split (1,257 train / 540 test: one image is 0.19 points) and every conversion setting at
its default; only ``ViTConfig.seed`` changes. Seed 0 uses the shipped checkpoint
(``.cache/vit_digits.pt``); the others are trained once (about 40 s each) and kept as
``.cache/vit_digits_seed{S}.pt``. Prints the conversion loss after each t per seed, then its mean,
median and maximum over the seeds.
"""

from __future__ import annotations

import statistics

import record  # puts the repository on sys.path; the shared command line and record

from golden.convert import MAX_TIME_STEPS  # noqa: E402
from golden.digits_experiment import run_experiment  # noqa: E402
from golden.vit_digits import DEFAULT_CHECKPOINT, ViTConfig  # noqa: E402


def checkpoint(seed: int):
    if seed == ViTConfig().seed:
        return record.REPO / DEFAULT_CHECKPOINT
    return record.REPO / DEFAULT_CHECKPOINT.with_name(f"vit_digits_seed{seed}.pt")


def main(argv=None):
    p = record.parser(__file__, __doc__)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5],
                   help="ANN training seeds")
    p.add_argument("--T", type=int, default=8, help="time steps")
    args = p.parse_args(argv)
    if not 1 <= args.T <= MAX_TIME_STEPS:
        p.error(f"--T must be from 1 to {MAX_TIME_STEPS}, not {args.T}")
    if len(set(args.seeds)) != len(args.seeds) or not all(0 <= s < 2**63 for s in args.seeds):
        p.error(f"--seeds must be distinct integers from 0 to 2**63 - 1, not {args.seeds}")
    rows = []
    for seed in args.seeds:
        r = run_experiment(args.T, "spiking", True, checkpoint=checkpoint(seed),
                           vit=ViTConfig(seed=seed), progress=True)
        rows.append({"seed": seed, "ann_accuracy": r["ann_accuracy"],
                     "snn_accuracy": r["snn_accuracy"], "conversion_loss": r["conversion_loss"],
                     "energy_ratio": r["energy_ratio"]})
        print(f"seed {seed}: ANN {r['ann_accuracy']:.2f} %, loss by t "
              + " ".join(f"{v:+.2f}" for v in r["conversion_loss"]), flush=True)
    summary = {}
    for name, fn in (("mean", statistics.fmean), ("median", statistics.median), ("max", max)):
        summary[name] = [fn(row["conversion_loss"][t] for row in rows) for t in range(args.T)]
        print(f"{name:>6} loss by t " + " ".join(f"{v:+.2f}" for v in summary[name]))
    record.write(p, args, argv, {"T": args.T, "test_images": r["test_images"], "seeds": rows,
                                 "conversion_loss": summary})


if __name__ == "__main__":
    main()
