import math

import pytest
import torch
from torch import nn

from mapping import analog_layers, mark_digital

from correctnet.errors import UsageError
from correctnet.training.lipschitz import (
    lipschitz_lambda, normalized_penalty, orthogonality_penalty, parseval_retract,
    spectral_norms)
from correctnet.workloads.models import build_model
import naive



def test_lambda_values():
    assert lipschitz_lambda(0.5) == pytest.approx(0.3396, abs=1e-4)
    assert lipschitz_lambda(0.0) == pytest.approx(1.0)
    assert lipschitz_lambda(0.5, k=2.0) == pytest.approx(2 * lipschitz_lambda(0.5))
    for sigma in (0.1, 0.3, 0.5, 1.0):
        assert lipschitz_lambda(sigma) == pytest.approx(naive.lipschitz_lambda(sigma), rel=1e-12)
    with pytest.raises(UsageError, match="sigma"):
        lipschitz_lambda(-0.1)
    with pytest.raises(UsageError, match="k must"):
        lipschitz_lambda(0.5, k=0)


def test_penalty_matches_naive_for_wide_tall_and_conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 3), nn.Linear(3, 9), nn.Conv2d(2, 4, 3), nn.Linear(5, 5))
    lam = 0.34
    got = orthogonality_penalty(model, lam).detach()
    want = sum(naive.orthogonality_term(m.weight.detach().flatten(1).double().numpy(), lam)
               for m in model if hasattr(m, "weight"))
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_penalty_gradient_equals_full_gram_gradient():
    torch.manual_seed(1)
    layer = nn.Linear(11, 4)  # out < in: the small Gram path
    lam = 0.5
    orthogonality_penalty(layer, lam).backward()
    fast = layer.weight.grad.clone()
    w = layer.weight.detach().clone().requires_grad_(True)
    ((w.t() @ w - lam**2 * torch.eye(11)) ** 2).sum().backward()
    torch.testing.assert_close(fast, w.grad, rtol=1e-5, atol=1e-6)


def test_penalty_zero_for_scaled_orthogonal():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    layer = nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        layer.weight.copy_(0.3 * q)
    assert float(orthogonality_penalty(layer, 0.3).detach()) == pytest.approx(0.0, abs=1e-9)
    assert spectral_norms(layer)[""] == pytest.approx(0.3, rel=1e-5)


def test_spectral_norms_per_layer():
    model = build_model("lenet5")
    norms = spectral_norms(model)
    assert list(norms) == ["features.conv1", "features.conv2", "classifier.fc1",
                           "classifier.fc2", "classifier.fc3"]
    w = model.classifier.fc1.weight.detach().double().numpy()
    assert norms["classifier.fc1"] == pytest.approx(naive.spectral_norm(w), rel=1e-5)


def test_digital_modules_are_skipped():
    model = nn.Sequential(nn.Linear(4, 4), mark_digital(nn.Linear(4, 4)))
    assert [name for name, _ in analog_layers(model)] == ["0"]
    only = orthogonality_penalty(model[0], 0.3)
    only = float(only.detach())
    assert float(orthogonality_penalty(model, 0.3).detach()) == pytest.approx(only)
    assert math.isfinite(only)


def test_normalized_penalty_matches_naive_per_layer():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(7, 3), nn.Linear(3, 9), nn.Conv2d(2, 4, 3), nn.Linear(5, 5))
    lam = 0.34
    got = float(normalized_penalty(model, lam).detach())
    want = sum(naive.normalized_orthogonality_term(m.weight.detach().flatten(1).double().numpy(),
                                                   lam)
               for m in model if hasattr(m, "weight"))
    assert got == pytest.approx(want, rel=1e-5)
    # every layer counts the same: a term is the mean of (s^2/lam^2 - 1)^2 over singular values
    for m in model:
        s = torch.linalg.svdvals(m.weight.detach().flatten(1).double())
        mean = float(((s**2 / lam**2 - 1) ** 2).mean())
        assert float(normalized_penalty(m, lam).detach()) == pytest.approx(mean, rel=1e-5)


def test_normalized_penalty_is_size_and_scale_invariant():
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=torch.Generator().manual_seed(3)))
    small, big = nn.Linear(4, 4, bias=False), nn.Linear(40, 40, bias=False)
    with torch.no_grad():
        small.weight.copy_(torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0])) * 0.3)
        big.weight.copy_(q @ torch.diag(torch.tensor([1.0, 2.0] * 20)) * 0.3)
    a = float(normalized_penalty(small, 0.3).detach())
    assert a == pytest.approx(float(normalized_penalty(big, 0.3).detach()), rel=1e-5)
    assert a == pytest.approx(4.5, rel=1e-5)  # mean of (1-1)^2 and (4-1)^2
    with torch.no_grad():
        small.weight.mul_(3.0)
    assert float(normalized_penalty(small, 0.9).detach()) == pytest.approx(a, rel=1e-5)
    with pytest.raises(UsageError, match="lambda"):
        normalized_penalty(small, 0.0)


@pytest.mark.parametrize("shape", [(3, 8), (8, 3), (5, 5), (4, 2, 3, 3)])
def test_parseval_retract_sets_every_singular_value_to_lambda(shape):
    torch.manual_seed(4)
    layer = nn.Conv2d(2, 4, 3) if len(shape) == 4 else nn.Linear(shape[1], shape[0])
    bias = layer.bias.detach().clone()
    before = layer.weight.detach().flatten(1).double()
    parseval_retract(layer, 0.34)
    after = layer.weight.detach().flatten(1).double()
    s = torch.linalg.svdvals(after)
    torch.testing.assert_close(s, torch.full_like(s, 0.34), rtol=1e-5, atol=1e-6)
    assert float(normalized_penalty(layer, 0.34).detach()) < 1e-8
    torch.testing.assert_close(layer.bias.detach(), bias)
    # the polar factor is the nearest such matrix: closer than another Parseval matrix
    q, _ = torch.linalg.qr(torch.randn(max(before.shape), min(before.shape), dtype=torch.float64))
    other = 0.34 * (q if before.shape[0] >= before.shape[1] else q.t())
    assert (after - before).norm() <= (other - before).norm()


def test_parseval_retract_skips_digital_layers_and_rejects_bad_lambda():
    model = nn.Sequential(nn.Linear(4, 4), mark_digital(nn.Linear(4, 4)))
    digital = model[1].weight.detach().clone()
    parseval_retract(model, 0.5)
    torch.testing.assert_close(model[1].weight.detach(), digital)
    assert spectral_norms(model)["0"] == pytest.approx(0.5, rel=1e-5)
    with pytest.raises(UsageError, match="lambda"):
        parseval_retract(model, -1.0)
