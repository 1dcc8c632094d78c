"""hwgen command line: cores and boards, Verilog, area and Fmax, bitstreams, energy.

    python -m hwgen cores
    python -m hwgen verilog if --param neurons=16 -o if16.v
    python -m hwgen report if --device up5k
    python -m hwgen boards
    python -m hwgen build [--board icebreaker] [--design if-selftest] [--out DIR]
    python -m hwgen energy attention --param head=digits [--measure] [--json FILE]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from golden.cli import (CommandError, Parser, check_output_folder, output_file, output_folder,
                        run, write_output)


def _cores(args):
    from .cores import CORES, core_parameters, make_core
    for name, cls in CORES.items():
        # The docstring's first paragraph, which may wrap over several lines.
        summary = " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())
        print(f"{name}: {cls.__name__} — {summary}")
        try:
            core = make_core(name)
        except ValueError as error:  # e.g. a default that needs a shipped table
            print(f"    defaults: cannot build ({error})")
        else:
            facts = [f"latency {core.latency} cycles", f"throughput {core.throughput:g} beats/cycle"]
            if hasattr(core, "membrane_format"):
                facts.append(f"membrane {core.membrane_format}")
            print(f"    defaults: {', '.join(facts)}")
        for p in core_parameters(name):
            print(f"    {p.name} = {p.default!r}: {p.doc}")


def _make(args):
    from .cores import make_core, parse_params
    return make_core(args.core, parse_params(args.core, args.param))


def _verilog(args):
    from .verilog import emit
    core = _make(args)
    text = emit(core, f"{args.core}_core" if args.name is None else args.name)
    if args.output:
        write_output(args.output, text)
        print(f"wrote {args.output}: latency {core.latency} cycles, throughput "
              f"{core.throughput:g} beats/cycle", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _report(args):
    from .report import report_core
    core = _make(args)
    result = report_core(core, args.device, name=f"{args.core}_core", seed=args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_output(args.json, text + "\n")


def _boards(args):
    from boards import BOARDS
    from .build import DESIGNS
    print("boards (build --board):")
    for name, board in BOARDS.items():
        print(f"  {name}: {board.device}, {board.clock_hz / 1e6:g} MHz clock")
    print("designs (build --design):")
    for name, design in DESIGNS.items():
        print(f"  {name}: {design.description}")


def _build(args):
    from .build import build, default_out_dir
    # The default folder is checked as an explicit --out is, before any work.
    out = check_output_folder(args.out if args.out is not None else
                              default_out_dir(args.board, args.design))
    result = build(args.board, args.design, out, seed=args.seed)
    print(json.dumps(result, indent=2))
    if not result["meets_clock"] and not args.timing_allow_fail:
        raise CommandError(f"Fmax {result['fmax_mhz']} MHz is below the board's "
                           f"{result['clock_mhz']:g} MHz clock: {out / result['bitstream']['file']}"
                           f" is written but may not work (--timing-allow-fail accepts it)")


def _energy(args):
    from .energy import ENERGY_CORES, energy_table, format_markdown, measure_head
    if args.core not in ENERGY_CORES:
        raise ValueError(f"energy: core must be one of {', '.join(ENERGY_CORES)} (the cores "
                         f"with an energy model), not {args.core!r}")
    core = _make(args)
    measurement, cycles = None, None
    if args.measure:
        print("energy: running one head in the Amaranth simulator", file=sys.stderr, flush=True)
        measurement = measure_head(core, density=args.density, seed=args.seed)
        if not measurement["outputs_match"]:
            raise SystemExit("error: the core's outputs differ from "
                             "golden.attention.attention_head in the measurement run")
        gaps = measurement["cycles_per_step"]
        cycles = sum(gaps) / len(gaps) if gaps else None
    table = energy_table(core, cycles, density=args.density, seed=args.seed)
    if measurement is not None:
        table["measurement"] = measurement
    params = " ".join(args.param)
    print(format_markdown(table, title=f"{args.core} {params}".strip()), end="")
    if args.json:
        write_output(args.json, json.dumps(table, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m hwgen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("cores", help="list the cores, their parameters and defaults").set_defaults(
        run=_cores)

    def core_args(q, core_help="core name (see `cores`)"):
        q.add_argument("core", help=core_help)
        q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="core parameter, typed as its default in `cores` (integer, number, "
                            "true/false, text, or none); repeatable")

    q = sub.add_parser("verilog", help="emit a core's Verilog")
    core_args(q)
    q.add_argument("-o", "--output", type=output_file,
                   help="file to write (default: standard output)")
    q.add_argument("--name", help="Verilog module name (default: CORE_core)")
    q.set_defaults(run=_verilog)

    q = sub.add_parser("report", help="synthesise a bare core and print area and Fmax as JSON")
    core_args(q)
    from boards import BOARDS, DEVICES  # light: --help needs neither torch nor the cores
    q.add_argument("--device", default="up5k",
                   help=f"target device: {', '.join(DEVICES)} (default: up5k)")
    q.add_argument("--seed", type=int, default=1, help="placer seed (default: 1)")
    q.add_argument("--json", metavar="FILE", type=output_file, help="also write the JSON to FILE")
    q.set_defaults(run=_report)

    sub.add_parser("boards", help="list the supported boards and the designs `build` makes"
                   ).set_defaults(run=_boards)

    q = sub.add_parser("build", help="build a board bitstream with a self-testing design")
    q.add_argument("--board", default="icebreaker",
                   help=f"board: {', '.join(BOARDS)} (default: icebreaker)")
    q.add_argument("--design", default="if-selftest",
                   help="design to self-test on the board, listed by `boards` "
                        "(default: if-selftest)")
    q.add_argument("--out", type=output_folder, help="output folder (default: build/BOARD-DESIGN)")
    q.add_argument("--seed", type=int, default=1, help="placer seed (default: 1)")
    q.add_argument("--timing-allow-fail", action="store_true",
                   help="exit with status 0 even when Fmax is below the board clock (the "
                        "bitstream is written either way)")
    q.set_defaults(run=_build)

    q = sub.add_parser("energy", help="energy per head-step of the attention core beside the "
                                      "ANN, SIT and ECMT op-count models (markdown, JSON)")
    core_args(q, "core name: attention, the one core with an energy model")
    q.add_argument("--density", type=float, default=0.5,
                   help="fire probability of the random codes the SIT and ECMT models count "
                        "(default: 0.5)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random codes (default: 0)")
    q.add_argument("--measure", action="store_true",
                   help="measure the cycles per step by running one head in the Amaranth "
                        "simulator (seconds for the default head, about 30 s for digits)")
    q.add_argument("--json", metavar="FILE", type=output_file,
                   help="also write the table as JSON to FILE")
    q.set_defaults(run=_energy)
    return p


def main(argv=None) -> int:
    return run(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
