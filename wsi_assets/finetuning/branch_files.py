"""The model and classifier files a branch.yaml names, checked before a run does any work.

Segmenting a slide takes minutes to hours; a classifier name with a typo would otherwise be found
only when classification starts, after all of it. Each check is cheap: the file is in the user's
own folders, the model is a TorchScript archive whose card states its µm/px, and the classifier
loads (a small .npz). Whether a classifier suits the nuclei's embedding is known only after
segmentation and stays checked there.
"""

from __future__ import annotations

from pathlib import Path

from wsi_assets.cells.cell_classifier import load_classifier
from wsi_assets.core.branch_settings import BRANCH_SETTINGS, BranchSettings
from wsi_assets.finetuning.branch_model import (
    resolve_branch_classifier,
    resolve_branch_model,
)
from wsi_assets.segmentation.model_files import CARD_SUFFIX, ModelLoadError, is_torchscript_archive, read_model_card

# Choices that name no file: the shipped classifier, the lymphocyte rule, the nucleus classifier network.
NAMED_CLASSIFIERS = ("default", "rule", "cnn", "forest+cnn")


def check_branch_files(root: Path, user: str, branch: str, settings: BranchSettings) -> None:
    """Raise a one-line error when branch.yaml's `model:` or `classifier:` names a file that cannot be used."""
    shown = f"{user}/inputs/{branch}/{BRANCH_SETTINGS}"
    model = resolve_branch_model(root, user, branch, settings.model)  # BranchModelMissing, PathOutsideUserFolder
    if isinstance(model, Path):
        _check_model_file(model, shown)
    if settings.classifier not in NAMED_CLASSIFIERS:
        classifier = resolve_branch_classifier(root, user, branch, settings.classifier)  # PathOutsideUserFolder
        if not classifier.is_file():
            raise FileNotFoundError(
                f"{shown} names classifier '{settings.classifier}', which is in neither {user}/models/{branch}/ nor {user}/inputs/{branch}/: "
                "put the .npz there, or set classifier: default"
            )
        load_classifier(classifier)  # BadClassifierFile, one line naming the file


def _check_model_file(path: Path, shown: str) -> None:
    if not is_torchscript_archive(path):
        raise ModelLoadError(
            f"{shown} names model '{path.name}', which is not a TorchScript model: register one with finetune_from_reviews, or set model: default"
        )
    card = read_model_card(path)  # ModelLoadError for a sidecar card that is not JSON
    if not isinstance(card, dict):
        card = {}
    if not card.get("mpp") and not (card.get("input") or {}).get("resolution_um_per_px"):
        raise ModelLoadError(
            f"{shown} names model '{path.name}', whose card does not say its µm/px: write {path.stem + CARD_SUFFIX} with {{\"mpp\": 0.5}} beside it"
        )
