"""Validated inputs and one clear line for every bad argument (issue 10).

Each test below failed before the change it covers: wrong label shapes gave accuracies
above 1, NaN logits were reported as an accuracy, bad option values gave tracebacks or the
usage block, and concurrent CSV exports collided on one temporary file.
"""

import math
import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mapping
import xbar
from correctnet.workloads.checkpoint import save_checkpoint
from correctnet.cli import main
from correctnet.commands.compensate import check_plan_fits, resolve_plan
from correctnet.commands.simulate import parse_bits
from correctnet.commands.sweep import parse_sigmas
from correctnet.sweep.run import run_sweep
from correctnet.compensation.modules import PlanError
from correctnet.errors import UsageError
from correctnet.training.lipschitz import lipschitz_lambda
from correctnet.workloads.models import build_model
from correctnet.sweep.store import CSV_COLUMNS, export_csv
from correctnet.training.train import TrainConfig
from mapping.errors import DataError, NumericalError

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "correctnet", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)


def _one_line_error(capsys, code, needle):
    """``code`` is 2 and stderr is one line containing ``needle`` (no usage block).

    Returns:
        ``(stderr, stdout)`` as captured.
    """
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "usage:" not in err, err
    assert needle in err, err
    return err, captured.out


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:         # argparse errors exit from inside parse_args
        return exc.code


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """An untrained LeNet-5 checkpoint (no training needed for argument checks)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, build_model("lenet5", num_classes=10, in_channels=1, input_size=28),
                    {"model": "lenet5", "dataset": "fashion-mnist", "num_classes": 10,
                     "in_channels": 1, "input_size": 28})
    return path


def _tiny(config=None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(36, 5))
    return net, mapping.convert_to_crossbar(net, config or xbar.XbarConfig())


# ----------------------------------------------------------------- item 2: data validation
def test_labels_and_inputs_are_validated_once():
    net, analog = _tiny()
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 5, (20,))
    cases = [([(x, y[:, None])], "labels must be a 1-D integer tensor", "view(-1)"),
             ([(x, nn.functional.one_hot(y, 5).float())], "shape (N,)", "argmax(1)"),
             ([(x, y.float())], "integer", "float32"),
             ([(torch.randn(20, 1, 10, 10), y)], "do not fit the model", "(1, 10, 10)"),
             ([(x.to(torch.uint8), y)], "floating-point", "uint8"),
             ([(x, y + 5)], "out of range", "5 classes"),
             ([(x, y), (torch.randn(4, 1, 9, 9), y[:4])], "every batch must match", "(1, 9, 9)")]
    for data, first, second in cases:
        for run in (lambda d: mapping.evaluate_accuracy(net, d),
                    lambda d: mapping.run_monte_carlo(analog, d, samples=1, progress=False)):
            with pytest.raises(DataError) as exc:
                run(data)
            assert first in str(exc.value) and second in str(exc.value), str(exc.value)
    for seed in (-1, 1.5, True):
        with pytest.raises(DataError, match="seed must be an int >= 0"):
            mapping.run_monte_carlo(analog, [(x, y)], samples=1, seed=seed, progress=False)
    ok = mapping.run_monte_carlo(analog, [(x, y)], samples=2, progress=False)
    assert 0.0 <= ok.mean <= 1.0


# ------------------------------------------------- item 5 (Monte-Carlo): NaN is not a result
def test_monte_carlo_refuses_non_finite_outputs():
    huge = xbar.XbarConfig(device=xbar.DeviceConfig(sigma=30.0), adc=xbar.ADCConfig(bits=None))
    _, analog = _tiny(huge)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 5, (20,))
    for backend in ("numba", "torch"):
        mapping.set_backend(analog, backend)
        with pytest.raises(NumericalError, match="NaN/inf"):
            mapping.run_monte_carlo(analog, [(x, y)], samples=2, progress=False)
    nan_net = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with torch.no_grad():
        nan_net[1].weight[0, 0] = math.nan
    with pytest.raises(NumericalError):
        mapping.evaluate_accuracy(nan_net, [(x, y)])


def test_simulate_sigma_30_reports_no_accuracy(lenet, capsys):
    code = main(["simulate", "--checkpoint", str(lenet), "--sigma", "30", "--samples", "2",
                 "--limit", "32", "--json"])                 # --json: no progress bar
    err, out = _one_line_error(capsys, code, "NaN/inf")
    assert "Traceback" not in err and out == ""


# ----------------------------------------------------------------- item 6: float32 cast
def test_crossbar_checks_finiteness_after_the_float32_cast():
    with pytest.raises(xbar.InputError, match="float32"):
        xbar.TiledCrossbar(np.array([[1e300, 1.0]]))
    xb = xbar.TiledCrossbar(np.ones((1, 2)), xbar.XbarConfig.ideal())
    xb.program_ideal()
    with pytest.raises(xbar.InputError, match="float32"):
        xb.matmul(np.array([1e300, 1.0]))
    with pytest.raises(xbar.InputError, match="overflows float32"):
        xb.matmul(np.array([3e38, 3e38]))        # each finite, the sum is not


# ----------------------------------------------------------------- item 3: --plan
def test_plan_names_checked_before_ratios_and_useless_plans_refused():
    layers = ["features.conv1", "features.conv2", "classifier.fc3"]
    assert resolve_plan("conv2=0.5,fc3=0", layers) == {"features.conv2": 0.5}
    for text, needle in [("conv9=-1", "unknown"), ("conv9=abc", "unknown"),
                         ("conv2=-1", ">= 0"), ("conv2=nan", ">= 0"), ("conv2=x", ">= 0"),
                         ("", "empty"), (" , ", "empty"), ("conv2=0,fc3=0", "no layer"),
                         ("conv2", "LAYER=RATIO")]:
        with pytest.raises(PlanError, match=needle):
            resolve_plan(text, layers)


@pytest.mark.parametrize("plan,needle", [("conv2=-1", ">= 0"), ("conv9=-1", "unknown"),
                                         ("", "empty"), ("conv2=0", "no layer"),
                                         ("conv2=1e9", "GB")])
def test_compensate_bad_plans_exit_2_before_any_work(lenet, tmp_path, plan, needle, capsys):
    code = main(["compensate", "--checkpoint", str(lenet), "--plan", plan, "--out",
                 str(tmp_path / "c")])
    _one_line_error(capsys, code, needle)
    out = tmp_path / "c"          # --out is checked (created) first; nothing is written in it
    assert not out.exists() or list(out.iterdir()) == []


def test_check_plan_fits_counts_training_bytes():
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    check_plan_fits(model, {"features.conv2": 1.0}, memory=10**7)
    with pytest.raises(PlanError, match="GB"):
        check_plan_fits(model, {"features.conv2": 1.0}, memory=10**3)


# ------------------------------------------------------ item 8: values that used to crash
@pytest.mark.parametrize("text", ["0:nan:0.1", "nan:1:0.1", "0:inf:0.1", "0:1e308:1e-308",
                                  "0:1:inf", "inf", "nan", ",".join(["0.1"] * 1001)])
def test_sweep_sigma_ranges_refused(text):
    with pytest.raises(UsageError, match="--sigma"):
        parse_sigmas(text)


def test_sweep_bad_sigma_is_one_line(lenet, tmp_path, capsys):
    for text in ("0:nan:0.1", "0:inf:0.1", "0:1e308:1e-308"):
        code = main(["sweep", "--checkpoint", str(lenet), "--sigma", text, "--out",
                     str(tmp_path)])
        _one_line_error(capsys, code, "--sigma")


def test_lipschitz_lambda_never_overflows():
    assert lipschitz_lambda(0.5) == pytest.approx(0.3395758636618273, rel=1e-12)
    assert 0.0 < lipschitz_lambda(26.0) < 1e-290 and lipschitz_lambda(30.0) == 0.0
    lams = [lipschitz_lambda(s) for s in np.linspace(0.0, 40.0, 401)]
    assert all(a >= b for a, b in zip(lams, lams[1:]))     # decreasing, through the switch
    assert TrainConfig(sigma=30.0).lam == 0.0                # plain training does not care
    with pytest.raises(UsageError, match="train.sigma"):
        TrainConfig(method="lipschitz", sigma=30.0)


@pytest.mark.parametrize("argv,needle", [
    (["train", "--method", "lipschitz", "--sigma", "30"], "train.sigma"),
    (["train", "--lr", "1e300"], "--lr"),
    (["train", "--method", "lipschitz", "--beta", "1e300"], "--beta"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--device", "tpu"], "--device"),
    (["compensate", "--plan", "conv2=1", "--device", "tpu"], "--device"),
    (["compensate", "--plan", "conv2=1", "--seed", "-1"], "--seed"),
    (["compensate", "--plan", "conv2=1", "--lr", "-1"], "--lr"),
])
def test_bad_values_are_one_line_exit_2(lenet, tmp_path, argv, needle, capsys):
    where = ["--out", str(tmp_path / "o")] if argv[0] == "train" else [
        "--checkpoint", str(lenet)]
    code = _exit_code(argv + where + ["--data-dir", str(tmp_path / "no-data")])
    _one_line_error(capsys, code, needle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "compensate"])
def test_cuda_without_cuda_is_one_line(lenet, tmp_path, command, capsys):
    argv = ([command, "--out", str(tmp_path)] if command == "train" else
            [command, "--checkpoint", str(lenet), "--plan", "conv2=1"])
    _one_line_error(capsys, _exit_code(argv + ["--device", "cuda"]), "CUDA is not available")


# ------------------------------------------------------------- item 9: concurrent export
def _export_many(args):
    path, n, tag = args
    rows = [{c: f"{tag}-{i}" for c in CSV_COLUMNS} for i in range(20)]
    for _ in range(n):
        export_csv(rows, path)
    return n


def test_export_csv_concurrent_writers(tmp_path):
    path = tmp_path / "sweep.csv"
    errors = []

    def threaded(tag):
        try:
            _export_many((path, 40, tag))
        except Exception as exc:          # collected: an exception in a thread is silent
            errors.append(exc)

    threads = [threading.Thread(target=threaded, args=(f"t{i}",)) for i in range(4)]
    with ProcessPoolExecutor(3) as pool:
        futures = [pool.submit(_export_many, (path, 40, f"p{i}")) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(f.result() for f in futures) == 120
    assert errors == []
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 21
    assert len({line.split(",")[0].split("-")[0] for line in lines[1:]}) == 1   # one writer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv"]           # no temps


# ----------------------------------------------------------------- item 11: converter bits
def test_converter_bits_one_range_at_parse_time(lenet, tmp_path, capsys):
    assert parse_bits("2") == 2 and parse_bits("24") == 24 and parse_bits("none") is None
    for bad in ("1", "25", "32", "-3", "x"):
        with pytest.raises(Exception, match=r"2\.\.24"):
            parse_bits(bad)
    for flag in ("--adc-bits", "--dac-bits"):
        out = tmp_path / flag
        code = _exit_code(["sweep", "--checkpoint", str(lenet), "--sigma", "0.1", flag, "32",
                           "--out", str(out)])
        _one_line_error(capsys, code, f"argument {flag}")
        assert not out.exists()
    with pytest.raises(xbar.ConfigError, match="adc.bits"):      # the API: before sweep.db
        run_sweep([lenet], [0.1], [128], tmp_path / "api", adc_bits=30, progress=False)
    assert not (tmp_path / "api" / "sweep.db").exists()


# ----------------------------------------------------------------- item 15: one line
def test_argument_errors_are_one_line_and_help_prints_usage():
    done = _cli("train", "--lr", "abc", "--out", "/tmp/unused")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "correctnet train: error: argument --lr: expected a finite number > 0 and <= 3.4e+38, "
        "got 'abc' (see correctnet train --help)"]
    assert _cli("simulate").stderr.count("\n") == 1           # missing required option
    assert _cli("nosuchcommand").stderr.count("\n") == 1
    helped = _cli("train", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: correctnet train")
