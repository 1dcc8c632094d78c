"""Bit-exact regression of the emitted Verilog of the spiking attention head (Verilator via
cocotb) against :func:`golden.attention.attention_head`, and the digits ViT with every head on
Verilator against the golden integer model.

Per parameter set (sim/attention_check.py, ``parameter_sets``): at least 200 random heads of T
steps (densities 5 % to 100 %), all-zero and saturating heads, shorter heads, and for the
digits shapes the heads the trained digits ViT in integer mode actually computes (its real
q/k/v codes, with the HeadConfig of that layer). Heads run back to back restarting with
``first``, under random valid/ready stalls, with resets between some heads (the next head
sometimes without ``first``), two heads cut by a reset in mid-step, and a timed segment without
stalls. Every output beat is compared bit for bit (codes and ``last``). Measured figures
(cycles per step and latency, each asserted equal to the core's formula, heads, beats, wall
time) go to build/sim/attention_<set>.json and build/sim/attention_whole_model.json.
"""

import json
from pathlib import Path

import pytest

from sim.attention_check import (check_parameter_set, check_whole_model, max_cycles_per_step,
                                 parameter_sets)

REPO = Path(__file__).resolve().parents[1]
RANDOM_HEADS = 200  # per parameter set, each of time_steps steps
IMAGES = 50  # test images of the whole-model check
WHOLE_MODEL_LANES = 4


def record(name: str, result: dict) -> None:
    out = REPO / "build" / "sim" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


@pytest.mark.parametrize("name", parameter_sets())
def test_attention_bit_exact(name, tmp_path):
    result, figures = check_parameter_set(name, tmp_path, heads=RANDOM_HEADS, seed=1)
    config = parameter_sets()[name].config()
    n, T = config.tokens, config.time_steps
    random_heads = sum(count for kind, count in result.heads.items()
                       if kind.startswith("random"))
    assert random_heads >= RANDOM_HEADS
    assert result.heads["saturating"] >= 4 and result.heads["all zero"] >= 1
    if parameter_sets()[name].digits_layer is not None:
        assert sum(count for kind, count in result.heads.items()
                   if kind.startswith("digits")) >= 32
    # Everything came out except what the two mid-step resets cut off.
    assert result.beats_checked >= (result.steps - 2 * T) * n
    assert result.resets["between heads"] >= 3 and result.resets["mid-step"] == 2
    assert result.resets["first=0 after a reset"] >= 1
    # Not vacuous: the golden outputs hold spikes of both signs.
    assert result.output_codes["positive"] > 0 and result.output_codes["negative"] > 0
    assert result.timing["cycles_per_step"]["max"] <= max_cycles_per_step(config)
    # Without stalls every step takes exactly the core's documented step_cycles(), and its
    # last output beat leaves exactly `latency` cycles after its first input beat.
    assert result.timing["cycles_per_step"]["equal"]
    assert result.timing["first_in_to_last_out"]["equal"]
    record(f"attention_{name}", figures)


def test_whole_digits_model_on_verilator_heads(tmp_path):
    """The integer digits ViT (T = 8) with every head's output codes from Verilator: the
    logits after every step equal the golden integer model's, bit for bit, for 50 images."""
    result = check_whole_model(IMAGES, tmp_path, lanes=WHOLE_MODEL_LANES, batch=IMAGES)
    assert result["logits_equal"] and result["mismatching_heads"] == 0
    assert result["images"] == IMAGES and result["heads"] == IMAGES * 2 * 4
    assert result["accuracy_golden"][-1] > 80.0  # a trained model, not noise
    record("attention_whole_model", result)


def test_digits_preset_is_the_models_first_head():
    """``AttentionHead(head="digits")`` (used by the reports and the up5k fit) is the head the
    converted digits ViT computes in its first block."""
    from hwgen.cores.attention import digits_head_config
    assert parameter_sets()["digits"].config() == digits_head_config()
