"""Benchmark of the neuron cores: area and Fmax, simulation and golden-model throughput.

    .venv/bin/python benchmarks/neuron_cores.py [--out build/benchmarks/neuron_cores.json]
        [--devices up5k ecp5-25f] [--seeds 1 2 3] [--skip-pnr]

Prints a table and writes JSON. Not a test: figures depend on the machine (placer results vary
with the seed, timings with load), so it reports the median over seeds and the ratios measured
in one run. Targets (issue 2) for the default IF core: Fmax >= 60 MHz on up5k and >= 150 MHz on
ecp5-25f, zero DSPs.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import record  # puts the repository on sys.path; the shared command line and record

from golden.if_neuron import if_neuron, if_neuron_float  # noqa: E402
from golden.mt_neuron import mt_neuron, mt_neuron_float  # noqa: E402
from hwgen.cores import make_core  # noqa: E402

TARGETS = {("if", "up5k"): 60.0, ("if", "ecp5-25f"): 150.0}


def area_and_fmax(cores, devices, seeds, targets=TARGETS):
    """Median Fmax over placer seeds and core-alone resources for each (name, params) core."""
    from hwgen.report import report_core
    rows = []
    for core_name, params in cores:
        for device in devices:
            runs = [report_core(make_core(core_name, params), device, name=f"{core_name}_core",
                                seed=s) for s in seeds]
            fmax = [r["wrapper_place_and_route"]["fmax_mhz"] for r in runs]
            row = {
                "core": core_name, "params": params, "device": device, "seeds": list(seeds),
                "fmax_mhz_median": statistics.median(fmax), "fmax_mhz_all": fmax,
                "core_resources": runs[0]["core_synthesis"],
                "wrapper_utilisation": runs[0]["wrapper_place_and_route"]["utilisation"],
            }
            target = targets.get((core_name, device))
            if target is not None:
                row["fmax_target_mhz"] = target
                row["meets_target"] = row["fmax_mhz_median"] >= target
            rows.append(row)
            res = row["core_resources"]
            print(f"{core_name:>8} {device:>9}: Fmax {row['fmax_mhz_median']:7.1f} MHz "
                  f"(seeds {', '.join(f'{f:.1f}' for f in fmax)})"
                  + (f", target {target:g}" if target else "")
                  + f"; LUT {res['luts']} FF {res['flip_flops']} carry {res['carry']} "
                    f"RAM {res['ram_blocks']} LUT-RAM {res['distributed_ram']} DSP {res['dsp']}",
                  flush=True)
    return rows


def simulation_throughput():
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")  # keep the table readable
    from sim.neuron_check import check_neuron_core
    from sim.runner import verilator_model
    rows = []
    for core_name in ("if", "mt"):
        core = make_core(core_name)
        name = f"{core_name}_default"
        start = time.perf_counter()
        verilator_model(core, name)  # build (or reuse the cached model) outside the timing
        build_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            result = check_neuron_core(core, name, Path(work), min_updates=10_000, seed=3)
            elapsed = time.perf_counter() - start
        rows.append({"core": core_name, "vectors_checked": result.updates_checked,
                     "cycles": result.cycles, "seconds": elapsed, "build_or_cache_s": build_s,
                     "vectors_per_s": result.updates_checked / elapsed,
                     "cycles_per_s": result.cycles / elapsed})
        print(f"{core_name:>3} cocotb+Verilator: {rows[-1]['vectors_per_s']:,.0f} checked "
              f"vectors/s, {rows[-1]['cycles_per_s']:,.0f} cycles/s "
              f"({result.updates_checked} vectors in {elapsed:.1f} s)", flush=True)
    return rows


def golden_throughput(T=32, neurons=1 << 16, repeats=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-(1 << 15), 1 << 15, (T, neurons), generator=g)
    xf = x.to(torch.float64) / 4096
    cases = {
        "if_int": lambda: if_neuron(x, 4096),
        "if_float": lambda: if_neuron_float(xf, 1.0),
        "mt_int": lambda: mt_neuron(x, 64, 48, 8),
        "mt_float": lambda: mt_neuron_float(xf, 64 / 4096, 48 / 4096, 8),
    }
    rows = []
    for name, fn in cases.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best = min(times)
        rows.append({"model": name, "updates": T * neurons, "seconds_best": best,
                     "updates_per_s": T * neurons / best, "torch_threads": torch.get_num_threads()})
        print(f"golden {name:>8}: {T * neurons / best / 1e6:8.1f} M neuron updates/s", flush=True)
    return rows


def main(argv=None):
    p = record.parser(__file__, __doc__)
    p.add_argument("--devices", nargs="+", default=["up5k", "ecp5-25f"],
                   help="devices for area and Fmax")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="placer seeds")
    p.add_argument("--skip-pnr", action="store_true", help="skip synthesis and place-and-route")
    args = p.parse_args(argv)
    result = {}
    if not args.skip_pnr:
        result["area_fmax"] = area_and_fmax([("if", {}), ("mt", {})], args.devices, args.seeds)
    result["simulation"] = simulation_throughput()
    result["golden"] = golden_throughput()
    record.write(p, args, argv, result)


if __name__ == "__main__":
    main()
