"""Atomic file and folder writes: a temporary name beside the target, then one ``os.replace``.

A process killed at any moment leaves either the old file (or folder) or the new one, never half of one. Every
writer of the package (run files, checkpoints, evaluation reports, fine-tuning outputs, exports, conversions,
benchmarks) goes through here (``tests/test_fileio.py`` checks the package's modules for writes that do not).
The one exception to "whole or nothing" is :func:`append_line`, for logs that grow line by line
(``metrics.jsonl``): a killed writer can leave at most its last line incomplete, which readers skip.
Imports nothing of timm_selfcon, so every layer may use it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["append_line", "atomic_dir", "atomic_path", "match_umask", "write_json_atomic", "write_text_atomic"]


def match_umask(root: str | os.PathLike[str]) -> None:
    """Give every file under ``root`` (or ``root`` itself) the permissions of a newly created ordinary file.

    Some writers (safetensors, ``tempfile``) create files readable only by their owner; shared run folders and
    exports should read like any file the user writes.
    """
    root = Path(root)
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *(root.rglob("*") if root.is_dir() else ())]:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``, on error it is removed.

    For writers that take a file name (``safetensors.torch.save_file``, ``Figure.savefig``), e.g.
    ``with atomic_path(out / "plot.png") as tmp: fig.savefig(tmp)``. The temporary name keeps ``path``'s suffix
    (``.plot.png.tmp.png``) so writers that choose a format by suffix still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        match_umask(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (creating its parent folders)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike[str], content: Any, **dumps_kwargs: Any) -> None:
    """Write ``content`` as indented JSON to ``path`` atomically (extra keyword arguments go to ``json.dumps``)."""
    write_text_atomic(path, json.dumps(content, indent=2, **dumps_kwargs) + "\n")


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if missing) in one write, flushed to the OS before returning.

    Appending keeps a long run's log O(1) per record; a process killed mid-write can leave only the last line
    incomplete (no earlier line is touched), so readers of such a log skip a last line that does not parse.
    """
    if "\n" in line:
        raise ValueError(f"append_line writes one line; got text with a newline: {line[:80]!r}")
    with open(path, "a") as f:
        f.write(line + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``, on error it is removed.

    ``replace=False`` refuses (``FileExistsError``) to replace an existing ``path``; with ``replace=True`` the old
    folder is removed just before the rename (the only moment neither exists).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a killed writer
    tmp.mkdir(parents=True)
    try:
        yield tmp
        match_umask(tmp)
        if path.exists():
            if not replace:
                raise FileExistsError(f"{str(path)!r} exists; not replacing it")
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
