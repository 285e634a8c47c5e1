"""Statistics over training seeds (correctnet.seed_stats)."""

import numpy as np
import pytest

import naive
from correctnet.study.seed_stats import SeedStatsError, paired_difference, pool_seeds


def test_pool_seeds_is_the_mean_and_std_of_every_accuracy():
    per_seed = [[0.7, 0.8, 0.9], [0.5, 0.6, 0.7]]
    got = pool_seeds(per_seed)
    flat = np.array(per_seed).ravel()
    assert got["mean"] == pytest.approx(flat.mean())
    assert got["std"] == pytest.approx(flat.std())
    assert got["seed_means"] == pytest.approx([0.8, 0.6])
    assert got["seed_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert pool_seeds([[0.5, 0.7]])["seed_std"] == 0.0


def test_paired_difference_over_seeds_matches_the_t_interval():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.6, 0.9, (4, 5))
    b = a - rng.uniform(0.0, 0.1, (4, 5))
    got = paired_difference(a.tolist(), b.tolist())
    d = (a.mean(1) - b.mean(1)).tolist()
    mean, sem, (lo, hi) = naive.paired_t_interval(d)
    assert got["over"] == "seeds" and got["n"] == 4
    assert got["mean"] == pytest.approx(mean) and got["sem"] == pytest.approx(sem)
    assert got["ci95"] == pytest.approx([lo, hi])
    assert got["per_seed"] == pytest.approx(d)


def test_one_seed_pairs_the_device_samples():
    got = paired_difference([[0.8, 0.7, 0.9]], [[0.7, 0.7, 0.8]])
    mean, sem, (lo, hi) = naive.paired_t_interval([0.1, 0.0, 0.1])
    assert got["over"] == "device samples" and got["n"] == 3
    assert got["mean"] == pytest.approx(mean) and got["ci95"] == pytest.approx([lo, hi])


def test_one_pair_has_no_spread():
    got = paired_difference([[0.8]], [[0.6]])
    assert got["mean"] == pytest.approx(0.2) and got["sem"] == 0
    assert got["ci95"] == [got["mean"]] * 2


@pytest.mark.parametrize("a,b,match", [
    ([], [[0.1]], "at least one seed"),
    ([[]], [[0.1]], "at least one seed"),
    ([[0.1, 0.2], [0.3]], [[0.1, 0.2], [0.3]], "same number of device samples"),
    ([[0.1, 0.2]], [[0.1, 0.2], [0.3, 0.4]], "pairs need equal counts"),
])
def test_bad_shapes_are_refused(a, b, match):
    with pytest.raises(SeedStatsError, match=match):
        paired_difference(a, b)


def test_report_pairs_fewer_samples_with_the_first_ones():
    # the deep preset's digital baseline has 50 device samples, the other rows 250
    from correctnet.study.report import comparisons

    rng = np.random.default_rng(1)
    correctnet = rng.uniform(0.5, 0.8, (1, 250)).tolist()
    digital = rng.uniform(0.5, 0.8, (1, 50)).tolist()
    got = comparisons({"correctnet": correctnet, "digital_baseline": digital}, "lipschitz")
    c = got["correctnet_vs_digital_baseline"]
    want = paired_difference([correctnet[0][:50]], digital)
    assert c["n"] == 50 and c["over"] == "device samples"
    assert c["mean"] == pytest.approx(want["mean"]) and c["ci95"] == pytest.approx(want["ci95"])


def test_report_still_refuses_different_seed_counts():
    from correctnet.study.report import comparisons

    with pytest.raises(SeedStatsError, match="pairs need equal counts"):
        comparisons({"lipschitz": [[0.5, 0.6]] * 2, "plain": [[0.5, 0.6]]}, "lipschitz")
