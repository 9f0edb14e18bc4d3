"""The model card: exports written before the typed records render the same card, and what each method changes.

``fixtures/old_exports/<name>/`` hold an ``export_info.json`` written by the export code before
:mod:`timm_selfcon.hub.records` existed and ``card.md``, the card that code rendered from it for ``me/old-export``
(see the README there). No model is built here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from timm_selfcon.hub import render_card
from timm_selfcon.hub.card import FINETUNE_DESCRIPTION, RECIPE_KEYS, card_eval_results
from timm_selfcon.hub.records import ExitsInfo, ExportInfo
from timm_selfcon.methods import METHODS

from . import card_text_as_0_2, old_card_as_published

OLD_EXPORTS = Path(__file__).parent / "fixtures" / "old_exports"
OLD_NAMES = sorted(p.name for p in OLD_EXPORTS.iterdir() if p.is_dir())


def test_fixtures_are_there() -> None:
    assert OLD_NAMES == ["finetune", "minimal", "mixco_encoder_only", "selfcon_early_exit", "selfcon_no_exits"]


def _same_card(got: ModelCard, want: ModelCard) -> None:
    """The same text below the metadata, and the same metadata (compared parsed: YAML layout may differ).

    The one row added since 0.2 (the training method's paper) is left out of the comparison, and the old card's local
    paths are shortened as every card's now are."""
    assert card_text_as_0_2(got.text) == old_card_as_published(want.text)
    assert got.data.to_dict() == want.data.to_dict()


@pytest.mark.parametrize("name", OLD_NAMES)
def test_old_export_info_renders_the_card_it_rendered_before(name: str) -> None:
    old = json.loads((OLD_EXPORTS / name / "export_info.json").read_text())
    want = ModelCard.load(OLD_EXPORTS / name / "card.md")
    record = ExportInfo.from_dict(old)
    _same_card(render_card(record, "me/old-export"), want)
    _same_card(render_card(old, "me/old-export"), want)  # the JSON object itself is accepted too
    assert [r.metric_name for r in card_eval_results(old)] == [r.metric_name for r in want.data.eval_results or []]
    # the top-level method options the old recipe recorded are the values its method's options table shows
    from timm_selfcon.config import LEGACY_METHOD_KEYS

    recipe = old.get("recipe") or {}
    cls = METHODS.get(recipe.get("method"))
    text = render_card(old, "me/old-export").text
    for key, option in LEGACY_METHOD_KEYS.items():
        if cls is not None and option in cls.Options.model_fields and recipe.get(key) is not None:
            shown = str(recipe[key]).lower() if isinstance(recipe[key], bool) else str(recipe[key])
            assert f"| `{option}` | {shown} | " in text, (key, option)


def test_old_export_card_covers_every_protocol_section() -> None:
    text = (OLD_EXPORTS / "selfcon_early_exit" / "card.md").read_text()
    card = render_card(ExportInfo.read(OLD_EXPORTS / "selfcon_early_exit"), "me/old-export").text
    for needle in ("### Protocol `knn`", "| head | top-1 (%), k=20 | top-1 (%), k=200 |", "### Protocol `early_exit`",
                   "| threshold | top-1 (%) |", "exit 0 (after stage 1, `fc`)"):
        assert needle in text and needle in card


def _recipe(method: str) -> dict:
    # the method options at the top level, as runs of 0.3 saved them: the card reads them through the method's Options
    values = dict(model="selfcon_resnet18_cifar", model_kwargs={"exit_stages": [2]},
                  method_kwargs={"alpha": 1.0} if method.startswith("selfcon") else {},
                  temperature=0.1, base_temperature=0.07, projection_dim=128, queue_size=16, moco_momentum=0.99,
                  mix_temperature=0.05, mix_weight=1.0, data="uoft-cs/cifar10", class_list=[0, 1],
                  augmentation="supcon", image_size=32, epochs=1, max_steps=2, batch_size=8, optimizer="sgd", lr=0.1,
                  momentum=0.9, weight_decay=1e-4, schedule="cosine", warmup_epochs=1, precision="fp32", seed=0)
    assert set(RECIPE_KEYS) - {"method"} <= set(values)
    return dict(values, method=method)


# method -> (family with exits, method tags, MixCo base, projection-head sentence)
METHOD_CASES = {
    "ce": ("SelfCon", ["selfcon"], None, False),
    "supcon": ("SelfCon", ["selfcon", "supervised-contrastive-learning"], None, True),
    "supcon_s": ("SelfCon", ["selfcon", "supervised-contrastive-learning"], None, True),
    "selfcon": ("SelfCon", ["selfcon", "supervised-contrastive-learning"], None, True),
    "selfcon_m": ("SelfCon", ["selfcon", "supervised-contrastive-learning"], None, True),
    "simclr": ("SelfCon", ["selfcon", "self-supervised-learning"], None, True),
    "moco": ("SelfCon", ["selfcon", "self-supervised-learning"], None, True),
    "simclr_mixco": ("MixCo", ["mixco", "self-supervised-learning"], "SimCLR", True),
    "moco_mixco": ("MixCo", ["mixco", "self-supervised-learning"], "MoCo v2", True),
    "byol": ("SelfCon", ["self-supervised-learning"], None, True),
    "finetune": ("SelfCon", ["selfcon", "fine-tuned"], None, False),
    "not_a_method": ("SelfCon", ["selfcon"], None, False),
}


def test_method_cases_cover_every_registered_method() -> None:
    assert set(METHODS) <= set(METHOD_CASES)


@pytest.mark.parametrize("method", sorted(METHOD_CASES))
def test_what_the_method_changes_in_the_card(method: str) -> None:
    family, method_tags, base, projection_sentence = METHOD_CASES[method]
    info = ExportInfo(architecture="selfcon_resnet18_cifar", exits=ExitsInfo(stages=[2], sub_network="fc"),
                      encoder_only=True, recipe=_recipe(method))
    card = render_card(info, "me/model")
    tags = card.data.tags
    assert tags[:4] == ["image-classification", "timm", "timm-selfcon", "contrastive-learning"]
    assert tags[4:] == method_tags
    assert card.text.split("\n\n", 2)[1].startswith(f"A {family} `selfcon_resnet18_cifar` model")
    assert (" fine-tuned on `uoft-cs/cifar10`" in card.text) == (method == "finetune")
    listed = set(re.findall(r"^\| `(\w+)` \|", card.text, flags=re.MULTILINE))
    # the recipe's keys, and the options the method declares (its Options model), each with the value the run used
    options = METHODS[method].Options.model_fields if method in METHODS else {}
    assert listed == set(RECIPE_KEYS) | set(options)
    used = {"temperature": 0.1, "base_temperature": 0.07, "out_dim": 128, "queue_size": 16, "momentum": 0.99,
            "mix_temperature": 0.05, "mix_weight": 1.0, "alpha": 1.0}
    for option in options:
        default = options[option].default
        value = str(used.get(option, default)).lower() if isinstance(default, bool) else str(used.get(option, default))
        assert f"| `{option}` | {value} | " in card.text, (option, value)
    description = METHODS[method].description if method in METHODS else (
        FINETUNE_DESCRIPTION if method == "finetune" else f"Method `{method}`.")
    assert description in card.text
    assert ("| training method |" in card.text) == (method in METHODS)
    if method in METHODS:
        assert f"| training method | {METHODS[method].paper} |" in card.text
    assert ("Base method: **" in card.text) == (base is not None)
    if base is not None:
        assert f"Base method: **{base}**; mix temperature **0.05**, mix weight **1.0**." in card.text
    assert ("The projection heads used for training are not part of this model" in card.text) == projection_sentence

    without_exits = render_card(ExportInfo(architecture="a", encoder_only=True, recipe=_recipe(method)), "me/m")
    assert without_exits.text.split("\n\n", 2)[1].startswith(f"A {'MixCo' if base else 'timm-selfcon'} `a` model")
