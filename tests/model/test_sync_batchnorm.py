"""convert_sync_batchnorm / revert_sync_batchnorm: shared state, flags, round trip (spec §7.7, §8(i))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fengine.model import convert_sync_batchnorm, revert_sync_batchnorm
from fengine.model.utils import _BatchNormXd


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False)),
    )
    model.train()
    model[1](
        torch.randn(5, 4, 2, 2)
    )  # move running stats and num_batches_tracked off their defaults
    with torch.no_grad():
        model[1].weight.uniform_()
        model[1].bias.uniform_()
    return model


def test_convert_shares_state_and_keeps_training_flag() -> None:
    model = make_model()
    model[
        1
    ].eval()  # fengine keeps this flag (MMEngine's converted layer comes back in training mode)
    bn, inner = model[1], model[2][1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = convert_sync_batchnorm(model)
    assert out is model
    assert type(model[1]) is nn.SyncBatchNorm and type(model[2][1]) is nn.SyncBatchNorm
    assert model[1].weight is bn.weight and model[1].running_mean is bn.running_mean
    assert model[1].num_batches_tracked is bn.num_batches_tracked
    assert model[1].training is False and model[2][1].training is True and inner.training is True
    assert model[2][1].affine is False and model[2][1].weight is None
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_round_trip_keeps_every_tensor_and_forward() -> None:
    model = make_model()
    x = torch.randn(2, 3, 4, 4)
    model.eval()
    expected = model[1](model[0](x))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reverted = revert_sync_batchnorm(convert_sync_batchnorm(model))
    assert type(reverted[1]) is _BatchNormXd and isinstance(
        reverted[1], nn.modules.batchnorm._BatchNorm
    )
    assert reverted[1].training is False
    after = reverted.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before) and after.keys() == before.keys()
    assert after["1.num_batches_tracked"].item() == 1
    assert torch.equal(reverted[1](reverted[0](x)), expected)


def test_reverted_layer_accepts_any_rank_and_trains_like_batchnorm() -> None:
    bn = nn.BatchNorm1d(3)
    reference = nn.BatchNorm1d(3)
    reverted = revert_sync_batchnorm(convert_sync_batchnorm(bn))
    assert type(reverted) is _BatchNormXd
    x = torch.randn(4, 3, 2, 2, 2)  # 5-D: BatchNorm1d itself would refuse it
    y = reverted(x)
    ref = reference(x.transpose(1, 4).reshape(-1, 3)).reshape(4, 2, 2, 2, 3).transpose(1, 4)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(reverted.running_mean, reference.running_mean)


def test_convert_a_bare_batchnorm_returns_the_replacement() -> None:
    bn = nn.BatchNorm2d(2)
    out = convert_sync_batchnorm(bn)
    assert isinstance(out, nn.SyncBatchNorm) and out.weight is bn.weight


def test_convert_argument_errors() -> None:
    with pytest.raises(ValueError, match="implementation must be 'torch', got 'mmcv'"):
        convert_sync_batchnorm(nn.Linear(1, 1), implementation="mmcv")
    with pytest.raises(TypeError, match="process_group"):
        convert_sync_batchnorm(nn.Linear(1, 1), "torch")
