"""A branch's own nucleus models: where they live, how branch.yaml names one, and registering a better one.

    <user>/models/<branch>/<model>.pt (+ .model_card.json)     registered nucleus models; branch.yaml's `model:` names one
    <user>/models/<branch>/<cells>.npz (+ .model_card.json)    registered cell classifiers; `classifier:` names one
    <user>/models/<branch>/candidates/                         fine-tuned ones that were not better, kept aside
    <user>/models/<branch>/branch.yaml.<time>.before-<key>      branch.yaml as it was before each registration

Every path is checked to stay inside the user's folder. A model file is written under a temporary
name and renamed, and branch.yaml is rewritten the same way with only its `model:` line changed
(comments and the other keys stay as the user wrote them); the file as it was is kept beside the models.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.branch_settings import BRANCH_SETTINGS, branch_settings_from_text, read_settings_text
from wsi_assets.core.confinement import confined
from wsi_assets.core.user_files import branch_inputs_dir
from wsi_assets.segmentation.model_files import CARD_SUFFIX
from wsi_assets.slides.errors import SlideSettingsError

SEGMENTER_NAMES = ("default", "learned", "classical")
CANDIDATES = "candidates"


class BranchModelMissing(FileNotFoundError):
    """branch.yaml names a model file that is not in the branch's model folder."""


def branch_models_dir(root: Path, user: str, branch: str) -> Path:
    return Path(root) / user / "models" / branch


def resolve_branch_model(root: Path, user: str, branch: str, name: str | None) -> str | Path | None:
    """What branch.yaml's `model:` means: None (not set), a segmenter name, or a model file in <user>/models/<branch>/."""
    if not name or name in SEGMENTER_NAMES:
        return name or None
    path = confined(branch_models_dir(root, user, branch) / name, root, user)
    if not path.is_file():
        raise BranchModelMissing(
            f"{user}/inputs/{branch}/{BRANCH_SETTINGS} names model '{name}', which is not in {user}/models/{branch}/: "
            "put the model file there, or set model: default"
        )
    return path


def candidate_path(root: Path, user: str, branch: str, tag: str, kind: str = "nuclei", suffix: str = ".pt") -> Path:
    """Where a new fine-tuned model (kind nuclei, .pt) or classifier (kind cells, .npz) is written first."""
    folder = branch_models_dir(root, user, branch) / CANDIDATES
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return confined(folder, root, user) / f"{kind}-{stamp}-{tag}{suffix}"


def _card(model_file: Path) -> Path:
    return model_file.with_name(model_file.stem + CARD_SUFFIX)


def branch_settings_file(root: Path, user: str, branch: str) -> Path:
    return confined(branch_inputs_dir(Path(root), user, branch), root, user) / BRANCH_SETTINGS


def resolve_branch_classifier(root: Path, user: str, branch: str, name: str) -> Path:
    """A classifier file branch.yaml names: a registered one in <user>/models/<branch>/, else the user's own in the branch's upload folder."""
    registered = branch_models_dir(root, user, branch) / name
    if registered.is_file():
        return confined(registered, root, user)
    return confined(branch_inputs_dir(Path(root), user, branch) / name, root, user)


def settings_with(text: str, key: str, name: str, why: str = "registered by finetune_from_reviews") -> str:
    """branch.yaml's text with its top-level `key:` line set to `name` (added when absent)."""
    line = f"{key}: {name}   # {why}"
    pattern = re.compile(rf"^{key}\s*:.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(line, text, count=1)
    return text + ("" if not text or text.endswith("\n") else "\n") + line + "\n"


def register_model(root: Path, user: str, branch: str, candidate: Path, key: str = "model") -> Path:
    """Move the candidate (and its card) into the branch's model folder and name it in branch.yaml (`key`: model or classifier)."""
    final = confined(branch_models_dir(root, user, branch), root, user) / candidate.name

    def move() -> None:
        os.replace(_card(candidate), _card(final))
        os.replace(candidate, final)

    set_branch_setting(root, user, branch, key, candidate.name, before_writing=move)
    return final


def set_branch_setting(
    root: Path, user: str, branch: str, key: str, name: str, why: str = "registered by finetune_from_reviews", before_writing=None
) -> None:
    """Set branch.yaml's `key:` to `name`, keeping the file as it was beside the branch's models."""
    folder = confined(branch_models_dir(root, user, branch), root, user)
    settings_file = branch_settings_file(root, user, branch)
    before = read_settings_text(settings_file)  # a link or hard link is refused, as when a run reads it
    updated = settings_with(before, key, name, why)
    # The rewritten file must still be valid and say `name`: else nothing is moved or written.
    shown = f"{user}/inputs/{branch}/{BRANCH_SETTINGS}"
    if getattr(branch_settings_from_text(updated, shown), key) != name:
        raise SlideSettingsError(f"{shown}: its {key} line could not be rewritten; set {key}: {name} by hand")
    if before_writing is not None:
        before_writing()
    if before:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        write_text_atomic(folder / f"{BRANCH_SETTINGS}.{stamp}.before-{key}", before)
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(settings_file, updated)
