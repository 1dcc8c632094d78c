"""Bit-exact regressions of the emitted Verilog (Verilator via cocotb) against the golden model.

Per parameter set: edge-case samples plus at least 10,000 random neuron updates, run under
random valid/ready stalls, without stalls (cycles per update measured), cut by a reset in
mid-sample, and again under heavy back-pressure, with the overflow flag down on every beat;
then samples longer than time_steps that overflow (the flag must rise exactly with golden's
first update outside the membrane format, outputs exact before it), a reset, and samples
within time_steps with the flag down again (see sim/neuron_check.py). Measured cycle counts
are written to build/sim/<name>.json.
"""

import json
from pathlib import Path

import pytest

from hwgen.cores import make_core
from sim.neuron_check import check_neuron_core

REPO = Path(__file__).resolve().parents[1]

PARAMETER_SETS = {
    # One neuron: the core must insert bubbles (throughput 1/4) to respect its recurrence.
    "if_small": ("if", dict(neurons=1, width=4, frac=0, threshold=3, time_steps=8)),
    "if_default": ("if", {}),
    "if_wide": ("if", dict(neurons=256, width=24, frac=16, threshold=3 << 15, time_steps=64,
                           v_init=0)),
    # Two neurons with a 6-cycle recurrence: throughput 1/3.
    "mt_small": ("mt", dict(neurons=2, width=5, frac=0, lambda_pos=1, lambda_neg=2, levels=2,
                            time_steps=8)),
    "mt_default": ("mt", {}),
    "mt_wide": ("mt", dict(neurons=128, width=24, frac=16, lambda_pos=1000, lambda_neg=777,
                           levels=12, time_steps=64)),
    # levels = 1 and lambda_neg = 2**3 for a 3-bit membrane: the reset can leave the format
    # (-4 + 8 = 4), so the core also tests the membrane after the reset, one bit wider.
    "mt_reset_wraps": ("mt", dict(neurons=3, width=2, frac=0, lambda_pos=1, lambda_neg=8,
                                  levels=1, time_steps=1)),
}


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_bit_exact(name, tmp_path):
    core_name, params = PARAMETER_SETS[name]
    core = make_core(core_name, params)
    result = check_neuron_core(core, name, tmp_path, min_updates=10_000, seed=1)
    assert result.updates_checked >= 20_000
    # Measured without stalls: exactly the documented throughput.
    assert result.cycles_per_update == pytest.approx(1 / core.throughput, abs=0.01)
    # The overlong samples did overflow (so the flag's rise was checked), after time_steps.
    assert result.overlong_steps > core.config.time_steps
    assert result.overflow_beat is not None
    assert result.overflow_beat // core.neurons >= core.config.time_steps
    out = REPO / "build" / "sim" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"core": core_name, "params": params,
                               "membrane_width": core.membrane_format.width,
                               "latency": core.latency,
                               **result.__dict__}, indent=2))
