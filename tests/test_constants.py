"""``timm_selfcon.constants``: the values every layer shares, and ``training_normalization``."""
import pytest

from timm_selfcon import constants
from timm_selfcon.constants import NORMALIZATION, training_normalization


@pytest.mark.parametrize(
    ("data", "family"),
    [
        ("uoft-cs/cifar10", "cifar10"),
        ("cifar10", "cifar10"),
        ("builtin:cifar10_subset", "cifar10"),
        ("/data/CIFAR10/train.parquet", "cifar10"),
        ("uoft-cs/cifar100", "cifar100"),
        ("/data/cifar-100", "cifar100"),
        ("CIFAR100", "cifar100"),
        ("zh-plus/tiny-imagenet", "imagenet"),
        ("ILSVRC/imagenet-1k", "imagenet"),
        ("/some/folder", "imagenet"),
    ],
)
def test_training_normalization_by_dataset_name(data: str, family: str) -> None:
    assert training_normalization(data) == NORMALIZATION[family]


def test_training_normalization_takes_paths() -> None:
    from pathlib import Path

    assert training_normalization(Path("/x/cifar100/train.parquet")) == NORMALIZATION["cifar100"]


def test_normalization_values_of_the_papers_code() -> None:
    # SupContrast / SelfCon CIFAR-10 statistics, and torchvision's ImageNet ones
    assert NORMALIZATION["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    assert NORMALIZATION["cifar100"] == ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
    assert NORMALIZATION["imagenet"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_data_layer_re_exports_the_same_objects() -> None:
    import timm_selfcon.data as data

    for name in ("CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "IMAGENET_MEAN", "IMAGENET_STD",
                 "NORMALIZATION"):
        assert getattr(data, name) is getattr(constants, name), name
        assert name in data.__all__


def test_model_cfgs_use_the_shared_cifar_statistics() -> None:
    import timm

    import timm_selfcon  # noqa: F401  (registers the models)

    for name in ("selfcon_resnet18_cifar", "selfcon_wrn16_8_cifar", "selfcon_vit_tiny_patch4_32", "mixco_resnet18_cifar"):
        cfg = timm.get_pretrained_cfg(name)
        assert (tuple(cfg.mean), tuple(cfg.std)) == NORMALIZATION["cifar10"], name


def test_every_method_names_a_declared_pipeline() -> None:
    from timm_selfcon.augmentations import AUGMENTATIONS
    from timm_selfcon.data.transforms import PIPELINES
    from timm_selfcon.methods import METHODS

    assert PIPELINES is AUGMENTATIONS  # one table for both data paths
    assert {cls.augmentation for cls in METHODS.values()} <= set(AUGMENTATIONS)


def test_builtin_subset_id_names_the_shipped_folder() -> None:
    from timm_selfcon.data import CIFAR10_SUBSET
    from timm_selfcon.data.builtin import BUILTIN_DATASETS

    assert BUILTIN_DATASETS[constants.CIFAR10_SUBSET_ID] == CIFAR10_SUBSET
    assert (CIFAR10_SUBSET / "train.parquet").is_file()
