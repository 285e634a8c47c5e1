"""The top-level ``correctnet`` command: version, help, and one-line errors."""

import subprocess
import sys

import pytest

from correctnet import __version__
from correctnet.cli import COMMAND_MODULES, main


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_registered_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert name in out


def test_no_command_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "usage: correctnet" in capsys.readouterr().out


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "correctnet", "--version"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == f"correctnet {__version__}"


def test_unknown_command_exits_non_zero_without_traceback():
    done = subprocess.run([sys.executable, "-m", "correctnet", "no-such-command"],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("parse, good, bad", [
    ("positive_int", [("1", 1), ("250", 250)], ["0", "-3", "1.5", "x"]),
    ("nonneg_int", [("0", 0), ("7", 7)], ["-1", "nan", ""]),
    ("nonneg_float", [("0", 0.0), ("0.5", 0.5)], ["-0.1", "inf", "nan", "x"]),
    ("positive_float", [("1e-3", 1e-3)], ["0", "-1", "inf"]),
])
def test_argument_types_accept_valid_and_reject_invalid_values(parse, good, bad):
    import argparse

    from correctnet.commands import argtypes

    fn = getattr(argtypes, parse)
    for text, value in good:
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            fn(text)
