"""End-to-end tests of `correctnet train`, `simulate` and `sweep` on a Fashion-MNIST subset."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from correctnet.cli import main
from correctnet.commands.sweep import parse_sigmas, parse_tiles
from correctnet.sweep.run import checkpoint_labels
from correctnet.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]



def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "correctnet", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    code = main(["train", "--epochs", "1", "--limit", "512", "--batch-size", "64",
                 "--out", str(out / "plain")])
    assert code == 0
    return out / "plain" / "checkpoint.pt"


@pytest.mark.parametrize("command", ["train", "simulate", "sweep"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"correctnet {command}" in out


def test_train_writes_checkpoints_and_resumes(trained, capsys):
    out = trained.parent
    assert trained.is_file() and (out / "checkpoint-epoch001.pt").is_file()
    meta = torch.load(trained, weights_only=True)["meta"]
    assert meta["model"] == "lenet5" and meta["epoch"] == 1 and meta["limit"] == 512
    assert 0.0 <= meta["test_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    # resume of a finished run: nothing to train, prints the stored accuracy
    assert main(["train", "--epochs", "1", "--limit", "512", "--batch-size", "64",
                 "--out", str(out), "--resume"]) == 0
    assert f"{100 * meta['test_accuracy']:.2f}%" in capsys.readouterr().out
    # resuming another model from this checkpoint: one clear line
    assert main(["train", "--model", "vgg16", "--epochs", "2", "--limit", "64",
                 "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("correctnet: error:") and "\n" not in err and "resume" in err
    assert "model 'lenet5'" in err


def test_simulate_text_and_json(trained, capsys):
    args = ["simulate", "--checkpoint", str(trained), "--sigma", "0.5", "--tile", "64",
            "--samples", "3", "--limit", "128"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "clean accuracy" in text and "+-" in text and "total" in text
    assert "numba kernels" in text
    assert main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["accuracies"]) == 3 and data["samples"] == 3
    assert 0 <= data["mean"] <= 1 and data["std"] >= 0 and 0 <= data["clean_accuracy"] <= 1
    assert data["tile"] == 64 and data["config"]["tile"]["n_rows"] == 64
    assert data["hardware"] and data["model"] == "lenet5"
    assert data["compile_seconds"] >= 0
    # sigma 0 with ideal converters reproduces the digital accuracy
    assert main(["simulate", "--checkpoint", str(trained), "--sigma", "0", "--samples", "1",
                 "--limit", "128", "--adc-bits", "none", "--dac-bits", "none", "--json"]) == 0
    ideal = json.loads(capsys.readouterr().out)
    assert ideal["mean"] == pytest.approx(ideal["clean_accuracy"], abs=1 / 128)
    assert main(["simulate", "--checkpoint", str(trained), "--level", "device", "--samples", "1",
                 "--limit", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["device"]["level"] == "device"


def test_simulate_line_resistance_and_cost(trained, capsys):
    base = ["simulate", "--checkpoint", str(trained), "--sigma", "0", "--tile", "64",
            "--samples", "1", "--limit", "64", "--adc-bits", "none", "--dac-bits", "none",
            "--json"]
    assert main(base + ["--line-resistance", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["tile"]["line_resistance"] == 2.0 and data["line_resistance"] == 2.0
    assert set(data["cost"]) == {"energy_j", "latency_s", "area_mm2"}
    assert all(v > 0 for v in data["cost"].values())
    assert data["hardware"]["cost"] == "isaac-32nm"


@pytest.mark.parametrize("extra,needle", [
    (["--sigma", "-0.5"], "--sigma"),
    (["--tile", "0"], "--tile"),
    (["--samples", "0"], "--samples"),
    (["--adc-bits", "eight"], "--adc-bits"),
    (["--line-resistance", "-1"], "--line-resistance"),
])
def test_simulate_bad_arguments(trained, extra, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--checkpoint", str(trained), *extra])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_simulate_bad_checkpoints(trained, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    cases = [(tmp_path / "missing.pt", [], "not found"), (corrupt, [], "corrupt"),
             (trained, ["--model", "vgg16"], "expected 'vgg16'")]
    for path, extra, needle in cases:
        assert main(["simulate", "--checkpoint", str(path), "--samples", "1", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("correctnet: error:") and needle in err and "\n" not in err


def test_errors_in_subprocess_have_no_traceback(tmp_path):
    corrupt = tmp_path / "c.pt"
    corrupt.write_bytes(b"junk")
    done = _cli("simulate", "--checkpoint", corrupt)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "corrupt" in done.stderr


def test_parse_sigmas_and_tiles():
    assert parse_sigmas("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_sigmas("0:1:0.1")[-1] == 1.0 and len(parse_sigmas("0:1:0.1")) == 11
    assert parse_sigmas("0.5,0.1,0.5") == [0.1, 0.5]
    assert parse_sigmas("0.3") == [0.3]
    for bad, needle in [("0:1", "3 fields"), ("0:1:0", "STEP"), ("1:0:0.1", "STOP"),
                        ("a,b", "not a sigma range"), ("-0.1", ">= 0"), ("", "empty"),
                        ("0:1e6:0.001", "at most")]:
        with pytest.raises(UsageError, match=needle):
            parse_sigmas(bad)
    assert parse_tiles("256,32,64") == [32, 64, 256]
    for bad in ("0", "32,x", ""):
        with pytest.raises(UsageError, match="--tile"):
            parse_tiles(bad)
    assert checkpoint_labels(["a/run/checkpoint.pt", "b/run/checkpoint.pt", "x/m.pt"]) == [
        "run", "run-2", "m"]


def test_sweep_bad_arguments(trained, tmp_path, capsys):
    base = ["sweep", "--checkpoint", str(trained), "--out", str(tmp_path)]
    for extra, needle in [(["--sigma", "0:1"], "--sigma"), (["--sigma", "0.1", "--tile", "0"],
                                                              "--tile"),
                          (["--sigma", "-1"], ">= 0")]:
        assert main(base + extra) == 2
        assert needle in capsys.readouterr().err
    assert main(["sweep", "--checkpoint", str(tmp_path / "nope.pt"), "--sigma", "0.1",
                 "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "sweep.db").write_bytes(b"this is not sqlite" * 100)
    assert main(base + ["--sigma", "0.1", "--samples", "1", "--limit", "16"]) == 2
    assert "not a usable sweep database" in capsys.readouterr().err


def _rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT key, label, sigma, tile, clean_accuracy, mean, std, samples,"
                           " accuracies, config FROM points ORDER BY key").fetchall()


SWEEP = ["--sigma", "0:0.6:0.3", "--tile", "32,128", "--samples", "2", "--limit", "64"]


@pytest.fixture(scope="module")
def full_sweep(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_full")
    assert main(["sweep", "--checkpoint", str(trained), *SWEEP, "--out", str(out)]) == 0
    return out


def test_sweep_outputs(full_sweep):
    rows = _rows(full_sweep / "sweep.db")
    assert len(rows) == 6
    assert {(r[2], r[3]) for r in rows} == {(s, t) for s in (0.0, 0.3, 0.6) for t in (32, 128)}
    config = json.loads(rows[0][9])
    assert config["samples"] == 2 and "xbar" in config and "checkpoint_sha256" in config
    csv_lines = (full_sweep / "sweep.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("label,checkpoint,sigma,tile")
    for name in ("accuracy_vs_sigma.png", "heatmap_sigma_tile.png"):
        assert (full_sweep / name).read_bytes()[:4] == b"\x89PNG"


def test_sweep_stop_and_rerun_equals_uninterrupted(trained, full_sweep, tmp_path, capsys):
    args = ["sweep", "--checkpoint", str(trained), *SWEEP, "--out", str(tmp_path)]
    assert main(args + ["--stop-after", "2"]) == 3
    assert len(_rows(tmp_path / "sweep.db")) == 2
    assert main(args) == 0
    assert "4 computed, 2 already stored" in capsys.readouterr().out
    assert main(args) == 0  # a third run adds nothing
    assert "0 computed, 6 already stored" in capsys.readouterr().out
    assert _rows(tmp_path / "sweep.db") == _rows(full_sweep / "sweep.db")


def test_sweep_killed_with_sigkill_then_rerun(trained, full_sweep, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "correctnet", "sweep", "--checkpoint", str(trained), *SWEEP,
            "--out", str(tmp_path)]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = tmp_path / "sweep.db"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and len(_rows(db)) >= 1:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(_rows(db))
    # killed mid-run: by the signal, with some points stored and some not
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= done_before < 6
    rerun = _cli("sweep", "--checkpoint", trained, *SWEEP, "--out", tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{6 - done_before} computed, {done_before} already stored" in rerun.stdout
    assert _rows(db) == _rows(full_sweep / "sweep.db")


def test_simulate_cost_preset(trained, capsys):
    base = ["simulate", "--checkpoint", str(trained), "--sigma", "0", "--samples", "1",
            "--limit", "64", "--json"]
    assert main(base) == 0
    isaac = json.loads(capsys.readouterr().out)
    assert main(base + ["--cost-preset", "neurram-130nm"]) == 0
    neurram = json.loads(capsys.readouterr().out)
    assert isaac["hardware"]["cost"] == "isaac-32nm"
    assert neurram["hardware"]["cost"] == "neurram-130nm"
    assert neurram["cost"]["energy_j"] != isaac["cost"]["energy_j"]
    assert main(base[:-1] + ["--cost-preset", "neurram-130nm"]) == 0
    assert "(constants neurram-130nm)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["simulate", "sweep"])
def test_unknown_cost_preset_is_one_line(trained, tmp_path, command, capsys):
    extra = ["--sigma", "0.1", "--out", str(tmp_path / "o")] if command == "sweep" else []
    with pytest.raises(SystemExit) as exc:
        main([command, "--checkpoint", str(trained), *extra, "--cost-preset", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--cost-preset" in err and "unknown cost preset 'nope'" in err
    assert "isaac-32nm, neurram-130nm" in err
    assert not (tmp_path / "o").exists()


def test_parse_line_resistances():
    from correctnet.commands.sweep import parse_line_resistances

    assert parse_line_resistances("2,0,2") == [0.0, 2.0]
    assert parse_line_resistances("0.5") == [0.5]
    for bad in ("-1", "a,1", "", "inf", "nan"):
        with pytest.raises(UsageError, match="--line-resistance"):
            parse_line_resistances(bad)


def test_sweep_bad_line_resistance(trained, tmp_path, capsys):
    assert main(["sweep", "--checkpoint", str(trained), "--sigma", "0.1",
                 "--line-resistance", "0,-2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--line-resistance" in err and "\n" not in err
    assert not (tmp_path / "o" / "sweep.db").exists()


def test_point_key_unchanged_by_default_axes():
    from correctnet.sweep.store import point_key, point_settings

    base = {"checkpoint_sha256": "ab", "sigma": 0.3, "tile": 32, "adc_bits": 8,
            "dac_bits": 8, "level": "weight", "samples": 2, "seed": 0, "limit": 64}
    # the key main's sweep stored for this point before the line-resistance axis existed
    assert point_key(point_settings(base)) == (
        "10ab76fad2f35d3c0c4a4f571a698186e8491180f1298be639712d044ec6946b")
    assert point_settings(base, line_resistance=0.0, cost="isaac-32nm") == base
    keys = {point_key(point_settings(base, line_resistance=r, cost=c))
            for r in (0, 2) for c in ("isaac-32nm", "neurram-130nm")}
    assert len(keys) == 4


IRDROP = ["--sigma", "0", "--tile", "32,128", "--line-resistance", "0,2", "--samples", "1",
          "--limit", "64", "--adc-bits", "none", "--dac-bits", "none"]


def test_sweep_line_resistance_axis_and_cost_columns(trained, tmp_path, capsys):
    import csv

    args = ["sweep", "--checkpoint", str(trained), *IRDROP, "--cost-preset", "neurram-130nm",
            "--out", str(tmp_path)]
    assert main(args) == 0
    assert "x 2 line resistance = 4 points" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "sweep.db") as con:
        stored = con.execute("SELECT tile, line_resistance, mean, clean_accuracy, config "
                             "FROM points").fetchall()
    assert sorted((t, r) for t, r, *_ in stored) == [(32, 0.0), (32, 2.0), (128, 0.0),
                                                      (128, 2.0)]
    for tile, ohms, mean, clean, config in stored:
        config = json.loads(config)
        assert config["xbar"]["tile"]["line_resistance"] == ohms
        assert config.get("line_resistance", 0.0) == ohms and config["cost"] == "neurram-130nm"
        if ohms == 0:               # ideal wires and converters, no variation: digital result
            assert mean == pytest.approx(clean, abs=1 / 64)
    with open(tmp_path / "sweep.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 4 and {line["line_resistance"] for line in lines} == {"0.0", "2.0"}
    assert {line["cost_preset"] for line in lines} == {"neurram-130nm"}
    for line in lines:
        assert float(line["energy_j"]) > 0 and float(line["latency_s"]) > 0
        assert float(line["area_mm2"]) > 0
    area = {int(line["tile"]): float(line["area_mm2"]) for line in lines}
    assert area[32] != area[128]
    assert main(args) == 0
    assert "0 computed, 4 already stored" in capsys.readouterr().out
    assert (tmp_path / "heatmap_sigma_tile.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_rows_labels_per_line_resistance():
    from correctnet.sweep.run import plot_rows

    rows = [{"label": "a", "line_resistance": 0.0}, {"label": "a", "line_resistance": 2.0}]
    assert [r["label"] for r in plot_rows(rows)] == ["a 0 ohm", "a 2 ohm"]
    assert plot_rows(rows[:1]) == rows[:1]


def test_old_sweep_database_resumes(trained, full_sweep, tmp_path, capsys):
    """A sweep.db written before the line-resistance column: migrated, every point kept."""
    import shutil

    db = tmp_path / "sweep.db"
    shutil.copy(full_sweep / "sweep.db", db)
    with sqlite3.connect(db) as con:       # the table as the previous release created it
        con.executescript(
            "CREATE TABLE old AS SELECT key, checkpoint, label, sigma, tile, clean_accuracy,"
            " mean, std, samples, accuracies, config, hardware, seconds, created FROM points;"
            " DROP TABLE points; ALTER TABLE old RENAME TO points;")
        assert "line_resistance" not in {r[1] for r in con.execute("PRAGMA table_info(points)")}
    assert main(["sweep", "--checkpoint", str(trained), *SWEEP, "--out", str(tmp_path)]) == 0
    assert "0 computed, 6 already stored" in capsys.readouterr().out
    with sqlite3.connect(db) as con:
        assert {r[0] for r in con.execute("SELECT line_resistance FROM points")} == {0.0}
    assert _rows(db) == _rows(full_sweep / "sweep.db")
    assert (tmp_path / "sweep.csv").read_text().splitlines()[0].startswith(
        "label,checkpoint,sigma,tile,line_resistance")


def test_worker_point_passes_line_resistance_and_cost(trained):
    from correctnet.sweep.point import evaluate_point
    from correctnet.sweep.store import file_digest

    task = {"path": str(trained), "digest": file_digest(trained), "limit": 64,
            "data_dir": None, "batch_size": 64, "sigma": 0.0, "tile": 64, "adc_bits": None,
            "dac_bits": None, "level": "weight", "samples": 1, "seed": 0, "backend": None,
            "threads": None, "line_resistance": 2.0, "cost": "neurram-130nm"}
    result = evaluate_point(task)
    assert result["config"]["tile"]["line_resistance"] == 2.0
    assert result["hardware"]["cost"] == "neurram-130nm"
