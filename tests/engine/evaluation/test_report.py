"""``plot.png`` of an evaluation: bars that show their values, a kNN plot that names its k, threshold labels of the
early-exit curve that do not overlap (issue 24, item 26)."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from timm_selfcon.engine.evaluation.report import plot_report, report_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# a real sweep (benchmarks/results/runs/selfcon_seed0.json, rounded): the last four points lie within a few pixels
EARLY_EXIT = [dict(threshold=t, top1=a, mean_flops=f * 1e6) for t, a, f in [
    (0.0, 47.38, 272.1), (0.5, 47.57, 402.4), (0.7, 47.20, 465.1), (0.8, 47.08, 484.7), (0.9, 46.93, 499.5),
    (0.95, 46.92, 504.7), (0.99, 46.91, 506.9), (1.01, 46.91, 507.0)]]


def probe_result(top1: float) -> dict[str, Any]:
    return dict(last=dict(top1=top1, top5=90.0), best_val=dict(top1=top1, epoch=3), best_test=dict(top1=top1, epoch=4))


@pytest.fixture
def figures() -> Iterator[list]:
    drawn: list = []
    yield drawn
    for fig in drawn:
        plt.close(fig)


def draw(report: dict[str, Any], figures: list) -> Any:
    fig = report_figure(report)
    figures.append(fig)
    fig.canvas.draw()
    return fig


def test_bars_show_their_values(figures: list) -> None:
    report = dict(protocol="linear_fast", dataset=dict(eval_split="test"),
                  results=dict(exit_0=probe_result(47.38), backbone=probe_result(39.4), ensemble=probe_result(46.91)))
    ax = draw(report, figures).axes[0]
    assert [text.get_text() for text in ax.texts] == ["47.4", "39.4", "46.9"]
    assert "last probe epoch" in ax.get_ylabel()


def test_the_knn_plot_names_its_k(figures: list) -> None:
    report = dict(protocol="knn", dataset=dict(eval_split="test"), hyperparameters=dict(k=[20, 200], temperature=0.07),
                  results=dict(backbone=dict(k20=39.62, k200=38.28)))
    ax = draw(report, figures).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["backbone\nk=20", "backbone\nk=200"]
    assert "k = 20, 200" in ax.get_title() and [text.get_text() for text in ax.texts] == ["39.6", "38.3"]


def test_early_exit_threshold_labels_do_not_overlap_and_name_every_threshold(figures: list) -> None:
    report = dict(protocol="early_exit", dataset=dict(eval_split="test"),
                  results=dict(exit_0=probe_result(47.38), backbone=probe_result(39.4)), early_exit=EARLY_EXIT)
    fig = draw(report, figures)
    ax = fig.axes[-1]
    renderer = fig.canvas.get_renderer()
    labels = [(text.get_text(), text.get_window_extent(renderer)) for text in ax.texts]
    for (first, a), (second, b) in itertools.combinations(labels, 2):
        assert not a.overlaps(b), f"labels {first!r} and {second!r} overlap"
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= box.x0 and box.x1 <= frame.x1 for _, box in labels), "a label leaves the axes"
    named = sorted(float(value) for text, _ in labels for value in text.split(", "))
    assert named == [row["threshold"] for row in EARLY_EXIT]


def test_plot_report_writes_the_png(tmp_path: Path) -> None:
    report = dict(protocol="knn", dataset=dict(eval_split="test"), hyperparameters=dict(k=[20], temperature=0.07),
                  results=dict(backbone=dict(k20=39.62)))
    assert plot_report(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
