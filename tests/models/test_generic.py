"""The generic path: SelfCon exits on timm CNNs named by the ``backbone`` kwarg."""
import pytest
import timm
import torch

import timm_selfcon  # noqa: F401  (registers the models)

BACKBONES = ["convnext_atto", "efficientnet_b0", "resnet26d"]


@pytest.mark.parametrize(("backbone", "sub_network"), list(zip(BACKBONES, ["fc", "small", "same"])))
def test_tapped_path_matches_backbone(backbone: str, sub_network: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("selfcon_timm", backbone=backbone, num_classes=5, sub_network=sub_network).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features, exit_maps = model._forward_with_exit_maps(x)
        torch.testing.assert_close(features, model.backbone.forward_features(x))
        logits = model.forward_exit_logits(x)
        assert len(exit_maps) == len(logits) - 1 == 1
        torch.testing.assert_close(model(x), torch.stack(logits).mean(0))
        torch.testing.assert_close(logits[-1], model.backbone(x))
        assert [f.shape for f in model.forward_exits(x)] == [(2, model.num_features)] * 2


def test_same_exit_shares_nothing_and_reset_covers_all_heads() -> None:
    model = timm.create_model("selfcon_timm", backbone="resnet26d", sub_network="same", num_classes=3)
    backbone_ptrs = {p.data_ptr() for p in model.backbone.parameters()}
    assert not backbone_ptrs & {p.data_ptr() for p in model.exits.parameters()}
    model.reset_classifier(7)
    assert model.backbone.get_classifier().out_features == 7
    assert all(head.out_features == 7 for head in model.exit_heads)
    assert model.pretrained_cfg["classifier"] == ("backbone.fc", "exit_heads.0")


def test_backbone_kwarg_errors() -> None:
    with pytest.raises(ValueError, match="not_a_backbone"):
        timm.create_model("selfcon_timm", backbone="not_a_backbone")
    with pytest.raises(ValueError, match="exit stage 4"):
        timm.create_model("selfcon_timm", backbone="resnet26d", exit_stages=(4,))
