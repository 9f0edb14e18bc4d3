"""The protocols' registry (issue 25, item 3): each protocol module declares itself; ``protocol=all``, ``export``'s
choice, the card's paragraphs and the console script's help all follow the registry; the report is typed."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch.nn as nn

from timm_selfcon.engine.evaluate import EvalConfig
from timm_selfcon.engine.evaluation import names
from timm_selfcon.engine.evaluation.registry import (
    ALL,
    all_protocols,
    classifier_protocols,
    protocol,
    protocol_choices,
    protocols,
    register_protocol,
)
from timm_selfcon.engine.evaluation.report import EvalReport
from timm_selfcon.errors import UserInputError
from timm_selfcon.hub.export import CLASSIFIER_PROTOCOLS
from timm_selfcon.models.factory import create_model

FIXTURES = Path(__file__).resolve().parents[2] / "hub" / "fixtures" / "old_exports"


def test_the_light_declaration_is_in_step_with_the_registry() -> None:
    """``names.py`` (read by the torch-free ``--help`` and by ``hub.export``) names exactly the registered protocols,
    in the registry's orders; a new protocol module fails here until it is declared there too."""
    assert all_protocols() == names.PROTOCOL_NAMES
    assert names.CLASSIFIER_PROTOCOL_NAMES == classifier_protocols() == CLASSIFIER_PROTOCOLS
    assert names.DEFAULT_PROTOCOL in protocols() and EvalConfig().protocol == names.DEFAULT_PROTOCOL
    assert protocol_choices() == (*all_protocols(), names.ALL) and names.ALL == ALL


def test_the_light_declaration_imports_nothing() -> None:
    tree = ast.parse(Path(names.__file__).read_text())
    imports = [node.lineno for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, f"engine/evaluation/names.py must import nothing (lines {imports})"


def test_every_protocol_declares_itself() -> None:
    for name, declared in protocols().items():
        assert declared.name == name and declared.card_text and callable(declared.run)
        assert declared.result_shape in ("epochs per head", "top-1 per k")
        assert (declared.export_rank is not None) == declared.trains_classifiers
    # the fast ones first, the papers' protocol last (protocol=all's order)
    assert all_protocols()[-1] == "linear" and protocol("linear").papers_protocol_possible
    assert not protocol("knn").trains_classifiers and protocol("knn").result_shape == "top-1 per k"


def test_what_applies_to_a_model() -> None:
    multi_exit = create_model("selfcon_resnet18_cifar", num_classes=10)
    plain = create_model("mixco_resnet18_cifar", num_classes=10)
    assert [p for p in all_protocols() if protocol(p).applies_to(multi_exit)] == list(all_protocols())
    assert [p for p in all_protocols() if not protocol(p).applies_to(plain)] == ["early_exit"]
    assert protocol("linear").applies_to(nn.Linear(2, 2))


def test_the_card_calls_a_run_the_papers_protocol_only_with_the_papers_settings() -> None:
    linear = protocol("linear")
    assert linear.card_description(True).startswith("Linear evaluation, the papers' protocol:")
    assert "so not the papers' protocol" in linear.card_description(False)
    assert "does not record every setting" in linear.card_description(None)
    # a protocol that is never the papers' has one paragraph whatever the report says
    fast = protocol("linear_fast")
    assert fast.card_description(True) == fast.card_description(False) == fast.card_description(None)


def test_unknown_and_reserved_names() -> None:
    with pytest.raises(UserInputError, match="unknown protocol 'nope'; expected one of"):
        protocol("nope")
    with pytest.raises(ValueError, match="'all' is not a protocol name"):
        register_protocol(ALL, card_text="x", trains_classifiers=False, result_shape="top-1 per k", all_rank=9)
    with pytest.raises(TypeError, match="export_rank"):
        register_protocol("probe_without_rank", card_text="x", trains_classifiers=True,
                          result_shape="epochs per head", all_rank=9)(lambda inputs, report: None)
    assert "probe_without_rank" not in protocols()


def test_a_new_protocol_registers_and_joins_all() -> None:
    """One decorated ``run`` is all a protocol needs: it joins ``protocol=all`` in its rank and is validated."""
    def run(inputs, report):  # pragma: no cover - not run here
        return None

    register_protocol("centroid", card_text="Nearest class mean.", trains_classifiers=False,
                      result_shape="top-1 per k", all_rank=1.5)(run)
    try:
        assert all_protocols() == ("linear_fast", "knn", "centroid", "early_exit", "linear")
        assert EvalConfig(protocol="centroid").protocol == "centroid"
        assert "centroid" not in classifier_protocols()
    finally:
        del protocols()["centroid"]


def test_the_report_keeps_report_json_keys() -> None:
    report = EvalReport(protocol="knn", model="m", checkpoint=None, weights="random init (torch seed 0)",
                        method=None, dataset=dict(data="d"), columns=["image", "label"], settings=dict(seed=0),
                        hyperparameters=dict(k=[20]), results=dict(backbone=dict(k20=10.0)),
                        deviations=["knn: ..."], papers_protocol=False)
    data = report.to_dict()
    assert list(data) == ["model", "model_kwargs", "checkpoint", "weights", "method", "dataset", "protocol", "columns",
                          "settings", "hyperparameters", "results", "deviations", "papers_protocol"]
    assert EvalReport.from_dict(json.loads(json.dumps(data))) == report


@pytest.mark.parametrize("export", ["selfcon_early_exit", "selfcon_no_exits"])
def test_older_reports_read_back(export: str) -> None:
    """Reports written before settings, deviations and papers_protocol were recorded (the hub fixtures) read back;
    a report that does not say whether it ran the papers' protocol reads as None (the card then says so)."""
    info = json.loads((FIXTURES / export / "export_info.json").read_text())
    for name, raw in info["evaluations"].items():
        report = EvalReport.from_dict(raw)
        assert report.protocol == name and report.results == raw["results"] and report.papers_protocol is None
        assert {k: v for k, v in report.to_dict().items() if k in raw} == raw
