"""The one atomic-write helper: the target is either the old content or the new, never half, and no temp is left."""
from __future__ import annotations

import json

import pytest

from timm_selfcon.fileio import atomic_dir, atomic_path, write_json_atomic, write_text_atomic


def test_write_text_and_json_replace_and_leave_no_temp(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    write_text_atomic(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["report.json", "sub", "x.txt"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "plot.png"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_atomic_dir_refuses_to_replace_unless_asked_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "export"
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("v1")
    assert (target / "model.safetensors").read_text() == "v1"
    with pytest.raises(FileExistsError), atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("v2")
    with pytest.raises(ValueError), atomic_dir(target, replace=True) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise ValueError("round trip failed")
    assert (target / "model.safetensors").read_text() == "v1"
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "model.safetensors").write_text("v3")
    assert (target / "model.safetensors").read_text() == "v3"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
