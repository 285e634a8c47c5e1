"""A resumed ``reproduce`` run equals an uninterrupted one bit for bit (issue 10, item 1).

Every stage boundary is a kill point: the run is stopped before stage ``k``, the global torch,
numpy and Python RNGs are scrambled (as a fresh process would have them), and the run is
resumed. One kill point is a real ``kill -9`` of a subprocess; one is inside the search, after
one plan was cached in ``plans.json``.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from correctnet.study.pipeline import STAGES, Pipeline
from correctnet.study.presets import get_preset
from run_outputs import without_timings




class Stop(Exception):
    pass


def _scramble_global_rng(k: int) -> None:
    torch.manual_seed(1000 + k)
    torch.rand(17 + k)
    np.random.seed(2000 + k)
    random.seed(3000 + k)


def _pipe(out: Path, **hooks) -> Pipeline:
    return Pipeline("lenet5", "fashion-mnist", 0.5, out, get_preset("tiny"), progress=False,
                    **hooks)



def _outputs(out: Path) -> dict:
    """Everything a run produced that must not depend on where it was interrupted."""
    res = {"plans": without_timings(json.loads((out / "plans.json").read_text())),
           "report": without_timings(json.loads((out / "report.json").read_text()))}
    for name in STAGES:
        stage = json.loads((out / "stages" / f"{name}.json").read_text())
        res[f"stage {name}"] = without_timings(stage)
    comp = torch.load(out / "correctnet.pt", weights_only=True)
    res["correctnet.pt"] = {k: v.numpy().tobytes() for k, v in comp["state"].items()}
    for variant in ("plain", "lipschitz", "variation_aware"):
        ckpt = torch.load(out / f"{variant}.pt", weights_only=True)
        res[f"{variant}.pt"] = {k: v.numpy().tobytes() for k, v in ckpt["state_dict"].items()}
    return res


def _assert_same(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs after an interruption {where}"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Bit-exact comparisons need one thread count (it sets the order of float sums); other
    tests may have changed it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("exact") / "ref"
    _scramble_global_rng(99)
    _pipe(out).run()
    return _outputs(out)


@pytest.mark.parametrize("k", range(1, len(STAGES)))
def test_resume_at_every_stage_boundary_is_bit_exact(reference, tmp_path, k):
    out = tmp_path / "run"
    _scramble_global_rng(0)
    _pipe(out).run(until=STAGES[k - 1])
    _scramble_global_rng(k)        # a fresh process: other global RNG state
    _pipe(out).run()
    _assert_same(reference, _outputs(out), f"before stage {STAGES[k]}")


def test_resume_inside_the_search_is_bit_exact(reference, tmp_path):
    out = tmp_path / "run"
    plans = []

    def log(line):
        if line.startswith("  plan"):
            plans.append(line)
            if len(plans) == 2:    # the first plan is cached, the second is lost
                raise Stop

    with pytest.raises(Stop):
        _pipe(out, log=log).run()
    assert len(json.loads((out / "plans.json").read_text())) == 1
    _scramble_global_rng(42)
    _pipe(out).run()
    _assert_same(reference, _outputs(out), "inside the search")


def test_kill_9_after_search_then_resume_is_bit_exact(reference, tmp_path):
    """The reported case: ``kill -9`` once ``stages/search.json`` exists, then rerun."""
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal
        import torch
        torch.set_num_threads(1)   # as the tests (and reproduce --threads 1): same sums
        from correctnet.study.pipeline import Pipeline
        from correctnet.study.presets import get_preset

        def hook(name):
            if name == "train_compensation":
                os.kill(os.getpid(), signal.SIGKILL)

        Pipeline("lenet5", "fashion-mnist", 0.5, {str(out)!r}, get_preset("tiny"),
                 progress=False, before_stage=hook).run()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (out / "stages" / "search.json").exists()
    assert not (out / "stages" / "train_compensation.json").exists()
    _scramble_global_rng(7)
    _pipe(out).run()
    _assert_same(reference, _outputs(out), "by kill -9 after the search")
