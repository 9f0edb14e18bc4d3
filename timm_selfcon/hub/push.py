"""Upload an export folder to the Hugging Face Hub with huggingface_hub's ``HfApi``.

Papers: SelfCon (Bae et al., AAAI 2023, arXiv 2106.15499) and MixCo (Kim et al., arXiv 2010.06300).

``push(OUT_DIR, repo_id="ORG/NAME")``:

1. checks the folder is a timm-selfcon export (``config.json``, ``model.safetensors``, ``export_info.json``) and
   holds no pickle (``*.bin``, ``*.pt``, ``*.pth``, ...);
2. renders the model card again from ``export_info.json`` for ``ORG/NAME`` and writes ``README.md``, so the card
   uploaded is always the one just rendered (the Hub's copy is replaced, unlike timm's ``push_to_hf_hub``);
3. with ``dry_run=True`` prints the files and the card and stops: no network, no token needed;
4. otherwise needs a token (``token=``, ``HF_TOKEN`` or ``hf auth login``) and a reachable Hub, both checked with
   ``whoami`` before anything is created or uploaded;
5. ``create_repo(exist_ok=True)``, then one ``upload_folder`` commit of exactly the export's files.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import OfflineModeIsEnabled

from ..errors import UserInputError
from ..fileio import atomic_path
from .card import check_repo_id, render_card
from .export import PICKLE_SUFFIXES
from .records import EXPORT_INFO, ExportInfo

__all__ = ["HubPushError", "PushResult", "push", "upload_files"]

REQUIRED_FILES = ("config.json", "model.safetensors", EXPORT_INFO)


class HubPushError(RuntimeError):
    """The upload cannot start: no token, a rejected token, or an unreachable Hub (nothing was uploaded)."""


@dataclass
class PushResult:
    """What ``push`` uploaded (or would upload, with ``dry_run``)."""

    repo_id: str
    files: list[str]
    commit_message: str
    card: str
    dry_run: bool
    url: str | None = None
    commit_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def upload_files(folder: str | os.PathLike[str]) -> list[str]:
    """The files of an export folder that ``push`` uploads (checked: required files present, no pickle)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"export folder {str(folder)!r} does not exist; run `timm-selfcon export` first")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise UserInputError(f"{str(folder)!r} is not a timm-selfcon export: missing {missing} "
                         "(create it with `timm-selfcon export CHECKPOINT OUT_DIR`)")
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise UserInputError(f"refusing to upload pickle files {pickles} from {str(folder)!r}: exports hold "
                         "model.safetensors only; delete them")
    subdirs = [p.name for p in folder.iterdir() if p.is_dir()]
    if subdirs:
        raise UserInputError(f"unexpected folders {subdirs} in export {str(folder)!r}")
    return sorted({*files, "README.md"})


def push(
        out_dir: str | os.PathLike[str],
        repo_id: str,
        *,
        token: str | None = None,
        private: bool = False,
        revision: str | None = None,
        create_pr: bool = False,
        commit_message: str | None = None,
        dry_run: bool = False,
        stream: TextIO | None = None,
) -> PushResult:
    """Upload the export ``out_dir`` to ``repo_id`` (``ORG/NAME``); see the module docstring.

    Raises ``ValueError`` for a bad folder or repo id and :class:`HubPushError` when the upload cannot start
    (no token, rejected token, Hub unreachable or offline mode); either way nothing is uploaded.
    """
    check_repo_id(repo_id)
    folder = Path(out_dir)
    files = upload_files(folder)
    info = ExportInfo.read(folder)
    card = render_card(info, repo_id)
    with atomic_path(folder / "README.md") as tmp:
        card.save(str(tmp))
    message = commit_message or (f"Upload {info.architecture} ({_variant(info)}) with timm-selfcon "
                                 f"{info.timm_selfcon_version or ''}".strip())
    card_text = (folder / "README.md").read_text()
    if dry_run:
        stream = stream or sys.stdout
        print(f"dry run: would upload to https://huggingface.co/{repo_id} "
              f"({'private' if private else 'public'}), commit message {message!r}:", file=stream)
        for name in files:
            print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)", file=stream)
        print("\n----- README.md -----", file=stream)
        print(card_text, file=stream)
        return PushResult(repo_id=repo_id, files=files, commit_message=message, card=card_text, dry_run=True)

    token = token or get_token()
    if not token:
        raise HubPushError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login` "
                           "(a token with write access); nothing was uploaded")
    api = HfApi(token=token, library_name="timm-selfcon", library_version=info.timm_selfcon_version)
    try:
        user = api.whoami(token=token)
    except Exception as err:  # any failure here means we must not start an upload
        raise HubPushError(_whoami_failure(err)) from err
    repo_url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    final_repo_id = getattr(repo_url, "repo_id", None) or repo_id
    commit = api.upload_folder(repo_id=final_repo_id, folder_path=str(folder), commit_message=message,
                               revision=revision, create_pr=create_pr, allow_patterns=files, token=token)
    return PushResult(repo_id=final_repo_id, files=files, commit_message=message, card=card_text, dry_run=False,
                      url=str(repo_url), commit_url=getattr(commit, "commit_url", None),
                      extra=dict(user=(user or {}).get("name")))


def _variant(info: ExportInfo) -> str:
    heads = "encoder only" if info.encoder_only else f"{info.num_classes} classes"
    exits = "with exits" if info.with_exits else "no exits"
    return f"{heads}, {exits}"


def _whoami_failure(err: Exception) -> str:
    if isinstance(err, OfflineModeIsEnabled):
        return ("the Hugging Face Hub is unreachable: offline mode is on (HF_HUB_OFFLINE=1); unset it to push; "
                "nothing was uploaded")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return f"the Hugging Face token was rejected (HTTP {status}); check it has write access; nothing was uploaded"
    return (f"the Hugging Face Hub is unreachable ({type(err).__name__}: {err}); check the network or "
            "HF_ENDPOINT; nothing was uploaded")
