"""benchmarks/device/device_prepare.py: what it carries to the device machine and how it counts what travels."""
import subprocess
from pathlib import Path

import pytest

from benchmarks.device import device_prepare


def test_copy_data_names_the_missing_split_and_copies_both(tmp_path: Path) -> None:
    source = tmp_path / "cifar10"
    source.mkdir()
    (source / "train.parquet").write_bytes(b"train")
    with pytest.raises(SystemExit, match=r"missing \['test.parquet'\]"):
        device_prepare.copy_data(source, tmp_path / "pack")
    (source / "test.parquet").write_bytes(b"test")
    device_prepare.copy_data(source, tmp_path / "pack")
    assert (tmp_path / "pack" / "train.parquet").read_bytes() == b"train"


def test_travel_counts_tracked_and_untracked_files_and_the_pack_but_not_ignored_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.device/\n/runs/\n")  # 17 bytes
    (tmp_path / "tracked.py").write_bytes(b"x" * 100)
    (tmp_path / "untracked.txt").write_bytes(b"y" * 10)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "big.bin").write_bytes(b"z" * 10_000)  # ignored: stays behind
    (tmp_path / ".device" / "wheels").mkdir(parents=True)
    (tmp_path / ".device" / "wheels" / "w.whl").write_bytes(b"w" * 1_000)  # carried
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.py", ".gitignore"], check=True)
    monkeypatch.setattr(device_prepare, "ROOT", tmp_path)
    monkeypatch.setattr(device_prepare, "PACK", tmp_path / ".device")
    total, largest = device_prepare.travel_bytes()
    assert total == 17 + 100 + 10 + 1_000
    assert largest[0] == (1_000, ".device/wheels/w.whl")
    with pytest.raises(SystemExit, match="differs from HEAD"):
        device_prepare.clean_commit()
