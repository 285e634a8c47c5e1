"""Sweeps on a local Dask cluster: same database as in-process, robust to lost workers/driver."""

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("dask.distributed")

from correctnet.workloads.checkpoint import save_checkpoint  # noqa: E402
from correctnet.cli import main  # noqa: E402
from correctnet.sweep.run import run_sweep  # noqa: E402
from correctnet.distributed import (  # noqa: E402
    DistributedError, compute_threads, dask_client, import_distributed)
from correctnet.errors import UsageError  # noqa: E402
from correctnet.workloads.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS, TILES = [0.0, 0.3, 0.6], [32, 128]
OPTS = dict(samples=2, limit=64, progress=False)
TIMING = {"seconds", "created"}


def _rows(db):
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM points ORDER BY key")]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _csv(path):
    with open(path) as handle:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    meta = {"model": "lenet5", "num_classes": 10, "in_channels": 1, "input_size": 28,
            "dataset": "fashion-mnist"}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "net" / "checkpoint.pt", model,
                           meta)


@pytest.fixture(scope="module")
def in_process(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("inproc")
    run_sweep([checkpoint], SIGMAS, TILES, out, **OPTS)
    return out


@pytest.fixture(scope="module")
def client():
    lines = []
    with dask_client(workers=2, log=lines.append) as c:
        assert "dashboard" in lines[0] and "2 worker" in lines[0]
        yield c


@pytest.mark.slow
def test_two_workers_give_the_in_process_database(checkpoint, in_process, client, tmp_path):
    seen, lines = [], []
    # through --scheduler ADDRESS: a second client connected to the running cluster
    with dask_client(scheduler=client.scheduler.address, log=lines.append) as remote:
        assert "connected to" in lines[0]
        result = run_sweep([checkpoint], SIGMAS, TILES, tmp_path, client=remote,
                           worker_threads=1, on_point=seen.append, **OPTS)
    assert result["computed"] == 6 and len(seen) == 6
    assert _rows(tmp_path / "sweep.db") == _rows(in_process / "sweep.db")
    assert _csv(tmp_path / "sweep.csv") == _csv(in_process / "sweep.csv")
    # points were spread over both workers' processes
    assert len(client.scheduler_info()["workers"]) == 2
    again = run_sweep([checkpoint], SIGMAS, TILES, tmp_path, client=client, **OPTS)
    assert again["computed"] == 0 and again["skipped"] == 6


@pytest.mark.slow
def test_killed_worker_still_completes_every_point_once(checkpoint, in_process, client,
                                                        tmp_path):
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one(point):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(point)

    result = run_sweep([checkpoint], SIGMAS, TILES, tmp_path, client=client, worker_threads=1,
                       on_point=kill_one, **OPTS)
    assert killed and result["computed"] == 6
    assert _rows(tmp_path / "sweep.db") == _rows(in_process / "sweep.db")


@pytest.mark.slow
def test_driver_killed_then_rerun_resumes_every_point_once(checkpoint, in_process, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "correctnet", "sweep", "--checkpoint", str(checkpoint),
            "--sigma", "0:0.6:0.3", "--tile", "32,128", "--samples", "2", "--limit", "64",
            "--out", str(tmp_path), "--workers", "2"]
    # own session: the driver and its cluster's worker processes are killed as one group
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "sweep.db"
    deadline = time.monotonic() + 120
    done_before = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done_before = len(_rows(db)) if db.exists() else 0
            except sqlite3.OperationalError:   # the table may not exist yet
                done_before = 0
            if done_before >= 1:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(_rows(db))
    assert 1 <= done_before
    rerun = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "dashboard" in rerun.stdout
    assert f"{6 - done_before} computed, {done_before} already stored" in rerun.stdout
    assert _rows(db) == _rows(in_process / "sweep.db")


def test_thread_split_and_option_errors(checkpoint, tmp_path, capsys):
    assert compute_threads(2, cpus=2) == 1 and compute_threads(2, cpus=16) == 8
    assert compute_threads(4, cpus=2) == 1
    assert import_distributed().Client is not None
    with pytest.raises(UsageError, match="not both"):
        with dask_client(workers=2, scheduler="tcp://127.0.0.1:1"):
            pass
    with dask_client() as none:
        assert none is None
    base = ["sweep", "--checkpoint", str(checkpoint), "--sigma", "0.1", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(base + ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def test_unreachable_scheduler_raises_distributed_error():
    with pytest.raises(DistributedError, match="cannot reach the Dask scheduler"):
        with dask_client(scheduler="tcp://127.0.0.1:9", timeout=1):
            pass


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(DistributedError, match=r"correctnet-sim\[distributed\]"):
        import_distributed()


def synthetic_plan_score(plan):
    """Cheap picklable evaluator with a known optimum (conv2=2)."""
    return 0.5 + 0.2 * plan.get("conv2", 0.0) - 0.02 * plan.get("conv1", 0.0), 0.01


def test_exhaustive_search_on_workers_equals_in_process(client, tmp_path):
    from correctnet.distributed import map_evaluator
    from correctnet.search.cache import PlanCache
    from correctnet.search.placement import exhaustive_search

    layers = ["conv1", "conv2", "fc1"]
    actions = {"conv1": [0.0, 1.0, 2.0], "conv2": [0.0, 1.0, 2.0], "fc1": [0.0, 1.0]}

    def overhead(plan):
        return 0.1 * sum(plan.values())

    seq = exhaustive_search(layers, actions, synthetic_plan_score, overhead, 0.3,
                            cache=PlanCache(tmp_path / "seq.json"))
    par_cache = PlanCache(tmp_path / "par.json")
    par = exhaustive_search(layers, actions, synthetic_plan_score, overhead, 0.3,
                            cache=par_cache, map_evaluator=map_evaluator(client,
                                                                         synthetic_plan_score))
    assert par.best_plan == seq.best_plan and seq.best_plan.get("conv2") == 2.0
    assert par.to_dict() == seq.to_dict() and par.evaluations == seq.evaluations > 0
    assert PlanCache(tmp_path / "par.json").entries == PlanCache(tmp_path / "seq.json").entries
    # a second search over the same cache evaluates nothing
    again = exhaustive_search(layers, actions, synthetic_plan_score, overhead, 0.3,
                              cache=par_cache, map_evaluator=map_evaluator(
                                  client, synthetic_plan_score))
    assert again.evaluations == 0 and again.best_plan == seq.best_plan


def test_in_process_path_never_imports_dask():
    code = ("import sys; from correctnet.cli import build_parser; "
            "import correctnet.commands.sweep, correctnet.distributed; "
            "print('dask' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
    assert done.stdout.strip() == "False", done.stderr
