"""The benchmark scripts refuse bad options before any place-and-route or training starts."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, argv, message", [
    ("neuron_cores.py", ["--devices", "up5k", "foo"], "argument --devices: invalid choice: 'foo'"),
    ("spiking_softmax.py", ["--seeds", "1", "-1"],
     "argument --seeds: placer seeds are integers from 0 to 2147483647, not '-1'"),
    ("neuron_cores.py", ["--seeds", "1", "2", "1", "2"],
     "argument --seeds: repeats 1, 2; give each once"),
    ("attention.py", ["--seeds", "3", "3"], "argument --seeds: repeats 3; give each once"),
    ("attention.py", ["--lanes", "1", "2", "1"], "argument --lanes: repeats 1; give each once"),
    ("neuron_cores.py", ["--devices", "up5k", "up5k"],
     "argument --devices: repeats up5k; give each once"),
    ("vit_digits_seeds.py", ["--seeds", "0", str(2**63)],
     "--seeds must be distinct integers from 0 to 2**63 - 1, not [0, 9223372036854775808]"),
    ("attention.py", ["--lanes", "1", "17"],
     "--lanes must be from 1 to the digits head's dimension 16, not 17"),
    ("attention.py", ["--sweep-device", "ice40"], "argument --sweep-device: invalid choice"),
    ("vit_digits_settings.py", ["--T", "0"], "--T must be from 1 to 65536, not 0"),
])
def test_bad_options_are_refused_at_once(script, argv, message, tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(out), *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr.splitlines()[-1]
    assert not out.exists()
