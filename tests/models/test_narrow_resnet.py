"""selfcon_resnet10_w16_cifar and the stage_channels kwarg (ours, for CPU-scale runs)."""
import pytest
import timm
import torch

import timm_selfcon  # noqa: F401


def test_w16_is_resnet10_at_a_quarter_width() -> None:
    narrow = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=10)
    same = timm.create_model("selfcon_resnet10_cifar", num_classes=10, stage_channels=(16, 32, 64, 128))
    assert [i["num_chs"] for i in narrow.feature_info] == [16, 16, 32, 64, 128]
    assert narrow.num_features == 128 and narrow.exits[0].fc.out_features == 128
    assert {k: v.shape for k, v in narrow.state_dict().items()} == {k: v.shape for k, v in same.state_dict().items()}
    encoder = timm.create_model("selfcon_resnet10_w16_cifar", num_classes=0)
    assert sum(p.numel() for p in encoder.parameters()) == 311_760
    x = torch.randn(2, 3, 32, 32)
    assert narrow(x).shape == (2, 10)
    assert [f.shape for f in narrow.forward_exits(x)] == [(2, 128), (2, 128)]


@pytest.mark.parametrize("bad", [(16, 32, 64), (16, 32, 0, 128), (16.0, 32, 64, 128)])
def test_bad_stage_channels_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="stage_channels must give 4 positive ints"):
        timm.create_model("selfcon_resnet10_cifar", stage_channels=bad)
