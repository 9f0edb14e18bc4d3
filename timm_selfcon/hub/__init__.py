"""Publishing to the Hugging Face Hub: export, model cards, push, and conversion of official SelfCon checkpoints.

Papers: SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) and MixCo (Kim et al., arXiv 2010.06300).

- :func:`export`: training checkpoint (+ its evaluation) -> a folder timm's ``hf-hub:`` / ``local-dir:`` loader reads
  (``config.json``, ``model.safetensors``, ``README.md``);
- :func:`push`: that folder -> ``ORG/NAME`` on the Hub through ``HfApi`` (``dry_run`` shows it without network);
- :func:`render_card`: the model card of an export;
- :func:`convert_official`: an official SelfCon checkpoint -> this package's training-checkpoint format.

Pretrained tags follow ``<architecture>.<method>_<dataset>`` (e.g. ``selfcon_resnet18_cifar.selfcon_cifar100``,
published at ``ORG/selfcon_resnet18_cifar.selfcon_cifar100``). A tag is added to a model file's ``default_cfgs``
with its ``hf_hub_id`` only once its weights are on the Hub, and listed in :data:`PUBLISHED_TAGS`, so
``timm.list_pretrained()`` never lists weights that do not exist.
"""
from .card import render_card
from .convert import convert_official
from .export import CLASSIFIER_PROTOCOLS, ExportResult, export, suggested_name
from .push import HubPushError, PushResult, push

#: Pretrained tags (``arch.tag``) whose weights are published; each has an ``hf_hub_id`` in its model's default_cfgs.
PUBLISHED_TAGS: tuple[str, ...] = ()

__all__ = [
    "CLASSIFIER_PROTOCOLS",
    "PUBLISHED_TAGS",
    "ExportResult",
    "HubPushError",
    "PushResult",
    "convert_official",
    "export",
    "push",
    "render_card",
    "suggested_name",
]
