"""Benchmark of the Spiking-Softmax: SI-exp error vs K, softmax accuracy, core area and Fmax.

    .venv/bin/python benchmarks/spiking_softmax.py [--out build/benchmarks/spiking_softmax.json]
        [--devices up5k ecp5-25f] [--seeds 1 2 3] [--skip-pnr]

Targets (issue 3): SI-exp on [-1, 1] at K = 12 MSE <= 1e-4 (integer model, shipped formats);
spiking softmax (K = 12, N = 256) MSE <= 1e-5 per setting and argmax agreement >= 99.9 %;
the softmax core at n = 16: >= 50 MHz on up5k and >= 150 MHz on ecp5-25f, no DSPs.
"""

from __future__ import annotations

import area_fmax
import record  # puts the repository on sys.path; the shared command line and record

from golden.si_exp import SIExpTable, evaluate_table, shipped_tables  # noqa: E402
from golden.softmax_eval import evaluate_softmax  # noqa: E402

TARGETS = {("softmax", "up5k"): 50.0, ("softmax", "ecp5-25f"): 150.0}


def si_exp_curve():
    rows = []
    for path in shipped_tables():
        m = evaluate_table(SIExpTable.load(path))
        rows.append(m)
        print(f"SI-exp K={m['K']:>2} on [{m['range'][0]:g}, {m['range'][1]:g}]: MSE {m['mse']:.3e} "
              f"RMSE {m['rmse']:.4f} max|err| {m['max_abs']:.4f} spikes {m['mean_spikes']:.2f}",
              flush=True)
    return rows


def main(argv=None):
    p = record.parser(__file__, __doc__)
    area_fmax.add_options(p)
    args = p.parse_args(argv)
    result = {"si_exp": si_exp_curve()}
    for rounding in ("round", "floor"):
        s = evaluate_softmax(K=12, N=256, rounding=rounding)
        result[f"softmax_{rounding}"] = s
        for setting in ("sigmoid", "max", "overall"):
            m = s[setting]
            print(f"softmax K=12 N=256 {rounding:>5} {setting:>8}: MSE {m['mse']:.3e} "
                  f"max|err| {m['max_abs']:.4f} argmax {m['argmax_agreement']:.4%} "
                  f"(strict {m['argmax_agreement_strict']:.2%}) row-sum error "
                  f"{m['row_sum_error']:.4f}", flush=True)
    if not args.skip_pnr:
        result["area_fmax"] = area_fmax.measure([("softmax", {"n_max": 16})], args.devices,
                                                args.seeds, TARGETS)
    record.write(p, args, argv, result)


if __name__ == "__main__":
    main()
