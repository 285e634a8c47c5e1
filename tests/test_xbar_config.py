import dataclasses
import json

import pytest

from xbar import ADCConfig, ConfigError, DACConfig, DeviceConfig, TileConfig, XbarConfig


def test_defaults_and_presets():
    cfg = XbarConfig()
    assert cfg.device.sigma == 0.5 and cfg.device.level == "weight"
    assert cfg.dac.bits == 8 and cfg.adc.bits == 8 and cfg.tile.n_rows == 128
    assert XbarConfig.ideal().is_ideal
    assert not cfg.is_ideal
    ln = XbarConfig.rram_lognormal(0.3)
    assert ln.device.sigma == 0.3 and ln.dac.bits is None and ln.adc.bits is None
    assert XbarConfig.rram_lognormal(0.2, level="device", adc_bits=6).adc.bits == 6


def test_round_trip_through_json():
    cfg = XbarConfig(tile=TileConfig(64, 32),
                     device=DeviceConfig(sigma=0.1, level="device", levels=16, read_noise=0.01,
                                         stuck_min_rate=0.001),
                     dac=DACConfig(bits=6, input_range=2.0), adc=ADCConfig(bits=None))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert XbarConfig.from_dict(d) == cfg
    assert XbarConfig.from_dict({}) == XbarConfig()
    assert dataclasses.replace(cfg, adc=ADCConfig(bits=4)).adc.bits == 4


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        XbarConfig().tile.n_rows = 3  # type: ignore[misc]


@pytest.mark.parametrize("make, path", [
    (lambda: DeviceConfig(sigma=-1), "device.sigma"),
    (lambda: DeviceConfig(sigma=float("nan")), "device.sigma"),
    (lambda: DeviceConfig(level="cell"), "device.level"),
    (lambda: DeviceConfig(g_min=-1e-6), "device.g_min"),
    (lambda: DeviceConfig(g_min=1e-4, g_max=1e-4), "device.g_min"),
    (lambda: DeviceConfig(g_max=0.0), "device.g_max"),
    (lambda: DeviceConfig(levels=1), "device.levels"),
    (lambda: DeviceConfig(levels=2.5), "device.levels"),
    (lambda: DeviceConfig(read_noise=-0.1), "device.read_noise"),
    (lambda: DeviceConfig(stuck_min_rate=1.5), "device.stuck_min_rate"),
    (lambda: DeviceConfig(stuck_max_rate=-0.1), "device.stuck_max_rate"),
    (lambda: DeviceConfig(stuck_min_rate=0.6, stuck_max_rate=0.6), "stuck_min_rate"),
    (lambda: TileConfig(n_rows=0), "tile.n_rows"),
    (lambda: TileConfig(n_cols=0), "tile.n_cols"),
    (lambda: TileConfig(n_rows=True), "tile.n_rows"),
    (lambda: DACConfig(bits=0), "dac.bits"),
    (lambda: DACConfig(bits=1), "dac.bits"),
    (lambda: DACConfig(bits=25), "dac.bits"),
    (lambda: DACConfig(input_range=0.0), "dac.input_range"),
    (lambda: ADCConfig(bits=0), "adc.bits"),
    (lambda: ADCConfig(full_scale=0.0), "adc.full_scale"),
    (lambda: ADCConfig(full_scale=float("inf")), "adc.full_scale"),
    (lambda: XbarConfig(tile=DeviceConfig()), "tile"),
    (lambda: XbarConfig.from_dict({"tiles": {}}), "tiles"),
    (lambda: XbarConfig.from_dict({"tile": {"rows": 3}}), "rows"),
    (lambda: XbarConfig.from_dict({"tile": 3}), "tile"),
    (lambda: XbarConfig.from_dict([1]), "dict"),
    (lambda: XbarConfig.from_dict({"device": {"sigma": -2}}), "device.sigma"),
])
def test_invalid_fields_name_the_path(make, path):
    with pytest.raises(ConfigError, match=path) as info:
        make()
    assert isinstance(info.value, ValueError)
