"""An evaluation's files: ``report.json``, ``classifiers.safetensors`` and ``plot.png``, each written atomically."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ...fileio import atomic_path, write_json_atomic


def write_report(out_dir: Path, report: dict[str, Any], classifiers: dict[str, torch.Tensor] | None,
                 output: str | None) -> list[Path]:
    """``report.json`` (and a copy at ``output``), ``classifiers.safetensors`` and ``plot.png``; returns their paths.

    ``classifiers`` uses the model's own parameter names (``fc.weight``, ``exit_heads.0.weight``, ...), so an
    export loads them straight into the model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if classifiers is not None:
        with atomic_path(out_dir / "classifiers.safetensors") as tmp:
            save_file(classifiers, str(tmp), metadata={"protocol": report["protocol"]})
        written.append(out_dir / "classifiers.safetensors")
    for path in [out_dir / "report.json", *([Path(output)] if output else [])]:
        write_json_atomic(path, report)
        written.append(path)
    if plot_report(report, out_dir / "plot.png"):
        written.append(out_dir / "plot.png")
    return written


def plot_report(report: dict[str, Any], path: Path) -> bool:
    """Accuracy per exit and ensemble, the probe's training curve and the early-exit curve (if present).

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
    panels = [p for p in ("results", "history", "early_exit") if report.get(p)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    try:
        for ax, panel in zip(axes[0], panels):
            if panel == "results":
                res = report["results"]
                names = list(res)
                values = [res[n]["last"]["top1"] if "last" in res[n] else next(iter(res[n].values())) for n in names]
                ax.bar(names, values)
                ax.set_ylabel("top-1 (%)")
                ax.set_title(f"{report['protocol']} ({report['dataset']['eval_split']})")
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
                for r in rows:
                    ax.annotate(f"{r['threshold']:g}", (r["mean_flops"] / 1e6, r["top1"]), fontsize=7)
                ax.set_xlabel("mean MFLOPs per image")
                ax.set_ylabel("top-1 (%)")
                ax.set_title("early exit (threshold sweep)")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return True
