"""The command line as a user meets it."""
import argparse
import subprocess
import sys

import pytest

from ecg_edge.cli import main


def _subcommands():
    import argparse

    from ecg_edge.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("cmd", sorted(_subcommands()))
def test_every_option_says_what_it_does_and_its_default(cmd, capsys):
    parser = _subcommands()[cmd]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help and len(action.help) > 10, f"{cmd} {action.option_strings[0]} has no help text"
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:  # every real default is printed
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.dest != "help":
            assert f"default: {action.default}" in out or "default" in action.help, (cmd, action.dest)


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ecg_edge", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "distil" in out.stdout


def test_stream_replay_prints_live_predictions(shared, bundle_dir, capsys):
    rec = shared / "data" / "cinc2017" / "training2017" / "A00009"  # atrial fibrillation
    assert main(["stream", "--replay", str(rec), "--speed", "0", "--bundle", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if " s  " in l and "quality" in l]
    assert len(lines) >= 3 and all("detected" in l for l in lines)
    # AF is reported with its probability and the card's threshold
    assert any("detected: ATRIAL FIBRILLATION" in l and ">=" in l for l in lines)
    assert "| end_to_end |" in out


def test_stream_needs_a_source():
    with pytest.raises(SystemExit, match="ADDRESS"):
        main(["stream"])


def test_named_errors_become_clear_messages(tmp_path, capsys):
    assert main(["stream", "--replay", str(tmp_path / "missing"), "--bundle", str(tmp_path)]) == 2
    assert "WFDB header" in capsys.readouterr().err
    assert main(["quantize", "--student", str(tmp_path / "none.pth"), "--limit", "5", "--no-tflite",
                 "--out", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["distill", "--labels", ""], ["distill", "--out", " "], ["stream", "--replay", ""],
                                  ["quantize", "--float-ops", ""]])
def test_an_empty_option_value_is_refused_not_read_as_absent(argv, capsys):
    """--labels "" used to mean every teacher output, --out "" a new run folder."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and (f"empty value for {argv[-2]}" in err or f"argument {argv[-2]}: empty" in err), err
