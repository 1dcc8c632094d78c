"""The digits-ViT experiment: training, conversion accuracy at T = 8, the command line.

The ViT is trained once per machine (about 40 s) into .cache/vit_digits.pt and reused."""

import json
import subprocess
import sys

import pytest
import torch

from golden.digits_experiment import run_experiment
from golden.vit_digits import (DEFAULT_CHECKPOINT, DigitsViT, ViTConfig, digits_split,
                                load_or_train)


def test_digits_split_is_fixed_and_stratified():
    x_tr, y_tr, x_te, y_te = digits_split()
    assert x_tr.shape == (1257, 64) and x_te.shape == (540, 64)
    assert float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    again = digits_split()
    assert torch.equal(again[3], y_te)
    counts = torch.bincount(y_te, minlength=10)
    assert int(counts.min()) >= 50


def test_patches_are_row_major_2x2_blocks():
    model = DigitsViT(ViTConfig())
    img = torch.arange(64.0).reshape(1, 64)
    p = model.patches(img)
    assert p.shape == (1, 16, 4)
    assert p[0, 0].tolist() == [0, 1, 8, 9] and p[0, 1].tolist() == [2, 3, 10, 11]
    assert p[0, 4].tolist() == [16, 17, 24, 25]


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "is not a digits-ViT checkpoint"),
    (None, "does not hold a digits ViT of this configuration"),
])
def test_a_file_that_is_not_this_checkpoint_is_refused_and_kept(content, message, tmp_path):
    path = tmp_path / "vit.pt"
    if content is None:  # a checkpoint of another configuration
        torch.save({"config": {"width": 3}, "state": {}, "info": {}}, path)
        content = path.read_bytes()
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_or_train(path, progress=False)
    assert path.read_bytes() == content
    assert list(tmp_path.iterdir()) == [path]  # no lock file left beside it
    with pytest.raises(ValueError, match=f"checkpoint {tmp_path} is a folder; give a file"):
        load_or_train(tmp_path, progress=False)
    assert list(tmp_path.parent.glob(tmp_path.name + ".lock")) == []


def test_a_file_beside_the_checkpoint_is_not_truncated(tmp_path):
    """The lock file is the checkpoint's name plus .lock, opened to append."""
    path, beside = tmp_path / "vit.pt", tmp_path / "vit.lock"
    path.write_bytes(b"not a checkpoint")
    beside.write_text("notes")
    with pytest.raises(ValueError, match="is not a digits-ViT checkpoint"):
        load_or_train(path, progress=False)
    assert beside.read_text() == "notes"
    with pytest.raises(ValueError, match="cannot use .*x.pt.lock beside it"):
        load_or_train(tmp_path / "vit.lock" / "x.pt", progress=False)


def test_output_names_carry_every_setting_off_its_default():
    from dataclasses import asdict

    from golden.digits_experiment import output_stem
    from golden.si_exp import SIExpTable, shipped_tables
    base = {"T": 8, "softmax": "spiking", "integer": True, "softmax_input": "max", "K": 12,
            "N": 256, "levels": 8, "percentiles": [0.99, 0.01], "rounding": "round",
            "act_frac": 10, "weight_frac": 10, "act_width": 32, "weight_width": 16,
            "fixed_lambdas": {"s": [0.0125, 0.0125]}, "table": None,
            "calibration_images": 1024, "limit": None,
            "model": {"config": asdict(ViTConfig())}}
    assert output_stem(base) == "vit_digits_T8_spiking_int"
    other = base | {"softmax_input": "sigmoid", "K": 16, "N": 64, "levels": 4,
                    "percentiles": [0.995, 0.005], "limit": 20, "rounding": "floor",
                    "act_frac": 12, "weight_frac": 8, "act_width": 24, "weight_width": 12,
                    "calibration_images": 300}
    assert output_stem(other) == ("vit_digits_T8_spiking_int_sigmoid_floor_K16_N64_levels4"
                                  "_af12_wf8_aw24_ww12_p0.995_0.005_cal300_limit20")
    assert output_stem(base | {"softmax": "exact", "K": None, "N": None}) == \
        "vit_digits_T8_exact_int"
    table = SIExpTable.load(shipped_tables()[0]).to_json()
    hashed = [output_stem(base | {"fixed_lambdas": {"s": [0.025, 0.025]}}),
              output_stem(base | {"fixed_lambdas": {"s": [0.0125, 0.0125], "fc2": [0.25, 0.08]}}),
              output_stem(base | {"table": table}),
              output_stem(base | {"model": {"config": asdict(ViTConfig(seed=1))}}),
              output_stem(base | {"checkpoint": "other/vit.pt"})]
    assert [stem.split("_")[-1].split("-")[0] for stem in hashed] == \
        ["lambdas", "lambdas", "table", "vit", "checkpoint"]
    assert output_stem(base | {"checkpoint": ".cache/vit_digits.pt"}) == output_stem(base)
    assert len(set(hashed)) == len(hashed)
    assert output_stem(base | {"table": table}) == hashed[2]  # the same value, the same name


def test_calibration_takes_exactly_the_images_asked_for():
    from golden.digits_experiment import calibration_batches
    x = torch.arange(1257.0).unsqueeze(1)
    for images in (1, 255, 256, 300, 1024, 1257, 5000):
        batches = calibration_batches(x, images)
        assert torch.equal(torch.cat(batches), x[:min(images, len(x))])
        assert all(len(b) <= 256 for b in batches)


@pytest.mark.parametrize("integer", [True, False])
def test_converted_vit_at_8_steps_is_within_2_points_of_the_ann(integer):
    r = run_experiment(T=8, softmax="spiking", integer=integer, progress=False)
    assert r["ann_accuracy"] > 90.0
    assert len(r["snn_accuracy"]) == 8
    assert abs(r["conversion_loss"][-1]) <= 2.0
    assert r["snn_accuracy"][-1] > r["snn_accuracy"][0]
    assert all(a < b for a, b in zip(r["energy_ratio"], r["energy_ratio"][1:]))
    assert 0 < r["energy_ratio"][-1] and r["sops"][-1] > 0


def test_vit_digits_command_writes_json_and_png(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "golden", "vit-digits", "--T", "3", "--int", "--limit", "60",
         "--json", "--quiet", "--out", str(out), "--checkpoint", str(DEFAULT_CHECKPOINT)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("ann_accuracy", "snn_accuracy", "energy_ratio", "conversion_loss", "sops",
                "spikes_per_neuron", "energy_ratio_ecmt"):
        assert key in result
    assert len(result["snn_accuracy"]) == 3 and result["test_images"] == 60
    assert (out / "vit_digits_T3_spiking_int_limit60.png").stat().st_size > 1000
    saved = json.loads((out / "vit_digits_T3_spiking_int_limit60.json").read_text())
    assert saved["snn_accuracy"] == result["snn_accuracy"]
