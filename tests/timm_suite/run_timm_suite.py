"""Run timm's own model test suite (``tests/test_models.py``) against timm-selfcon's registered models.

The tests come from the source distribution of the *installed* timm version, fetched with pip
(``pip download --no-binary :all: --no-deps timm==<version>``) into the git-ignored ``.timm_suite/``
at the repository root and reused from there; nothing of timm's is copied into the repository.
``conftest_plugin.py`` (copied next to them as ``conftest.py``) narrows timm's model listing to this
package's models; see its docstring. Network tests (``*pretrained*``) are deselected: our models have
no weights and the tests would download.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python tests/timm_suite/run_timm_suite.py --ci    # CI: whole suite on one model per family,
                                                                 # cfg / cfg_nonstd (meta device) on every model
    .venv/bin/python tests/timm_suite/run_timm_suite.py --all   # every test on every model (long)

Other arguments go to pytest (``-x``, ``-v``, ``-k EXPR``, ``-m EXPR``; ``-k`` / ``-m`` are combined
with the runner's own selection). Exit status: 0 when every pytest run passed; pytest's code
otherwise, with "no tests collected" (5) counted as a failure; ``EXIT_INDEX_UNREACHABLE`` (75) when
the sdist is not cached and pip cannot reach the package index; ``EXIT_SETUP_FAILED`` (2) when pip
fails otherwise.
"""
import argparse
import hashlib
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".timm_suite"
CONFTEST_PLUGIN = Path(__file__).resolve().with_name("conftest_plugin.py")
PACKAGE = "timm_selfcon"
MODELS_ENV = "TIMM_SELFCON_SUITE_MODELS"

EXIT_OK = 0
EXIT_NO_TESTS = 5  # pytest.ExitCode.NO_TESTS_COLLECTED
EXIT_INDEX_UNREACHABLE = 75  # EX_TEMPFAIL: try again with network access
EXIT_SETUP_FAILED = 2  # the sdist could not be fetched or has no tests/test_models.py

# one model per family (timm registry module) for the full suite in CI; a module not listed here
# (a new family) gets its first model, so nothing goes untested. Each is a small one: a family's
# models share one class, and timm's tests run them at 96 px (its prune-contract test alone took
# 27 s on selfcon_resnet18_cifar, 10 s on selfcon_resnet10_w16_cifar; 2 cores, beside a training run).
CI_MODELS = {
    "selfcon_resnet": "selfcon_resnet10_w16_cifar",
    "selfcon_wrn": "selfcon_wrn16_8_cifar",
    "selfcon_vit": "selfcon_vit_tiny_patch4_32",
    "mixco_resnet": "mixco_resnet10_cifar",
    "selfcon_generic": "selfcon_timm",
}
FAST_MARKERS = "cfg or cfg_nonstd"  # timm's config / API-contract tests, run on the meta device
ALWAYS_DESELECT = "not pretrained"  # test_model_load_pretrained / features_pretrained need the network

# pip's messages when the index cannot be reached (DNS, refused / reset connections, proxies, timeouts)
NETWORK_ERROR_MARKERS = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "Connection refused", "ConnectTimeoutError",
    "ReadTimeoutError", "ProxyError", "Max retries exceeded", "No route to host", "nodename nor servname",
    "NameResolutionError", "Failed to resolve",
)
SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


class IndexUnreachable(RuntimeError):
    """pip could not reach the package index (and the sdist is not cached)."""


def timm_version() -> str:
    return importlib.metadata.version("timm")


def fetch_sdist(version: str, cache_dir: Path) -> Path:
    """The cached ``timm-<version>.tar.gz``, downloaded with pip on first use."""
    sdist_dir = cache_dir / "sdist"
    cached = sorted(sdist_dir.glob(f"timm-{version}.tar.gz"))
    if cached:
        return cached[0]
    sdist_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as download_dir:  # no half-written file in the cache
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--retries", "1",
               "--timeout", "20", "--disable-pip-version-check", f"timm=={version}", "-d", download_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        downloaded = sorted(Path(download_dir).glob(f"timm-{version}.tar.gz"))
        if proc.returncode != 0 or not downloaded:
            if any(marker in output for marker in NETWORK_ERROR_MARKERS):
                raise IndexUnreachable(f"pip cannot reach the package index to fetch timm=={version}:\n{output}")
            raise RuntimeError(f"pip download of the timm=={version} sdist failed ({shlex.join(cmd)}):\n{output}")
        target = sdist_dir / downloaded[0].name
        shutil.move(str(downloaded[0]), target)
    return target


def prepare_suite(version: str, cache_dir: Path) -> Path:
    """``.timm_suite/timm-<version>/`` with timm's ``test_models.py``, our conftest and an isolating pytest.ini."""
    sdist = fetch_sdist(version, cache_dir)
    suite_dir = cache_dir / f"timm-{version}"
    suite_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers()
                   if m.isfile() and Path(m.name).parts[1:] == ("tests", "test_models.py")]
        if len(members) != 1:
            raise RuntimeError(f"{sdist} has no single <root>/tests/test_models.py (found {len(members)})")
        source = archive.extractfile(members[0]).read()
    (suite_dir / "test_models.py").write_bytes(source)
    shutil.copyfile(CONFTEST_PLUGIN, suite_dir / "conftest.py")
    # an ini file of its own: the project's pytest options (testpaths, addopts, timeout) must not apply here
    (suite_dir / "pytest.ini").write_text(
        "[pytest]\n# written by tests/timm_suite/run_timm_suite.py; markers are declared in conftest.py\n")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()[:16]
    print(f"timm suite: tests/test_models.py of {sdist.name} (sha256 {digest}...) in {suite_dir}", flush=True)
    return suite_dir


def package_models_by_module() -> dict[str, list[str]]:
    """This package's registered models, grouped by timm registry module (= family)."""
    import timm
    from timm.models import _registry

    import timm_selfcon  # noqa: F401  (registers the models)

    by_module: dict[str, list[str]] = {}
    for name in timm.list_models():
        module = _registry._model_entrypoints[name].__module__
        if module == PACKAGE or module.startswith(PACKAGE + "."):
            by_module.setdefault(_registry._model_to_module[name], []).append(name)
    return by_module


def ci_models(by_module: dict[str, list[str]]) -> list[str]:
    """One model per family: the preferred one of ``CI_MODELS`` when registered, else the module's first."""
    chosen = []
    for module, names in sorted(by_module.items()):
        preferred = CI_MODELS.get(module)
        chosen.append(preferred if preferred in names else names[0])
    return chosen


@dataclass
class RunResult:
    label: str
    returncode: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    summary: str = ""


def parse_summary(output: str) -> tuple[str, dict[str, int]]:
    """pytest's final summary line and its counts (``passed``, ``failed``, ``errors``, ...)."""
    for line in reversed(output.splitlines()):
        counts: dict[str, int] = {}
        for number, word in SUMMARY_COUNT.findall(line):
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
        if counts and " in " in line:
            return line.strip("= "), counts
    return "", {}


def run_pytest(label: str, suite_dir: Path, selection: list[str], pytest_args: list[str],
               models: list[str] | None) -> RunResult:
    env = dict(os.environ)
    env.pop(MODELS_ENV, None)
    if models is not None:
        env[MODELS_ENV] = ",".join(models)
    cmd = [sys.executable, "-m", "pytest", str(suite_dir / "test_models.py"), "-c", str(suite_dir / "pytest.ini"),
           "--rootdir", str(suite_dir), "-p", "no:cacheprovider", "-rfE", *selection, *pytest_args]
    scope = f"{MODELS_ENV}={env[MODELS_ENV]} " if models is not None else ""
    print(f"\ntimm suite [{label}]: {scope}{shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    lines = []
    with subprocess.Popen(cmd, cwd=suite_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
    sys.stdout.flush()
    summary, counts = parse_summary("".join(lines))
    return RunResult(label, proc.returncode, time.monotonic() - start, counts, summary)


def combine(expression: str, extra: str | None) -> str:
    return f"({expression}) and ({extra})" if extra else expression


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ci", action="store_true",
                      help=f"every test on one model per family, '{FAST_MARKERS}' tests on every model")
    mode.add_argument("--all", action="store_true", help="every test on every model")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="sdist cache and suite folder")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k, combined with the runner's")
    parser.add_argument("-m", dest="markexpr", default=None, help="pytest -m, combined with the runner's")
    args, pytest_args = parser.parse_known_args(argv)

    version = timm_version()
    try:
        suite_dir = prepare_suite(version, args.cache_dir.resolve())
    except IndexUnreachable as err:
        print(f"timm suite: cannot reach the package index, timm {version} sdist not cached.\n{err}",
              file=sys.stderr)
        return EXIT_INDEX_UNREACHABLE
    except RuntimeError as err:
        print(f"timm suite: {err}", file=sys.stderr)
        return EXIT_SETUP_FAILED

    keyword = ["-k", combine(ALWAYS_DESELECT, args.keyword)]
    by_module = package_models_by_module()
    if args.all:
        runs = [("all tests, all models", [*keyword, *(["-m", args.markexpr] if args.markexpr else [])], None)]
    else:
        representatives = ci_models(by_module)
        runs = [
            ("fast markers, all models", [*keyword, "-m", combine(FAST_MARKERS, args.markexpr)], None),
            ("other tests, one model per family",
             [*keyword, "-m", combine(f"not ({FAST_MARKERS})", args.markexpr)], representatives),
        ]
    mode_name = "--all" if args.all else "--ci"
    print(f"timm suite {mode_name}: timm {version}, families {sorted(by_module)}", flush=True)

    results = [run_pytest(label, suite_dir, selection, pytest_args, models) for label, selection, models in runs]

    totals: dict[str, int] = {}
    for result in results:
        for key, value in result.counts.items():
            totals[key] = totals.get(key, 0) + value
    print("\ntimm suite runs:")
    for result in results:
        print(f"  [{result.label}] exit {result.returncode}, {result.seconds:.1f}s: {result.summary or 'no summary'}")
    failed = [r for r in results if r.returncode != EXIT_OK]
    for result in failed:
        if result.returncode == EXIT_NO_TESTS:
            print(f"  [{result.label}] collected no tests: counted as a failure", file=sys.stderr)
    counts_text = ", ".join(f"{totals[k]} {k}" for k in sorted(totals)) or "no tests"
    seconds = sum(r.seconds for r in results)
    print(f"timm suite {mode_name} total: {counts_text} in {seconds:.1f}s -> {'FAILED' if failed else 'OK'}")
    if not failed:
        return EXIT_OK
    return next((r.returncode for r in failed if r.returncode != EXIT_NO_TESTS), 1)


if __name__ == "__main__":
    sys.exit(main())
