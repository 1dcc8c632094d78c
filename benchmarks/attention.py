"""Benchmark of the attention head core: the digits head on iCE40UP5K and the lanes sweep
(area vs cycles per step) on ECP5-25F.

    .venv/bin/python benchmarks/attention.py [--out build/benchmarks/attention.json]
        [--lanes 1 2 4 8 16] [--sweep-device ecp5-25f] [--seeds 1] [--skip-up5k]

Targets (issue 5): the digits ViT's head shape (n = 16, d_h = 16, T = 8, 8 levels) fits the
iCE40UP5K with Fmax >= 30 MHz and no DSPs; cycles per time step <= 2·n²·d_h / lanes
+ O(n·K + n·log2 N). Cycles per step are the core's exact schedule (``step_cycles()``, equal to
the Amaranth and Verilator measurements in tests/test_cores_attention_sim.py and
tests/test_cocotb_attention.py). Area and Fmax come from ``hwgen.report.report_core_over_seeds``:
the core alone through yosys, and the core inside the out-of-context wrapper through nextpnr (the
wrapper adds about one flip-flop per port bit: 433 in, 145 out for this head).
"""

from __future__ import annotations

import math
import statistics

import record  # puts the repository on sys.path; the shared command line and record
from area_fmax import Distinct, placer_seed

from boards import DEVICES  # noqa: E402
from hwgen.cores.attention import AttentionHead, digits_head_config  # noqa: E402
from hwgen.report import ToolError, report_core_over_seeds  # noqa: E402


def run(lanes: int, device: str, seeds: list[int]) -> list[dict]:
    """One row per placer seed: the digits head with ``lanes`` lanes on ``device``."""
    core = AttentionHead(head="digits", lanes=lanes)
    c = core.config
    n, d = c.tokens, c.head_dim
    common = {"lanes": lanes, "device": device, "step_cycles": core.step_cycles(),
              "target_main_term": 2 * n * n * d // lanes,
              "target_other_terms": n * c.table.K + n * int(math.log2(c.N))}
    try:
        reports = report_core_over_seeds(core, device, name="attention_core", seeds=seeds)
    except ToolError as failure:
        # Place and route failed (the core may not fit); synthesis figures survive if it got
        # that far.
        row = {**common, "seeds": seeds, "completed": False, "error": str(failure)}
        if hasattr(failure, "core_synthesis"):
            row.update(synthesis_flow=failure.synthesis_flow,
                       core_resources=failure.core_synthesis)
        rows = [row]
        core._MustUse__silence = True
    else:
        rows = []
        for r in reports:
            pnr = r["wrapper_place_and_route"]
            rows.append({**common, "seed": pnr["seed"], "completed": True,
                         "synthesis_flow": r["synthesis_flow"],
                         "core_resources": r["core_synthesis"],
                         "wrapper_utilisation": pnr["utilisation"], "fmax_mhz": pnr["fmax_mhz"],
                         "tools": r["tools"]})
    for row in rows:
        res = row.get("core_resources")
        resources = (f"LUT {res['luts']} FF {res['flip_flops']} carry {res['carry']} "
                     f"RAM {res['ram_blocks']} LUT-RAM {res['distributed_ram']} DSP {res['dsp']} "
                     f"({row['synthesis_flow']} flow)" if res else "no synthesis figures")
        print(f"attention digits lanes {lanes:>2} {device:>9}: {row['step_cycles']:>6} "
              f"cycles/step (2n²d/lanes {row['target_main_term']}); "
              + (f"seed {row['seed']}: Fmax {row['fmax_mhz']:.2f} MHz; {resources}"
                 if row["completed"]
                 else f"{resources}; no place and route: {row['error'].splitlines()[0]}"),
              flush=True)
    done = [row["fmax_mhz"] for row in rows if row["completed"]]
    if len(done) > 1:
        print(f"attention digits lanes {lanes:>2} {device:>9}: median Fmax "
              f"{statistics.median(done):.2f} MHz over seeds {', '.join(map(str, seeds))}",
              flush=True)
    return rows


def main(argv=None):
    p = record.parser(__file__, __doc__)
    p.add_argument("--lanes", nargs="+", type=int, default=[1, 2, 4, 8, 16], action=Distinct,
                   help="lane counts of the sweep")
    p.add_argument("--sweep-device", default="ecp5-25f", choices=list(DEVICES),
                   help="device of the lanes sweep")
    p.add_argument("--seeds", nargs="+", type=placer_seed, default=[1], action=Distinct,
                   help="placer seeds")
    p.add_argument("--skip-up5k", action="store_true",
                   help="skip place-and-route of the digits head on up5k")
    args = p.parse_args(argv)
    head_dim = digits_head_config().head_dim
    for lanes in args.lanes:  # every check before the first place-and-route
        if not 1 <= lanes <= head_dim:
            p.error(f"--lanes must be from 1 to the digits head's dimension {head_dim}, "
                    f"not {lanes}")
    result = {}
    if not args.skip_up5k:
        result["up5k_digits"] = run(1, "up5k", args.seeds)
    result["lanes_sweep"] = [row for lanes in args.lanes
                             for row in run(lanes, args.sweep_device, args.seeds)]
    record.write(p, args, argv, result)


if __name__ == "__main__":
    main()
