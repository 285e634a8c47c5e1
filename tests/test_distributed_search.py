"""Placement search on Dask workers: the same plans, chosen plan and report as in-process."""

import json
import pickle
import shutil

import pytest

pytest.importorskip("dask.distributed")

from correctnet.cli import main  # noqa: E402
from correctnet.distributed import dask_client, map_evaluator  # noqa: E402
from correctnet.errors import CheckpointError  # noqa: E402
from correctnet.study.pipeline import Pipeline  # noqa: E402
from correctnet.search.evaluator import PlanEvaluator  # noqa: E402
from correctnet.study.presets import get_preset  # noqa: E402
from correctnet.search.cache import PlanCache
from correctnet.search.placement import SearchConfig, SearchError, rl_search  # noqa: E402
from run_outputs import without_timings  # noqa: E402

LAYERS = ["conv1", "conv2", "fc1"]
ACTIONS = {"conv1": [0.0, 1.0, 2.0], "conv2": [0.0, 1.0, 2.0], "fc1": [0.0, 1.0]}


def synthetic_plan_score(plan):
    """Cheap picklable evaluator with a known optimum (conv2=2)."""
    return 0.5 + 0.2 * plan.get("conv2", 0.0) - 0.02 * plan.get("conv1", 0.0), 0.01


def overhead(plan):
    return 0.1 * sum(plan.values())



def _read(path):
    return without_timings(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2, log=lambda line: None) as c:
        yield c


def test_rl_batches_on_workers_equal_sequential_evaluation(client, tmp_path):
    cfg = SearchConfig(episodes=10, seed=4, episodes_per_batch=4)   # batches of 4, 4, 2
    seq = rl_search(LAYERS, ACTIONS, synthetic_plan_score, overhead, 0.3, cfg,
                    cache=PlanCache(tmp_path / "seq.json"))
    calls = []

    def record(plans):
        calls.append(len(plans))
        return map_evaluator(client, synthetic_plan_score)(plans)

    par = rl_search(LAYERS, ACTIONS, synthetic_plan_score, overhead, 0.3, cfg,
                    cache=PlanCache(tmp_path / "par.json"), map_evaluator=record)
    assert par.to_dict() == seq.to_dict() and par.evaluations == seq.evaluations > 0
    assert PlanCache(tmp_path / "par.json").entries == PlanCache(tmp_path / "seq.json").entries
    # one map call per batch with uncached plans, never more plans than the batch holds
    assert 1 <= len(calls) <= 3 and all(1 <= n <= 4 for n in calls)
    assert sum(calls) == par.evaluations


def test_episode_batch_default_is_the_per_episode_update(tmp_path):
    one = rl_search(LAYERS, ACTIONS, synthetic_plan_score, overhead, 0.3,
                    SearchConfig(episodes=8, seed=1))
    same = rl_search(LAYERS, ACTIONS, synthetic_plan_score, overhead, 0.3,
                     SearchConfig(episodes=8, seed=1, episodes_per_batch=1),
                     map_evaluator=lambda plans: ((i, synthetic_plan_score(p))
                                                  for i, p in enumerate(plans)))
    batched = rl_search(LAYERS, ACTIONS, synthetic_plan_score, overhead, 0.3,
                        SearchConfig(episodes=8, seed=1, episodes_per_batch=4))
    assert same.to_dict() == one.to_dict()
    # a batch shares one policy: its baselines differ from the per-episode updates'
    assert [h["baseline"] for h in batched.history] != [h["baseline"] for h in one.history]
    assert len(batched.history) == 8
    for bad in (0, 1.5, True):
        with pytest.raises(SearchError, match="episodes_per_batch"):
            SearchConfig(episodes_per_batch=bad)


def test_plan_evaluator_is_picklable():
    ev = PlanEvaluator("/x/lipschitz.pt", "lenet5", "fashion-mnist", 0.5,
                       get_preset("tiny").to_dict())
    assert pickle.loads(pickle.dumps(ev)) == ev
    with pytest.raises(CheckpointError, match="share with the driver"):
        ev({"conv1": 1.0})


@pytest.mark.slow
def test_reproduce_on_workers_equals_in_process(client, tmp_path, capsys):
    base = tmp_path / "base"
    Pipeline("lenet5", "fashion-mnist", 0.5, base, get_preset("tiny"),
             progress=False).run(until="candidates")
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(base, local)
    shutil.copytree(base, remote)
    Pipeline("lenet5", "fashion-mnist", 0.5, local, get_preset("tiny"), progress=False).run()
    capsys.readouterr()
    assert main(["reproduce", "--preset", "tiny", "--out", str(remote), "--no-progress",
                 "--scheduler", client.scheduler.address]) == 0
    out = capsys.readouterr().out
    assert "dashboard" in out and "(worker)" in out
    assert _read(remote / "plans.json") == _read(local / "plans.json")
    for name in ("search", "train_compensation", "evaluate_correctnet"):
        stage = f"stages/{name}.json"
        assert _read(remote / stage) == _read(local / stage), name
    assert _read(remote / "report.json") == _read(local / "report.json")
    # --workers is not part of the run's configuration: a finished run reruns with it,
    # starting no cluster (no stage left that uses one)
    assert main(["reproduce", "--preset", "tiny", "--out", str(local), "--no-progress",
                 "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "done earlier" in out and "dashboard" not in out
    assert "workers" not in (local / "config.json").read_text()


def test_reproduce_rejects_workers_with_scheduler(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--preset", "tiny", "--out", str(tmp_path), "--workers", "2",
              "--scheduler", "tcp://127.0.0.1:1"])
    assert "not allowed with" in capsys.readouterr().err
