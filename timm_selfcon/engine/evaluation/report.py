"""An evaluation's report (:class:`EvalReport`) and its files: ``report.json``, ``classifiers.safetensors`` and
``plot.png``, each written atomically."""
from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from ...fileio import atomic_path, write_json_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class EvalReport:
    """What one protocol's evaluation reports: ``report.json``, and what ``evaluate`` returns (as :meth:`to_dict`).

    The fields are ``report.json``'s keys, in its order, unchanged since before this class: the evaluation fills the
    first block, the protocol (its registered ``run``) ``hyperparameters``, ``results`` (shaped as the protocol's
    ``result_shape`` declares) and, where it has them, ``history``, ``early_exit`` and ``classifiers``; then the
    evaluation adds ``deviations`` and ``papers_protocol``. :meth:`from_dict` reads any report back, older ones
    included (a missing key gets its default; ``papers_protocol`` None: a report that does not say).
    """

    protocol: str = ""
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    checkpoint: str | None = None
    weights: str | None = None
    method: str | None = None
    dataset: dict[str, Any] = field(default_factory=dict)  # data, splits, classes and row counts
    columns: list[str] = field(default_factory=list)  # image and label column
    settings: dict[str, Any] = field(default_factory=dict)  # every evaluation key that shapes the numbers
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # head name -> results (the protocol's result_shape)
    history: list[dict[str, Any]] | None = None  # trained probes: test / val top-1 per probe epoch
    early_exit: list[dict[str, Any]] | None = None  # early_exit: one row per confidence threshold
    classifiers: list[str] | None = None  # the trained classifiers' names in the model (classifiers.safetensors)
    deviations: list[str] = field(default_factory=list)  # how the run differs from the papers' protocol
    papers_protocol: bool | None = None

    #: keys written only where the protocol filled them
    OPTIONAL = ("history", "early_exit", "classifiers")
    #: ``report.json``'s key order
    ORDER = ("model", "model_kwargs", "checkpoint", "weights", "method", "dataset", "protocol", "columns", "settings",
             "hyperparameters", "results", "history", "early_exit", "classifiers", "deviations", "papers_protocol")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report, ``report.json``'s keys in its order (a deep copy)."""
        return {key: copy.deepcopy(getattr(self, key)) for key in self.ORDER
                if key not in self.OPTIONAL or getattr(self, key) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalReport:
        """A report read back (``report.json``); keys it does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: copy.deepcopy(value) for key, value in data.items() if key in known})


#: the report keys ``timm-selfcon eval`` prints, in this order (which weights were evaluated first)
SUMMARY_KEYS = ("weights", "protocol", "results", "early_exit")


def write_report(out_dir: Path, report: EvalReport, classifiers: dict[str, torch.Tensor] | None,
                 output: str | None) -> list[Path]:
    """``report.json`` (and a copy at ``output``), ``classifiers.safetensors`` and ``plot.png``; returns their paths.

    ``classifiers`` uses the model's own parameter names (``fc.weight``, ``exit_heads.0.weight``, ...), so an
    export loads them straight into the model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if classifiers is not None:
        with atomic_path(out_dir / "classifiers.safetensors") as tmp:
            save_file(classifiers, str(tmp), metadata={"protocol": report.protocol})
        written.append(out_dir / "classifiers.safetensors")
    data = report.to_dict()
    for path in [out_dir / "report.json", *([Path(output)] if output else [])]:
        write_json_atomic(path, data)
        written.append(path)
    if plot_report(data, out_dir / "plot.png"):
        written.append(out_dir / "plot.png")
    return written


def plot_report(report: dict[str, Any], path: Path) -> bool:
    """Draw :func:`report_figure` into ``path`` (atomically).

    Returns False, after a one-line notice, where matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, so no {path.name} was drawn (pip install matplotlib, "
              "or timm-selfcon[plot])", file=sys.stderr)
        return False
    fig = report_figure(report)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return True


def report_figure(report: dict[str, Any]) -> Figure:
    """Accuracy per exit and ensemble (each bar labelled with its value; kNN: one bar per k), the probe's training
    curve and the early-exit curve (each point labelled with its threshold; points too close to label apart share
    one label), those present in ``report``. The caller closes the figure (``plt.close``)."""
    import matplotlib.pyplot as plt

    panels = [p for p in ("results", "history", "early_exit") if report.get(p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    early_exit_ax = None
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "results":
            _draw_results(ax, report)
        elif panel == "history":
            for name in report["history"][0]["test_top1"]:
                ax.plot([h["epoch"] for h in report["history"]],
                        [h["test_top1"][name] for h in report["history"]], label=name)
            ax.set_xlabel("probe epoch")
            ax.set_ylabel("test top-1 (%)")
            ax.legend()
        else:
            rows = report["early_exit"]
            ax.plot([r["mean_flops"] / 1e6 for r in rows], [r["top1"] for r in rows], marker="o")
            ax.margins(x=0.15, y=0.2)  # room for the threshold labels inside the axes
            ax.set_xlabel("mean MFLOPs per image")
            ax.set_ylabel("top-1 (%)")
            ax.set_title("early exit (labels: confidence threshold)")
            early_exit_ax = ax
    fig.tight_layout()
    if early_exit_ax is not None:  # placed on the final layout, where their sizes in pixels are known
        _label_thresholds(early_exit_ax, report["early_exit"])
    return fig


def _draw_results(ax: Any, report: dict[str, Any]) -> None:
    """One bar per head (a probe's last-epoch top-1) or, for kNN, per head and k; each bar shows its value."""
    res = report["results"]
    names, values = [], []
    for name, result in res.items():
        if "last" in result:  # a trained probe: its last epoch
            names.append(name)
            values.append(result["last"]["top1"])
        else:  # kNN: {"k20": top-1, "k200": top-1}
            for key, value in result.items():
                names.append(f"{name}\nk={key.removeprefix('k')}" if key.startswith("k") else f"{name}\n{key}")
                values.append(value)
    bars = ax.bar(names, values)
    ax.bar_label(bars, fmt="%.1f", padding=2)
    ax.set_ylim(0, max([*values, 1.0]) * 1.12)  # headroom for the values
    split = report.get("dataset", {}).get("eval_split", "test")
    if report["protocol"] == "knn":
        hyper = report.get("hyperparameters", {})
        ks = ", ".join(str(k) for k in hyper.get("k", [])) or "?"
        temperature = hyper.get("temperature")
        ax.set_title(f"kNN ({split}): k = {ks}" + (f", T = {temperature:g}" if temperature is not None else ""))
        ax.set_ylabel("top-1 (%)")
    else:
        ax.set_title(f"{report['protocol']} ({split})")
        ax.set_ylabel("top-1 (%), last probe epoch")


def _label_thresholds(ax: Any, rows: list[dict[str, Any]]) -> None:
    """Label each early-exit point with its threshold, without two labels overlapping.

    Points closer than a label's size share one label (``0.9, 0.95, 0.99``); each label then takes the first of a
    few offsets around its point that keeps it inside the axes and overlaps no label placed before it.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    points = [ax.transData.transform((r["mean_flops"] / 1e6, r["top1"])) for r in rows]
    groups: list[list[int]] = []
    for index in sorted(range(len(rows)), key=lambda i: rows[i]["threshold"]):
        near = next((g for g in groups if abs(points[g[0]][0] - points[index][0]) < 24
                     and abs(points[g[0]][1] - points[index][1]) < 12), None)
        if near is None:
            groups.append([index])
        else:
            near.append(index)
    offsets = [(5, 5, "left", "bottom"), (5, -5, "left", "top"), (-5, 5, "right", "bottom"), (-5, -5, "right", "top"),
               (0, 12, "center", "bottom"), (0, -12, "center", "top")]
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for group in groups:
        anchor = rows[group[0]]
        text = ", ".join(f"{rows[i]['threshold']:g}" for i in group)
        candidates = []
        for dx, dy, ha, va in offsets:
            label = ax.annotate(text, (anchor["mean_flops"] / 1e6, anchor["top1"]), xytext=(dx, dy),
                                textcoords="offset points", ha=ha, va=va, fontsize=7)
            box = label.get_window_extent(renderer)
            label.remove()
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            candidates.append((not inside, any(box.overlaps(other) for other in placed), (dx, dy, ha, va), box))
        # the first free place inside the axes; failing that, one inside, overlapping (very crowded points)
        _, _, (dx, dy, ha, va), box = min(candidates, key=lambda c: (c[0], c[1]))
        ax.annotate(text, (anchor["mean_flops"] / 1e6, anchor["top1"]), xytext=(dx, dy), textcoords="offset points",
                    ha=ha, va=va, fontsize=7)
        placed.append(box)
