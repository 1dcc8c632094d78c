"""The two command lines: options are never guessed from abbreviations, and the Verilog module
name is checked before emission."""

import pytest

from golden.__main__ import main as golden_main
from hwgen.__main__ import main as hwgen_main


@pytest.mark.parametrize("main, argv", [
    (hwgen_main, ["verilog", "softmax", "--n", "0"]),  # would have been --name
    (golden_main, ["si-exp", "eval", "--K", "12", "--ran", "-1", "1"]),  # --range
])
def test_abbreviated_options_are_rejected(main, argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["0", "my core", "if-core", "if$2", ""])
def test_verilog_rejects_a_bad_module_name(name, capsys):
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "--name", name]) == 2
    assert f"not {name!r}" in capsys.readouterr().err


def test_verilog_writes_the_named_module(tmp_path):
    out = tmp_path / "if2.v"
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "--name", "if_2",
                       "-o", str(out)]) == 0
    assert "\nmodule if_2(" in out.read_text()
