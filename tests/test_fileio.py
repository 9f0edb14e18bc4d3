"""The one atomic-write helper: the target is either the old content or the new, never half, and no temp is left."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from timm_selfcon.fileio import append_line, atomic_dir, atomic_path, write_json_atomic, write_text_atomic


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


def test_append_line_appends_one_line_and_refuses_a_newline(tmp_path):
    log = tmp_path / "metrics.jsonl"
    append_line(log, '{"step": 1}')
    append_line(log, '{"step": 2}')
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    with pytest.raises(ValueError, match="one line"):
        append_line(log, '{"step": 3}\n{"step": 4}')
    assert log.read_text().count("\n") == 2


# ------------------------------------------------------------------------ every writer of the package goes through here

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "timm_selfcon"
#: calls that write a file themselves; inside ``with atomic_dir(...)`` / ``with atomic_path(...)`` they are atomic
WRITING_METHODS = ("write_text", "write_bytes")
ATOMIC_CONTEXTS = ("atomic_dir", "atomic_path")


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _writing_mode(call: ast.Call) -> bool:
    """``open(path, "w")``, ``path.open("a")``, ``open(path, mode="x")``: a mode that writes."""
    position = 1 if isinstance(call.func, ast.Name) else 0  # open(path, mode) / path.open(mode)
    mode = next((k.value for k in call.keywords if k.arg == "mode"),
                call.args[position] if len(call.args) > position else None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and bool(set(mode.value) & set("wax+"))


def non_atomic_writes(source: str) -> list[int]:
    """Lines of ``source`` that write a file outside fileio's helpers and outside an atomic folder or path."""
    found = []

    def visit(node: ast.AST, atomic: bool) -> None:
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                isinstance(item.context_expr, ast.Call) and _called_name(item.context_expr) in ATOMIC_CONTEXTS
                for item in node.items):
            atomic = True
        if isinstance(node, ast.Call) and not atomic:
            name = _called_name(node)
            if name in WRITING_METHODS or (name == "open" and _writing_mode(node)):
                found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, atomic)

    visit(ast.parse(source), False)
    return found


def test_the_scan_finds_plain_writes_and_accepts_atomic_ones():
    source = '''
path.write_text("x")
with open(path, "a") as f: pass
with path.open(mode="w") as f: pass
with open(path) as f: pass
with atomic_dir(out) as tmp:
    (tmp / "a.json").write_text("{}")
with atomic_path(out / "b") as tmp:
    tmp.write_bytes(b"")
'''
    assert non_atomic_writes(source) == [2, 3, 4]


def test_no_module_of_the_package_writes_a_file_without_fileio():
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "fileio.py" and path.parent == PACKAGE_DIR:
            continue
        offenders += [f"{path.relative_to(PACKAGE_DIR.parent)}:{line}" for line in non_atomic_writes(path.read_text())]
    assert not offenders, ("write through timm_selfcon.fileio (write_text_atomic, write_json_atomic, append_line, "
                           f"atomic_path, atomic_dir): {offenders}")
