"""golden command line: run the integer neuron models (and their float twins) on inputs.

    python -m golden neuron if --x 0.3 --T 8
    python -m golden neuron mt --x 1.4 --T 6 --lambda-pos 1 --lambda-neg 1 --levels 3 --json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from .fixed import Format
from .if_neuron import IFConfig, if_neuron, if_neuron_float
from .mt_neuron import MTConfig, mt_decode, mt_neuron, mt_neuron_float


def _inputs(args, fmt: Format) -> tuple[torch.Tensor, torch.Tensor]:
    values = [float(v) for v in args.x.split(",")]
    if len(values) == 1:
        values = values * args.T
    elif len(values) != args.T:
        raise ValueError(f"--x has {len(values)} values; give one (held for --T steps) or "
                         f"exactly --T = {args.T}")
    real = torch.tensor(values, dtype=torch.float64)
    for v in values:
        fmt.quantise_scalar("--x", v)  # refuse values the format cannot hold
    return real, fmt.quantise(real)


def _neuron(args):
    fmt = Format(args.width, args.frac)
    real, x = _inputs(args, fmt)
    if args.neuron == "if":
        threshold = fmt.quantise_scalar("--threshold", args.threshold)
        config = IFConfig(fmt, threshold, args.T)
        ints = if_neuron(x, threshold).spikes
        floats = if_neuron_float(real, args.threshold).spikes
        values = ints.to(torch.float64) * args.threshold
    else:
        lp = fmt.quantise_scalar("--lambda-pos", args.lambda_pos)
        ln = fmt.quantise_scalar("--lambda-neg", args.lambda_neg)
        config = MTConfig(fmt, lp, ln, args.levels, args.T)
        ints = mt_neuron(x, lp, ln, args.levels).codes
        floats = mt_neuron_float(real, args.lambda_pos, args.lambda_neg, args.levels).codes
        values = fmt.to_float(mt_decode(ints, lp, ln))
    result = {
        "neuron": args.neuron,
        "T": args.T,
        "input_format": str(fmt),
        "membrane_format": str(config.membrane_format),
        "x": real.tolist(),
        "x_quantised": fmt.to_float(x).tolist(),
        "integer_spikes": ints.tolist(),
        "float_spikes": [int(v) for v in floats.tolist()],
        "decoded_mean": float(values.sum() / args.T),
        "input_mean": float(real.mean()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>16}: {value}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m golden", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    q = sub.add_parser("neuron", help="run an IF or MT neuron on an input sequence")
    q.add_argument("neuron", choices=["if", "mt"])
    q.add_argument("--x", required=True,
                   help="input per step: one real value (held for T steps) or T comma-separated")
    q.add_argument("--T", type=int, default=8, help="time steps (default: 8)")
    q.add_argument("--width", type=int, default=16, help="input width in bits (default: 16)")
    q.add_argument("--frac", type=int, default=12, help="input fractional bits (default: 12)")
    q.add_argument("--threshold", type=float, default=1.0, help="IF threshold (default: 1.0)")
    q.add_argument("--lambda-pos", type=float, default=1.0, help="MT λp (default: 1.0)")
    q.add_argument("--lambda-neg", type=float, default=1.0, help="MT λn (default: 1.0)")
    q.add_argument("--levels", type=int, default=4, help="MT levels per sign (default: 4)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(run=_neuron)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
