"""Mean-gain calibration: programming w / E[exp(theta)] makes the varied weight unbiased."""

import math

import numpy as np
import pytest
import torch

import mapping
from xbar import ConfigError, DeviceConfig, TiledCrossbar, XbarConfig

SIGMA = 0.5


def _mean_eff(cfg, w, samples=400):
    xb = TiledCrossbar(w, cfg)
    eff = []
    for s in range(samples):
        xb.program(s)
        eff.append(xb.circuit_weight())
    return np.mean(eff, axis=0)


@pytest.mark.parametrize("level", ["weight", "device"])
def test_calibrated_programming_is_unbiased_and_uncalibrated_is_biased(level):
    w = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    plain = XbarConfig.rram_lognormal(SIGMA, level=level)
    calib = XbarConfig.rram_lognormal(SIGMA, level=level, mean_gain_calibration=True)
    gain = math.exp(SIGMA ** 2 / 2)                       # 1.133
    m_plain, m_calib = _mean_eff(plain, w), _mean_eff(calib, w)
    # 400 samples: the mean of w*exp(theta) has relative std sqrt(e^0.25 - 1)/20 ~ 2.7 %
    scale = np.abs(w).max()
    assert np.abs(m_calib - w).max() < 0.12 * scale
    assert np.abs(m_plain - gain * w).max() < 0.12 * scale
    assert np.abs(m_plain.sum() / w.sum() - gain) < 0.05


def test_ideal_programming_and_sigma_zero_are_untouched():
    w = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    calib = XbarConfig.rram_lognormal(SIGMA, mean_gain_calibration=True)
    xb = TiledCrossbar(w, calib)
    xb.program_ideal()                                   # exact layers keep their weights
    np.testing.assert_allclose(xb.circuit_weight(), w, rtol=1e-6)
    assert DeviceConfig(sigma=0.0, mean_gain_calibration=True).programming_gain == 1.0
    assert DeviceConfig(sigma=SIGMA).programming_gain == 1.0
    assert DeviceConfig(sigma=SIGMA, mean_gain_calibration=True).programming_gain == \
        pytest.approx(math.exp(-SIGMA ** 2 / 2))


def test_torch_resample_applies_the_same_gain():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4))
    cfg = XbarConfig.rram_lognormal(SIGMA, mean_gain_calibration=True)
    analog = mapping.convert_to_crossbar(net, cfg)
    mapping.set_execution(analog, "torch")
    layer = analog[0]
    gen = torch.Generator().manual_seed(2)
    mapping.resample(analog, gen)
    z, _ = layer._noise
    w_eff, _ = layer.torch_weight()
    expected = layer.weight.detach() * math.exp(-SIGMA ** 2 / 2) * torch.exp(z)
    torch.testing.assert_close(w_eff.reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_calibration_flag_must_be_a_bool_and_round_trips():
    with pytest.raises(ConfigError, match="mean_gain_calibration"):
        DeviceConfig(mean_gain_calibration="yes")
    cfg = XbarConfig.rram_lognormal(SIGMA, mean_gain_calibration=True)
    assert XbarConfig.from_dict(cfg.to_dict()) == cfg


class _CalibrationCtx:
    """What the calibration stage reads from a StudyContext; records the samples asked for."""

    sigma = 0.5

    def __init__(self, preset, base):
        self.preset, self.asked = preset, []
        self.store = type("Store", (), {"result": staticmethod(lambda name: base)})()

    def network(self, variant):
        return variant

    def monte_carlo(self, model, *, sigma, samples, limit, calibrate):
        assert calibrate and sigma == 0.5
        self.asked.append(samples)
        return {"accuracies": [0.5 + 0.01 * i for i in range(samples)]}


def test_calibration_stage_runs_digital_samples_paired_with_the_first_ones():
    import dataclasses

    from correctnet.study.presets import get_preset
    from correctnet.study.stages import calibration

    uncal = [0.40, 0.45, 0.90, 0.90, 0.90]              # only the first two are paired
    base = {"variants": {v: {"seed_accuracies": [uncal]}
                         for v in ("plain", "lipschitz", "variation_aware")}}
    ctx = _CalibrationCtx(dataclasses.replace(get_preset("tiny"), samples=5, digital_samples=2),
                          base)
    out = calibration(ctx)
    assert ctx.asked == [2, 2, 2]
    for r in out.values():
        assert r["uncalibrated_mean"] == pytest.approx(0.425)
        assert r["mean"] == pytest.approx(0.505)
        assert r["difference"]["mean"] == pytest.approx(0.08)
    ctx = _CalibrationCtx(dataclasses.replace(get_preset("tiny"), samples=5), base)
    calibration(ctx)
    assert ctx.asked == [5, 5, 5]                     # None: all of the final samples
