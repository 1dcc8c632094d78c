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
import tempfile
import time
from pathlib import Path

import torch

import area_fmax
import record  # puts the repository on sys.path; the shared command line and record

from golden.if_neuron import if_neuron, if_neuron_float  # noqa: E402
from golden.mt_neuron import mt_neuron, mt_neuron_float  # noqa: E402
from hwgen.cores import make_core  # noqa: E402

TARGETS = {("if", "up5k"): 60.0, ("if", "ecp5-25f"): 150.0}


def simulation_throughput():
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")  # keep the table readable
    from sim.neuron_check import check_neuron_core, neuron_model
    rows = []
    for core_name in ("if", "mt"):
        core = make_core(core_name)
        name = f"{core_name}_default"
        start = time.perf_counter()
        neuron_model(core, name)  # build (or reuse the cached model) outside the timing
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
    area_fmax.add_options(p)
    args = p.parse_args(argv)
    result = {}
    if not args.skip_pnr:
        result["area_fmax"] = area_fmax.measure([("if", {}), ("mt", {})], args.devices,
                                               args.seeds, TARGETS)
    result["simulation"] = simulation_throughput()
    result["golden"] = golden_throughput()
    record.write(p, args, argv, result)


if __name__ == "__main__":
    main()
