"""The one ``autocast_disabled`` of the package, shared by the losses and the methods."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

from timm_selfcon.precision import autocast_disabled

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "timm_selfcon"


def test_autocast_disabled_keeps_float32_inside_a_bf16_autocast_region():
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with autocast_disabled(a.device):
            assert (a @ a).dtype == torch.float32
        assert (a @ a).dtype == torch.bfloat16  # restored on leaving


def test_the_package_defines_no_other_autocast_context():
    """Every layer imports this one (models and losses may not import methods): no copy anywhere else."""
    copies = [f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno} {node.name}"
              for path in sorted(PACKAGE_DIR.rglob("*.py")) if path.name != "precision.py"
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.FunctionDef) and "autocast" in node.name]
    assert not copies, copies
