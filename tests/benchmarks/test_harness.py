"""benchmarks/harness.py: a measurement in a fresh process, the environment record, tables, atomic JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import ROOT, environment, format_table, run_fresh, write_json


def fresh_report(spec: dict) -> dict:
    """Runs in the fresh process: what it sees."""
    return {"pid": os.getpid(), "spec": spec, "variable": os.environ.get("HARNESS_TEST_VARIABLE")}


def fails(spec: dict) -> None:
    raise ValueError(f"planted failure {spec}")


def no_argument() -> list[int]:
    return [1, 2]


def test_run_fresh_returns_the_result_of_another_process_with_its_environment() -> None:
    result = run_fresh(fresh_report, {"name": "case", "values": [1.5, None]}, env={"HARNESS_TEST_VARIABLE": "set"})
    assert result["pid"] != os.getpid()
    assert result["spec"] == {"name": "case", "values": [1.5, None]}
    assert result["variable"] == "set"
    assert run_fresh(no_argument) == [1, 2]


def test_run_fresh_reports_the_failure_of_the_fresh_process() -> None:
    with pytest.raises(RuntimeError, match=r"(?s)test_harness.py:fails\(\{\"a\": 1\}\) failed.*planted failure"):
        run_fresh(fails, {"a": 1})
    with pytest.raises(ValueError, match="module-level function"):
        run_fresh(lambda: None)


SCRIPT = """
import dataclasses, importlib.util, json

from benchmarks.harness import run_fresh


@dataclasses.dataclass
class Spec:  # a dataclass needs its module under its own name in the fresh process
    size: int


def where(spec: dict) -> dict:
    import benchmarks.speed  # the scripts' imports of their package work there

    return {"module": __name__, "size": Spec(**spec).size, "package": benchmarks.speed.__name__,
            "shadowing": importlib.util.find_spec("speed") is not None}  # benchmarks/ itself is not on the path


if __name__ == "__main__":
    print(json.dumps(run_fresh(where, {"size": 3}, env={"PYTHONPATH": ""})))  # the harness finds the root itself
"""


def test_run_fresh_from_a_script_run_with_python_m_imports_it_under_its_dotted_name(tmp_path: Path) -> None:
    """``python -m benchmarks.<folder>.<script>`` makes the script ``__main__``; the fresh process imports its file
    under the dotted name (its own ``__main__`` block does not run there) with the repository root on the path."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "__init__.py").write_text("")
    (tmp_path / "scripts" / "probe.py").write_text(SCRIPT)
    completed = subprocess.run([sys.executable, "-m", "scripts.probe"], cwd=tmp_path, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == {"module": "scripts.probe", "size": 3,
                                                            "package": "benchmarks.speed", "shadowing": False}


def test_environment_reads_the_keys_asked_for_under_the_names_asked_for() -> None:
    env = environment("torch", "cpu_count", machine="cpu", load_average_before="load_average")
    assert list(env) == ["torch", "cpu_count", "machine", "load_average_before"]
    assert env["torch"] and env["cpu_count"] == os.cpu_count() and len(env["load_average_before"]) == 3
    assert set(environment()) >= {"python", "torch", "timm", "timm_selfcon", "device", "threads", "git_commit"}
    with pytest.raises(KeyError, match="unknown environment keys"):
        environment("gpu_memory")


def test_git_commit_falls_back_to_the_recorded_one_in_a_tree_without_git(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import harness

    monkeypatch.setattr(harness, "ROOT", tmp_path)  # a copied tree, as the device machine gets
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("TIMM_SELFCON_GIT_COMMIT", raising=False)
    assert environment("git_commit") == {"git_commit": None}
    monkeypatch.setenv("TIMM_SELFCON_GIT_COMMIT", "0123abcd")
    assert environment("git_commit") == {"git_commit": "0123abcd"}


def test_tables_plain_and_markdown() -> None:
    rows = [["supcon", 12.5, "1.00"], ["selfcon (fc exit)", 6, "0.48"]]
    assert format_table(rows, ["method", "ms", "ratio"]).splitlines() == [
        "method               ms  ratio",
        "-----------------  ----  -----",
        "supcon             12.5   1.00",
        "selfcon (fc exit)     6   0.48",
    ]
    assert format_table(rows, ["method", "ms", "ratio"], markdown=True).splitlines() == [
        "| method | ms | ratio |", "|---|---|---|", "| supcon | 12.5 | 1.00 |", "| selfcon (fc exit) | 6 | 0.48 |"]
    assert format_table([["a"]], ["x", "y"], markdown=True).splitlines()[-1] == "| a |"  # a short row stays short
    with pytest.raises(ValueError, match="more cells than the header"):
        format_table([[1, 2, 3]], ["x", "y"])


def test_write_json_is_atomic_and_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results" / "out.json"
    write_json(path, {"when": Path("x"), "values": [1, 2]}, default=str)
    assert json.loads(path.read_text()) == {"when": "x", "values": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]
    assert f"wrote {path}" in capsys.readouterr().out
