"""Energy / latency / area estimate (mapping.cost) and its place in the hardware report."""

import json

import pytest
import torch
from torch import nn

from mapping import (COST_PRESETS, ArgumentTypeError, CostConstants, CostPresetError,
                     convert_to_crossbar, hardware_report, mark_digital)
from mapping.cost import digital_cost, layer_cost
from xbar import XbarConfig


def unit_constants(**kw):
    base = dict(name="unit", source="test", adc_energy_j=10.0, adc_time_s=2.0,
                adc_area_mm2=100.0, adcs_per_tile=1, dac_energy_j=1.0, dac_area_mm2=10.0,
                cell_energy_j=100.0, cell_area_mm2=1.0, array_time_s=1.0, add_energy_j=1000.0,
                add_time_s=4.0, mac_energy_j=3.0, mac_time_s=5.0, mac_area_mm2=7.0, lanes=2)
    base.update(kw)
    return CostConstants(**base)


def test_layer_cost_by_hand():
    # out=3, in=5 on 4x2 tiles: grid 2x2, 3 positions.
    # DAC 5*2*3=30, ADC 3*2*3=18, cells 2*5*3*3=90, adds 3*(2-1)*3=9
    got = layer_cost(unit_constants(), matrix=(3, 5), tile=(4, 2), tile_grid=(2, 2),
                     positions=3)
    assert got["cell_reads"] == 90 and got["partial_sum_adds"] == 9
    assert got["energy_j"] == 30 * 1 + 18 * 10 + 90 * 100 + 9 * 1000
    assert got["latency_s"] == 3 * (1 + 2 * 2) + 9 * 4 / 2      # 2 bit lines share 1 ADC
    assert got["area_mm2"] == 4 * (2 * 4 * 2 * 1 + 4 * 10 + 1 * 100)
    two_adcs = layer_cost(unit_constants(adcs_per_tile=2), matrix=(3, 5), tile=(4, 2),
                          tile_grid=(2, 2), positions=3)
    assert two_adcs["latency_s"] == 3 * (1 + 2) + 18 and two_adcs["area_mm2"] == 4 * 256


def test_digital_cost_by_hand():
    assert digital_cost(unit_constants(), 10) == {"macs": 10, "energy_j": 30.0,
                                                  "latency_s": 25.0, "area_mm2": 14.0}
    assert digital_cost(unit_constants(), 0)["area_mm2"] == 0.0


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3),
                         mark_digital(nn.Linear(3, 3)))


def test_report_costs_every_layer_and_the_digital_path():
    analog = convert_to_crossbar(model(), XbarConfig.ideal(16, 8))
    c = unit_constants()
    rep = hardware_report(analog, input_shape=(1, 6, 6), cost=c)
    conv, lin = rep.rows
    assert conv["positions"] == 16
    # conv: out 2, in 9, grid 1x1 -> DAC 9*16, ADC 2*16, cells 2*9*2*16, no adds
    assert conv["energy_j"] == 9 * 16 * 1 + 2 * 16 * 10 + 2 * 9 * 2 * 16 * 100
    assert conv["latency_s"] == 16 * (1 + 8 * 2)
    # linear: out 3, in 32 on 16-row tiles: grid 2x1 -> 3 adds
    assert lin["partial_sum_adds"] == 3 and lin["area_mm2"] == 2 * (2 * 16 * 8 + 160 + 100)
    assert rep.total["energy_j"] == conv["energy_j"] + lin["energy_j"]
    (dig,) = rep.digital["rows"]
    assert dig["name"] == "4" and dig["macs"] == 9 and dig["energy_j"] == 27.0
    assert rep.digital["total"]["area_mm2"] == 14.0
    assert rep.cost_total["energy_j"] == rep.total["energy_j"] + 27.0
    assert rep.cost_total["latency_s"] == rep.total["latency_s"] + 9 * 5 / 2
    text = str(rep)
    assert "Cost per inference, constants 'unit'" in text and "digital total" in text
    json.dumps(rep.to_dict())


def test_report_presets_and_no_cost():
    analog = convert_to_crossbar(model(), XbarConfig.ideal(16, 8))
    for name in COST_PRESETS:
        rep = hardware_report(analog, input_shape=(1, 6, 6), cost=name)
        assert rep.cost == name and rep.cost_total["energy_j"] > 0
        assert rep.cost_total["area_mm2"] > rep.total["area_mm2"] > 0
    plain = hardware_report(analog, cost=None)
    assert plain.cost is None and "energy_j" not in plain.total and "Cost" not in str(plain)
    fresh = hardware_report(convert_to_crossbar(model(), XbarConfig.ideal(16, 8)))
    assert fresh.digital["rows"][0]["macs"] == 9          # no forward: Linear is in * out


def test_cost_errors():
    with pytest.raises(CostPresetError, match="known: .*isaac-32nm") as info:
        CostConstants.preset("isaac-7nm")
    assert isinstance(info.value, KeyError) and "known" in str(info.value)
    with pytest.raises(ArgumentTypeError, match="bad cost override"):
        CostConstants.preset("isaac-32nm", adc_joules=1.0)
    with pytest.raises(ArgumentTypeError, match="cost.adc_energy_j"):
        CostConstants.preset("isaac-32nm", adc_energy_j=-1.0)
    with pytest.raises(ArgumentTypeError, match="cost.lanes"):
        unit_constants(lanes=0)
    assert CostConstants.preset("neurram-130nm", lanes=4).lanes == 4
    analog = convert_to_crossbar(model(), XbarConfig.ideal(16, 8))
    with pytest.raises(ArgumentTypeError, match="preset name or CostConstants"):
        hardware_report(analog, cost=3)
    with pytest.raises(CostPresetError):
        hardware_report(analog, cost="nope")
