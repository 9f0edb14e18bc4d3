"""``push``: the export folder through huggingface_hub's ``HfApi`` (create_repo, upload_folder), offline.

``HfApi`` in ``timm_selfcon.hub.push`` is replaced by a recorder at the huggingface_hub boundary: it answers
``whoami`` / ``create_repo`` / ``upload_folder`` and copies what would be uploaded, so the files, the card and the
commit message are checked without a network.
"""
from __future__ import annotations

import importlib
import io
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from huggingface_hub import ModelCard, constants

from timm_selfcon.cli import main
from timm_selfcon.errors import UserInputError
from timm_selfcon.hub import HubPushError, export, push

from . import card_text_as_0_2, make_run, old_card_as_published

# the module, not the function ``timm_selfcon.hub.push`` that the package exports under the same name
push_module = importlib.import_module("timm_selfcon.hub.push")

EXPORT_FILES = ["README.md", "config.json", "export_info.json", "model.safetensors"]
OLD_EXPORTS = Path(__file__).parent / "fixtures" / "old_exports"


class HTTPStatusError(Exception):
    """Shaped like huggingface_hub's HTTP errors: the response's status code is on ``.response``."""

    def __init__(self, message: str, response: Any) -> None:
        super().__init__(message)
        self.response = response


class RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi``: records calls, keeps a copy of every uploaded folder."""

    instances: ClassVar[list[RecordingHfApi]] = []
    whoami_error: ClassVar[Exception | None] = None

    def __init__(self, token: str | None = None, **kwargs: Any) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[dict[str, Any]] = []
        RecordingHfApi.instances.append(self)

    def whoami(self, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("whoami", dict(token=token)))
        if RecordingHfApi.whoami_error is not None:
            raise RecordingHfApi.whoami_error
        return {"name": "tester"}

    def create_repo(self, repo_id: str, **kwargs: Any) -> Any:
        self.calls.append(("create_repo", dict(repo_id=repo_id, **kwargs)))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id: str, folder_path: str, commit_message: str, allow_patterns: list[str],
                      **kwargs: Any) -> Any:
        self.calls.append(("upload_folder", dict(repo_id=repo_id, commit_message=commit_message, **kwargs)))
        folder = Path(folder_path)
        uploaded = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name in allow_patterns)
        self.uploads.append(dict(repo_id=repo_id, files=uploaded, commit_message=commit_message,
                                 readme=(folder / "README.md").read_text()))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("push_export")
    run = make_run(root / "run", model_kwargs={"layers": [1, 1, 1, 1], "exit_stages": [2], "sub_network": "fc"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # encoder-only: no evaluation in this run
        export(run, root / "export")
    return root / "export"


@pytest.fixture
def folder(export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the export (push rewrites README.md)."""
    return Path(shutil.copytree(export_dir, tmp_path / "export"))


@pytest.fixture
def recording_api(monkeypatch: pytest.MonkeyPatch) -> type[RecordingHfApi]:
    RecordingHfApi.instances = []
    RecordingHfApi.whoami_error = None
    monkeypatch.setattr(push_module, "HfApi", RecordingHfApi)
    return RecordingHfApi


@pytest.fixture
def no_stored_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_ID_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))


def test_push_uploads_the_export_with_a_fresh_card(folder: Path, recording_api: type[RecordingHfApi]) -> None:
    (folder / "README.md").write_text("---\nlicense: mit\n---\nan old, edited card\n")
    result = push(folder, "me/selfcon-tiny", token="hf_test", private=True)
    (api,) = recording_api.instances
    assert api.token == "hf_test"
    assert [name for name, _ in api.calls] == ["whoami", "create_repo", "upload_folder"]
    create = api.calls[1][1]
    assert create["repo_id"] == "me/selfcon-tiny" and create["exist_ok"] is True and create["private"] is True
    (upload,) = api.uploads
    assert upload["files"] == EXPORT_FILES == result.files
    assert upload["commit_message"] == result.commit_message
    assert upload["commit_message"].startswith("Upload selfcon_resnet18_cifar (encoder only, with exits)")
    card = ModelCard(upload["readme"])
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert 'timm.create_model("hf-hub:me/selfcon-tiny", pretrained=True)' in card.text
    assert "an old, edited card" not in upload["readme"]
    assert result.commit_url == "https://huggingface.co/me/selfcon-tiny/commit/abc"


def test_dry_run_prints_files_and_card_without_network(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], no_stored_token: None) -> None:
    def no_api(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run must not create an HfApi")

    monkeypatch.setattr(push_module, "HfApi", no_api)
    assert main(["push", str(folder), "--repo-id", "me/dry", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for name in EXPORT_FILES:
        assert f"  {name}  (" in printed
    assert "commit message 'Upload selfcon_resnet18_cifar" in printed
    card_text = printed.split("----- README.md -----", 1)[1]
    assert "library_name: timm" in card_text and "hf-hub:me/dry" in card_text


def test_missing_token_fails_before_any_hub_call(folder: Path, recording_api: type[RecordingHfApi],
                                                 no_stored_token: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HubPushError, match="no Hugging Face token"):
        push(folder, "me/model")
    assert recording_api.instances == []
    assert main(["push", str(folder), "--repo-id", "me/model"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_unreachable_hub_fails_before_upload(folder: Path, recording_api: type[RecordingHfApi]) -> None:
    recording_api.whoami_error = ConnectionError("Name or service not known")
    with pytest.raises(HubPushError, match="unreachable"):
        push(folder, "me/model", token="hf_test")
    (api,) = recording_api.instances
    assert [name for name, _ in api.calls] == ["whoami"]


def test_rejected_token_fails_before_upload(folder: Path, recording_api: type[RecordingHfApi]) -> None:
    recording_api.whoami_error = HTTPStatusError("401 Unauthorized", response=SimpleNamespace(status_code=401))
    with pytest.raises(HubPushError, match="token was rejected"):
        push(folder, "me/model", token="hf_bad")
    assert [name for name, _ in recording_api.instances[0].calls] == ["whoami"]


def test_offline_mode_with_the_real_client(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match="offline mode"):
        push(folder, "me/model", token="hf_test")


def test_refuses_pickles_and_foreign_folders(folder: Path, recording_api: type[RecordingHfApi],
                                             tmp_path: Path) -> None:
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"refusing to upload pickle files \['pytorch_model.bin'\]"):
        push(folder, "me/model", token="hf_test")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a timm-selfcon export"):
        push(tmp_path / "plain", "me/model", token="hf_test", dry_run=True)
    with pytest.raises(ValueError, match="ORG/NAME"):
        push(folder, "no-org", token="hf_test")
    assert recording_api.instances == []


@pytest.mark.parametrize("bad", ["no-org", "a/b/c", "/name", "org/", "org/na me", "org/x--y", "org/x.git", ""])
def test_repo_id_is_checked_by_huggingface_hub_rules(folder: Path, recording_api: type[RecordingHfApi],
                                                     bad: str) -> None:
    with pytest.raises(UserInputError, match=rf"repo_id must look like 'ORG/NAME'.*got {bad!r}"):
        push(folder, bad, token="hf_test")
    assert recording_api.instances == []


@pytest.mark.parametrize("name", ["selfcon_early_exit", "finetune"])
def test_export_written_before_the_typed_records_still_pushes(name: str, tmp_path: Path,
                                                              recording_api: type[RecordingHfApi]) -> None:
    """An old ``export_info.json`` (fixture) in an export folder: the card is the one the old code rendered."""
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(OLD_EXPORTS / name / "export_info.json", folder)
    (folder / "config.json").write_text("{}")  # push uploads these as they are; it does not read them
    (folder / "model.safetensors").write_bytes(b"")
    want = ModelCard.load(OLD_EXPORTS / name / "card.md")
    dry = push(folder, "me/old-export", dry_run=True, stream=io.StringIO())
    card = ModelCard(dry.card)
    assert card_text_as_0_2(card.text) == old_card_as_published(want.text)
    assert card.data.to_dict() == want.data.to_dict()
    result = push(folder, "me/old-export", token="hf_test")
    (upload,) = recording_api.instances[0].uploads
    assert upload["files"] == EXPORT_FILES == result.files
    assert card_text_as_0_2(ModelCard(upload["readme"]).text) == old_card_as_published(want.text)
    variant = "4 classes, with exits" if name == "selfcon_early_exit" else "4 classes, no exits"
    assert result.commit_message == f"Upload selfcon_resnet18_cifar ({variant}) with timm-selfcon 0.2.0"
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no temporary file left
