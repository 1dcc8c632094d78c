"""Area and Fmax of cores for the benchmark scripts: ``hwgen.report.report_core_over_seeds``
(one synthesis, place and route per placer seed), the median Fmax set against a target, and
the command-line options that choose devices and seeds."""

from __future__ import annotations

import argparse
import statistics

import record  # noqa: F401 (puts the repository on sys.path)

from hwgen.cores import make_core  # noqa: E402
from boards import DEVICES  # noqa: E402
from hwgen.report import MAX_PLACER_SEED, report_core_over_seeds  # noqa: E402


def placer_seed(value: str) -> int:
    """``type=`` of a placer-seed option, with ``hwgen.report``'s range."""
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed <= MAX_PLACER_SEED:
        raise argparse.ArgumentTypeError(f"placer seeds are integers from 0 to "
                                         f"{MAX_PLACER_SEED}, not {value!r}")
    return seed


class Distinct(argparse.Action):
    """``action=`` of a ``nargs="+"`` option (seeds, devices, lanes): a value given twice is an
    error, not a second identical run."""

    def __call__(self, parser, namespace, values, option_string=None):
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise argparse.ArgumentError(self, f"repeats {', '.join(map(str, repeated))}; give "
                                               f"each once")
        setattr(namespace, self.dest, values)


def add_options(p) -> None:
    """``--devices``, ``--seeds`` and ``--skip-pnr`` on parser ``p``."""
    p.add_argument("--devices", nargs="+", default=["up5k", "ecp5-25f"], choices=list(DEVICES),
                   action=Distinct, help="devices for area and Fmax")
    p.add_argument("--seeds", nargs="+", type=placer_seed, default=[1, 2, 3],
                   action=Distinct,
                   help="placer seeds")
    p.add_argument("--skip-pnr", action="store_true", help="skip synthesis and place-and-route")


def measure(cores, devices, seeds, targets):
    """Median Fmax over placer ``seeds`` and core-alone resources for each (name, params) core
    on each device; ``targets`` maps (name, device) to the Fmax (MHz) the median must reach."""
    rows = []
    for core_name, params in cores:
        for device in devices:
            runs = report_core_over_seeds(make_core(core_name, params), device,
                                          name=f"{core_name}_core", seeds=seeds)
            fmax = [r["wrapper_place_and_route"]["fmax_mhz"] for r in runs]
            row = {
                "core": core_name, "params": params, "device": device, "seeds": list(seeds),
                "fmax_mhz_median": statistics.median(fmax), "fmax_mhz_all": fmax,
                "synthesis_flow": runs[0]["synthesis_flow"],
                "core_resources": runs[0]["core_synthesis"],
                "wrapper_utilisation": runs[0]["wrapper_place_and_route"]["utilisation"],
                "tools": runs[0]["tools"],
            }
            target = targets.get((core_name, device))
            if target is not None:
                row["fmax_target_mhz"] = target
                row["meets_target"] = row["fmax_mhz_median"] >= target
            rows.append(row)
            res = row["core_resources"]
            print(f"{core_name:>8} {device:>9}: Fmax {row['fmax_mhz_median']:7.2f} MHz "
                  f"(seeds {', '.join(f'{f:.2f}' for f in fmax)})"
                  + (f", target {target:g} ({'meets' if row['meets_target'] else 'MISSES'})"
                     if target else "")
                  + f"; LUT {res['luts']} FF {res['flip_flops']} carry {res['carry']} "
                    f"RAM {res['ram_blocks']} LUT-RAM {res['distributed_ram']} DSP {res['dsp']}",
                  flush=True)
    return rows
