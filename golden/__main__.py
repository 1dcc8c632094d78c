"""golden command line: integer models, SI-exp training, measurements, plots, ViT conversion.

    python -m golden neuron if --x 0.3 --T 8
    python -m golden neuron mt --x 1.4 --T 6 --lambda-pos 1 --lambda-neg 1 --levels 3 --json
    python -m golden si-exp fit --K 12 --range -1 1 [--seed 0] [--restarts R] [-o FILE]
    python -m golden si-exp fit --K 8 --range -6 6 --target sigmoid -o sigmoid8.json
    python -m golden si-exp eval [--K 12 | --params FILE] [--range -1 1] [--json]
    python -m golden softmax eval [--K 12] [--N 256] [--rounding round] [--json]
    python -m golden plots [--out build/plots]
    python -m golden vit-digits [--T 8] [--softmax exact|spiking] [--int] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .cli import Parser, output_file, output_folder, run

# The commands import torch and the models when they run, so that --help and argument errors
# answer at once. These are the keys of golden.si_exp.TARGETS (tests/test_cli.py checks it).
_TARGET_NAMES = ("exp", "sigmoid", "tanh", "silu", "gelu")


def _inputs(args, fmt):
    import torch
    try:
        values = [float(v) for v in args.x.split(",")]
    except ValueError:
        raise ValueError(f"--x takes one real number or T comma-separated ones, not "
                         f"{args.x!r}") from None
    if len(values) == 1:
        values = values * args.T
    elif len(values) != args.T:
        raise ValueError(f"--x has {len(values)} values; give one (held for --T steps) or "
                         f"exactly --T = {args.T}")
    real = torch.tensor(values, dtype=torch.float64)
    for v in values:
        fmt.quantise_scalar("--x", v)  # refuse values the format cannot hold
    return real, fmt.quantise(real)


def _positive_level(fmt, option: str, value: float, defaulted: bool) -> int:
    """A threshold or base level given as a real: at least one LSB of ``fmt``. ``defaulted``:
    the user left the option out, which the error says, since it is --frac that was given."""
    q = fmt.quantise_scalar(option, value)
    if q < 1:
        raise ValueError(f"{option} {'(default) ' if defaulted else ''}must be at least one LSB "
                         f"of {fmt} ({fmt.lsb:g}), not {value:g}")
    return q


def _print(result: dict, as_json: bool, key_width: int) -> None:
    """A result as JSON, or as aligned ``key: value`` lines."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>{key_width}}: {value}")


_NEURON_OPTIONS = {"if": ("threshold",), "mt": ("lambda_pos", "lambda_neg", "levels")}
_NEURON_DEFAULTS = {"threshold": 1.0, "lambda_pos": 1.0, "lambda_neg": 1.0, "levels": 4}


def _neuron(args):
    import torch
    from .fixed import Format, check_int
    from .if_neuron import IFConfig, if_neuron, if_neuron_float
    from .mt_neuron import MTConfig, mt_decode, mt_neuron, mt_neuron_float
    defaulted = set()
    for neuron, options in _NEURON_OPTIONS.items():
        given = [o for o in options if getattr(args, o) is not None]
        if neuron != args.neuron and given:
            raise ValueError(f"the {args.neuron.upper()} neuron takes no "
                             f"{', '.join('--' + o.replace('_', '-') for o in given)} (an "
                             f"option of the {neuron.upper()} neuron)")
        for o in options:
            if getattr(args, o) is None:
                setattr(args, o, _NEURON_DEFAULTS[o])
                defaulted.add(o)
    check_int("--T", args.T, minimum=1, maximum=1 << 20)
    fmt = Format(args.width, args.frac)
    real, x = _inputs(args, fmt)
    if args.neuron == "if":
        threshold = _positive_level(fmt, "--threshold", args.threshold,
                                    "threshold" in defaulted)
        config = IFConfig(fmt, threshold, args.T)
        ints = if_neuron(x, threshold).spikes
        floats = if_neuron_float(real, args.threshold).spikes
        levels = {"threshold": threshold * fmt.lsb}
        values = ints.to(torch.float64) * levels["threshold"]
    else:
        lp = _positive_level(fmt, "--lambda-pos", args.lambda_pos, "lambda_pos" in defaulted)
        ln = _positive_level(fmt, "--lambda-neg", args.lambda_neg, "lambda_neg" in defaulted)
        config = MTConfig(fmt, lp, ln, args.levels, args.T)
        ints = mt_neuron(x, lp, ln, args.levels).codes
        floats = mt_neuron_float(real, args.lambda_pos, args.lambda_neg, args.levels).codes
        levels = {"lambda_pos": lp * fmt.lsb, "lambda_neg": ln * fmt.lsb, "levels": args.levels}
        values = fmt.to_float(mt_decode(ints, lp, ln))
    result = {
        "neuron": args.neuron,
        "T": args.T,
        "input_format": str(fmt),
        **levels,  # as quantised into the input format (the float twin takes them exact)
        "membrane_format": str(config.membrane_format),
        "x": real.tolist(),
        "x_quantised": fmt.to_float(x).tolist(),
        "integer_spikes": ints.tolist(),
        "float_spikes": [int(v) for v in floats.tolist()],
        "decoded_mean": float(values.sum() / args.T),
        "input_mean": float(real.mean()),
    }
    _print(result, args.json, 16)


def _si_exp_fit(args):
    import torch
    from .si_exp import TARGETS, table_path
    from .si_exp_fit import fit_si_exp
    lo, hi = args.range
    command = f"python -m golden si-exp fit --K {args.K} --range {lo:g} {hi:g} --seed {args.seed}"
    options = {}
    for name in ("restarts", "kicks"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
            command += f" --{name} {options[name]}"
    if args.target != "exp":
        command += f" --target {args.target}"
        if not args.output:  # the package's table folder holds the softmax's exp tables
            raise ValueError(f"--target {args.target} needs -o FILE")
    out = Path(args.output) if args.output else table_path(args.K, lo, hi)
    if out.exists() and not args.force:  # checked before training, not after it
        raise ValueError(f"{out} exists; pass --force to overwrite it or -o to write elsewhere")
    # One thread: the shipped tables were made so, and reductions can differ across counts.
    torch.set_num_threads(1)
    table = fit_si_exp(args.K, lo, hi, seed=args.seed, command=command,
                       target=TARGETS[args.target], target_name=args.target, **options)
    table.save(out)
    print(json.dumps({"file": str(out), **table.info["measured"]}, indent=2))


def _quantised_range(lo_hi, table) -> tuple[int, int]:
    """``--range`` in the table's input format, as the table stores its range."""
    return tuple(table.input_format.quantise_scalar(f"--range {name}", value)
                 for name, value in zip(("LO", "HI"), lo_hi))


def _si_exp_eval(args):
    from .si_exp import TARGETS, SIExpTable, evaluate_table, shipped_table
    if args.params is None:
        table = shipped_table(12 if args.K is None else args.K, *(args.range or (-1.0, 1.0)))
    else:
        table = SIExpTable.load(args.params)
        if table.target not in TARGETS:
            raise ValueError(f"{args.params} approximates {table.target!r}; si-exp eval measures "
                             f"tables of {', '.join(TARGETS)}")
        if args.K is not None and args.K != table.K:
            raise ValueError(f"--K {args.K} differs from K = {table.K} of {args.params}")
        if args.range is not None and _quantised_range(args.range, table) != (table.lo, table.hi):
            raise ValueError(f"--range {args.range[0]:g} {args.range[1]:g} differs from the "
                             f"range [{table.range[0]:g}, {table.range[1]:g}] of {args.params}; "
                             f"a table is measured on its own range")
    result = {"target": table.target, **evaluate_table(table, args.points)}
    result["input_format"], result["output_format"] = str(table.input_format), \
        str(table.output_format)
    _print(result, args.json, 14)


def _softmax_eval(args):
    from .fixed import check_int
    from .softmax_eval import MAX_ROWS_PER_CELL, evaluate_softmax
    check_int("--rows-per-cell", args.rows_per_cell, minimum=1, maximum=MAX_ROWS_PER_CELL)
    result = evaluate_softmax(K=args.K, N=args.N, rounding=args.rounding,
                              rows_per_cell=args.rows_per_cell, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    keys = ["mse", "max_abs", "argmax_agreement", "argmax_agreement_strict", "row_sum_error"]
    print(f"spiking softmax, K={args.K}, N={args.N}, rounding={args.rounding}")
    print(f"{'setting':>8} " + " ".join(f"{k:>24}" for k in keys))
    for setting in ("sigmoid", "max", "overall"):
        print(f"{setting:>8} " + " ".join(f"{result[setting][k]:>24.6g}" for k in keys))


def _plots(args):
    from .plots import write_plots
    for path in write_plots(Path(args.out)):
        print(path)


def _vit_digits(args):
    import torch
    from .digits_experiment import format_table, run_experiment, write_outputs
    spiking = {name: value for name, value in (("K", args.K), ("N", args.N)) if value is not None}
    if spiking and args.softmax == "exact":
        raise ValueError(f"--softmax exact takes no {' or '.join('--' + n for n in spiking)} "
                         f"(SI-exp steps and SI-norm spikes are settings of the spiking softmax)")
    if not args.quiet and not Path(args.checkpoint).exists():  # the bar shows only on a terminal
        print(f"no checkpoint at {args.checkpoint}: training the ViT (about 40 s)",
              file=sys.stderr, flush=True)
    torch.manual_seed(0)
    result = run_experiment(args.T, args.softmax, args.int, softmax_input=args.softmax_input,
                            checkpoint=args.checkpoint, limit=args.limit,
                            progress=not args.quiet and sys.stderr.isatty() or args.progress,
                            levels=args.levels, **spiking,
                            percentiles=(args.percentile, round(1 - args.percentile, 12)))
    files = write_outputs(result, Path(args.out))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        print("wrote " + ", ".join(str(f) for f in files))


def _upper_quantile(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if not 0.5 < p < 1:
        raise argparse.ArgumentTypeError(f"must be a number above 0.5 and below 1 (λn uses "
                                         f"1 - it), not {value!r}")
    return p


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m golden", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    q = sub.add_parser("neuron", help="run an IF or MT neuron on an input sequence")
    q.add_argument("neuron", choices=["if", "mt"], help="neuron model")
    q.add_argument("--x", required=True,
                   help="input per step: one real value (held for T steps) or T "
                        "comma-separated; write --x=-0.3,0.2 when the first is negative")
    q.add_argument("--T", type=int, default=8, help="time steps (default: 8)")
    q.add_argument("--width", type=int, default=16, help="input width in bits (default: 16)")
    q.add_argument("--frac", type=int, default=12, help="input fractional bits (default: 12)")
    q.add_argument("--threshold", type=float, help="IF threshold (default: 1.0)")
    q.add_argument("--lambda-pos", type=float, help="MT λp (default: 1.0)")
    q.add_argument("--lambda-neg", type=float, help="MT λn (default: 1.0)")
    q.add_argument("--levels", type=int, help="MT levels per sign (default: 4)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(run=_neuron)

    si = sub.add_parser("si-exp", help="train or evaluate SI-exp tables").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    q = si.add_parser("fit", help="train a table (CMA-ES + integer polish)")
    q.add_argument("--K", type=int, required=True, help="time steps")
    q.add_argument("--range", type=float, nargs=2, default=[-1.0, 1.0], metavar=("LO", "HI"),
                   help="input range the table covers (default: -1 1)")
    q.add_argument("--seed", type=int, default=0, help="seed of the search (default: 0)")
    q.add_argument("--restarts", type=int, help="CMA-ES restarts (default: the trainer's)")
    q.add_argument("--kicks", type=int,
                   help="iterated-local-search rounds on the integer tables (default: the "
                        "trainer's)")
    q.add_argument("-o", "--output", type=output_file,
                   help="table file (default: the shipped table's path)")
    q.add_argument("--target", choices=_TARGET_NAMES, default="exp",
                   help="function the table approximates (default: exp; the others need -o)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q.set_defaults(run=_si_exp_fit)
    q = si.add_parser("eval", help="measure a table's integer model against its target (exp for "
                                   "the shipped tables)")
    q.add_argument("--K", type=int, help="shipped table with K steps (default 12)")
    q.add_argument("--params", help="table file instead of a shipped table")
    q.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="range of the shipped table (default: -1 1); with --params, the "
                        "table's own range")
    q.add_argument("--points", type=int, default=10_000,
                   help="evenly spaced points of the range (default: 10000)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(run=_si_exp_eval)

    sm = sub.add_parser("softmax", help="evaluate the spiking softmax").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    q = sm.add_parser("eval", help="integer spiking softmax vs float softmax (golden.softmax_eval)")
    q.add_argument("--K", type=int, default=12,
                   help="SI-exp steps: 12 or 16, the K with a shipped table on both [-1, 1] and "
                        "[-8, 0] (default: 12)")
    q.add_argument("--N", type=int, default=256, help="SI-norm input spikes (default: 256)")
    q.add_argument("--rounding", choices=["round", "floor"], default="round",
                   help="SI-norm rounding: v_init = Vth // 2 (round) or 0 (floor) (default: round)")
    q.add_argument("--rows-per-cell", type=int, default=30,
                   help="rows per (length, scale) of the evaluation set (default: 30)")
    q.add_argument("--seed", type=int, default=0, help="seed of the evaluation set (default: 0)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(run=_softmax_eval)

    q = sub.add_parser("plots", help="PNG plots: SI-exp error vs K; spiking vs float softmax")
    q.add_argument("--out", default="build/plots", type=output_folder,
                   help="folder (default build/plots)")
    q.set_defaults(run=_plots)

    q = sub.add_parser("vit-digits", help="convert the digits ViT: accuracy vs t, energy")
    q.add_argument("--T", type=int, default=8, help="time steps (default 8)")
    q.add_argument("--softmax", choices=["exact", "spiking"], default="spiking",
                   help="attention softmax: exact (ECMT) or spiking (SIT; default)")
    q.add_argument("--softmax-input", choices=["max", "sigmoid"], default="max",
                   help="softmax input mapping (default: max subtraction; sigmoid maps the "
                        "scores through a sigmoid first, for either softmax)")
    q.add_argument("--int", action="store_true",
                   help="integer mode: the fixed-point operators of the hardware")
    q.add_argument("--K", type=int, help="SI-exp steps of the spiking softmax (default 12)")
    q.add_argument("--N", type=int,
                   help="SI-norm input spikes of the spiking softmax (default 256)")
    q.add_argument("--levels", type=int, default=8, help="MT levels per sign (default 8)")
    q.add_argument("--percentile", type=_upper_quantile, default=0.99,
                   help="λp calibration quantile; λn uses 1 - it (default 0.99)")
    q.add_argument("--checkpoint", default=".cache/vit_digits.pt",
                   help="trained ViT; trained and saved there when missing (a file there "
                        "that is not this ViT's checkpoint is refused, not overwritten)")
    q.add_argument("--limit", type=int, help="only the first LIMIT test images")
    q.add_argument("--out", default="build/vit_digits", type=output_folder,
                   help="folder for JSON and PNG")
    q.add_argument("--json", action="store_true", help="print the JSON result")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.add_argument("--progress", action="store_true", help="progress bars even when piped")
    q.set_defaults(run=_vit_digits)
    return p


def main(argv=None) -> int:
    return run(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
