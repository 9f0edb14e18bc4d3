"""``import timm_selfcon`` stays light: it registers the models with timm without loading the data stack.

Checked in a fresh interpreter, since this test session has long since imported ``datasets`` (see conftest.py).
"""
import json
import subprocess
import sys

HEAVY = ("datasets", "pyarrow")

PROBE = f"""
import json, sys
import timm
import timm_selfcon
print(json.dumps({{
    "loaded": [name for name in {HEAVY!r} if name in sys.modules],
    "registered": "selfcon_resnet18_cifar" in timm.list_models("selfcon_*"),
    "exports": sorted(timm_selfcon.__all__),
}}))
"""


def test_import_registers_models_without_the_data_stack() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], f"`import timm_selfcon` imported {report['loaded']}"
    assert report["registered"], "timm does not list selfcon_resnet18_cifar after `import timm_selfcon`"
    assert report["exports"] == ["MultiExitMixin", "ensemble_from_logits", "models", "with_projection_heads"]
