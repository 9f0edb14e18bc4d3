"""What the README tells a new user to run, in the order they meet it (issue 24, item 28)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
QUICKSTART = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/timm-selfcon quickstart"
TEST_SUITE = ('python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && HF_HUB_OFFLINE=1 .venv/bin/python -m '
              "pytest -p no:cacheprovider")
CPU_TORCH = ".venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def test_the_cpu_only_torch_hint_comes_before_the_set_up_commands() -> None:
    # the quickstart command pulled ~6 GB of CUDA wheels onto a CPU machine for a reader who ran it before reading on
    assert QUICKSTART in README and TEST_SUITE in README
    assert README.index(CPU_TORCH) < README.index(QUICKSTART) < README.index(TEST_SUITE)


def test_tensorboard_is_said_to_need_its_extra() -> None:
    extras = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    assert re.search(r"^tensorboard = \[", extras, re.M), extras
    assert 'pip install -e ".[tensorboard]"' in README


def test_the_export_folder_lists_export_info_json() -> None:
    assert "`export_info.json`" in (ROOT / "docs" / "publishing.md").read_text()
    assert "`export_info.json`" in README  # the front page's tour says it too


def test_the_readme_is_a_front_page_with_exactly_two_set_up_commands() -> None:
    assert len(README.splitlines()) <= 250
    set_up = README[README.index("## Set up on a fresh machine"):README.index("## Models")]
    assert set_up.count("```bash") == 2, "exactly two set-up commands (the CPU-only torch hint is inline)"
    links = set(re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README))  # relative links (no scheme)
    assert {"docs/training.md", "docs/device.md", "docs/evaluation.md", "docs/publishing.md", "docs/results.md"} <= links
    for page in Path(ROOT / "docs").glob("*.md"):  # every relative link of every page resolves
        for target in re.findall(r"\]\(([^)#:]+)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    for target in links:
        assert (ROOT / target).exists(), f"README.md: broken link {target}"


def test_the_headline_results_are_at_most_15_table_lines() -> None:
    blocks = re.findall(r"<!-- (headline\w*):begin -->\n(.*?)<!-- \1:end -->", README, re.S)
    assert [name for name, _ in blocks] == ["headline", "headline_experiments"]
    table_lines = [line for _, body in blocks for line in body.splitlines() if line.startswith("|")]
    assert len(table_lines) <= 15, f"{len(table_lines)} table lines: move rows to docs/results.md"


def test_the_quickstart_figures_are_those_of_the_committed_run() -> None:
    import json

    summary = json.loads((ROOT / "benchmarks" / "results" / "quickstart" / "summary.json").read_text())
    top1 = summary["probe"]["top1"]
    text = " ".join(README.split())  # the figures may wrap across lines
    assert f"{summary['train_seconds']:.0f} s of training ({summary['cpu_seconds']:.0f} CPU-seconds" in text
    assert f"**{top1['trained']:.2f}%** top-1 for the trained backbone against **{top1['random_init']:.2f}%**" in text
