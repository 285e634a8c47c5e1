"""training.diagnostics against numpy SVD and a dense convolution matrix (tests/naive.py)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from mapping import mark_digital

import naive
from correctnet.training.diagnostics import (conv_operator_norm, format_diagnostics,
                                    layer_diagnostics)
from correctnet.errors import UsageError
from correctnet.training.lipschitz import parseval_retract
from correctnet.workloads.models import build_model


@pytest.mark.parametrize("stride, padding, dilation, shape", [
    ((1, 1), (0, 0), (1, 1), (2, 6, 6)),
    ((1, 1), (2, 2), (1, 1), (2, 5, 5)),
    ((2, 2), (1, 1), (1, 1), (2, 7, 6)),
    ((1, 2), (1, 0), (2, 1), (2, 6, 7)),
])
def test_conv_operator_norm_matches_dense_oracle(stride, padding, dilation, shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation)
    dense = naive.conv_dense_matrix(conv.weight.detach().double().numpy(), shape, stride,
                                    padding, dilation)
    want = float(np.linalg.svd(dense, compute_uv=False)[0])
    got = conv_operator_norm(conv, shape, iters=5000, tol=1e-13)
    assert got == pytest.approx(want, rel=1e-6)
    # and it is not the flattened matrix's norm
    flat = float(np.linalg.svd(conv.weight.detach().flatten(1).double().numpy(),
                               compute_uv=False)[0])
    assert abs(got - flat) > 1e-3 * flat


def test_conv_operator_norm_errors():
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(UsageError, match="input_shape"):
        conv_operator_norm(conv, (3, 8, 8))
    with pytest.raises(UsageError, match="iters"):
        conv_operator_norm(conv, (2, 8, 8), iters=0)
    with pytest.raises(UsageError, match="padding"):
        conv_operator_norm(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 8, 8))


def test_layer_diagnostics_lenet5_against_numpy():
    torch.manual_seed(1)
    model = build_model("lenet5")
    lam = 0.34
    with torch.no_grad():
        model.classifier.fc2.weight.mul_(lam / torch.linalg.matrix_norm(
            model.classifier.fc2.weight, ord=2))
    diag = layer_diagnostics(model, lam, torch.zeros(4, 1, 28, 28))
    assert list(diag) == ["features.conv1", "features.conv2", "classifier.fc1",
                          "classifier.fc2", "classifier.fc3"]
    for name, module in model.named_modules():
        if name not in diag:
            continue
        d = diag[name]
        assert set(d) == {"sigma_max", "sigma_min", "condition", "operator_norm", "binds"}
        s = np.linalg.svd(module.weight.detach().flatten(1).double().numpy(), compute_uv=False)
        assert d["sigma_max"] == pytest.approx(s[0], rel=1e-9)
        assert d["sigma_min"] == pytest.approx(s[-1], rel=1e-9)
        assert d["condition"] == pytest.approx(s[0] / s[-1], rel=1e-9)
        assert d["binds"] == (abs(s[0] - lam) <= 0.1 * lam)
        if isinstance(module, nn.Linear):
            assert d["operator_norm"] == d["sigma_max"]
    assert diag["classifier.fc2"]["binds"] and not diag["classifier.fc1"]["binds"]
    # conv1 sees 1x28x28 (padding 2), conv2 6x14x14 after the first pool
    for name, conv, shape in (("features.conv1", model.features.conv1, (1, 28, 28)),
                              ("features.conv2", model.features.conv2, (6, 14, 14))):
        want = conv_operator_norm(conv, shape, iters=2000, tol=1e-12)
        assert diag[name]["operator_norm"] == pytest.approx(want, rel=1e-4)


def test_layer_diagnostics_without_input_and_digital_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), mark_digital(nn.Linear(8, 2)))
    parseval_retract(model, 0.5)
    diag = layer_diagnostics(model, 0.5)
    assert list(diag) == ["0"]
    assert diag["0"]["operator_norm"] is None
    assert diag["0"]["condition"] == pytest.approx(1.0, rel=1e-5)
    assert diag["0"]["binds"] is True
    with torch.no_grad():
        model[0].weight.zero_()
    assert math.isinf(layer_diagnostics(model, 0.5)["0"]["condition"])
    with pytest.raises(UsageError, match="lambda"):
        layer_diagnostics(model, 0.0)


def test_format_diagnostics_is_one_line():
    line = format_diagnostics({"features.conv1": {"sigma_max": 0.35, "sigma_min": 0.3,
                                                  "operator_norm": 0.9, "binds": True},
                               "classifier.fc1": {"sigma_max": 1.2, "sigma_min": 0.1,
                                                  "operator_norm": 1.2, "binds": False}}, 0.34)
    assert "\n" not in line
    assert line == "lambda 0.340 | conv1 0.350/0.300 op 0.900 B | fc1 1.200/0.100 op 1.200"
