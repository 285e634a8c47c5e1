"""The report's new figures: per-layer spectra and the search figure's digital baselines."""

import matplotlib.image as mpimg
import pytest

from correctnet.study import figures as report_plots


def _pixels(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_spectra_figure_draws_every_variant(tmp_path):
    layers = {v: {n: {"sigma_max": s, "sigma_min": s / 4, "operator_norm": 2 * s}
                  for n in ("features.conv1", "classifier.fc1")}
              for v, s in (("plain", 1.3), ("lipschitz", 0.35))}
    out = report_plots.plot_spectra(layers, tmp_path / "spectra.png", lam=0.34)
    assert out.exists() and _pixels(out).std() > 0


def test_spectra_needs_the_three_keys(tmp_path):
    with pytest.raises(KeyError, match="operator_norm"):
        report_plots.plot_spectra({"plain": {"fc": {"sigma_max": 1, "sigma_min": 1}}},
                                  tmp_path / "x.png", lam=0.3)


def test_search_figure_with_digital_baselines_differs_from_without(tmp_path):
    explored = [{"plan": {"a": 1.0}, "mean": 0.8, "std": 0.02, "overhead": 0.01}]
    digital = [{"overhead": 0.016, "mean": 0.83, "std": 0.01, "layers": ["a"]}]
    plain = report_plots.plot_search(explored, tmp_path / "a.png", limits=[0.03])
    both = report_plots.plot_search(explored, tmp_path / "b.png", limits=[0.03],
                                    digital=digital)
    assert _pixels(plain).shape == _pixels(both).shape
    assert (_pixels(plain) != _pixels(both)).any()
