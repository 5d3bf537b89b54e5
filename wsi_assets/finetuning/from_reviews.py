"""finetune_from_reviews as a plain function: a branch's current cell reviews in, a better model registered (or kept aside) out.

1. the current version of every cell review of the branch (the audit log's, never the upload
   itself) and its slide, read at the model's µm/px into tiles with the reviewer's cells;
2. every third tile held out; the rest, with a sample of the base training data, fine-tune the
   branch's current nucleus model (the shipped one when the branch names none);
3. both models scored on the held-out tiles; the new one is registered in branch.yaml only when
   it is better, else kept aside in candidates/;
4. the cell classifier refitted on the reviewed classes of the same tiles, and registered (as
   branch.yaml's `classifier:`) by the same rule on the held-out cells.
A report of each attempt stays beside the models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wsi_assets.cells.cell_classifier import (
    CellClassifier,
    classifier_for,
    save_classifier,
)
from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import find_slide_file
from wsi_assets.finetuning.branch_model import (
    branch_models_dir,
    candidate_path,
    register_model,
    resolve_branch_classifier,
    resolve_branch_model,
)
from wsi_assets.finetuning.classifier_finetune import (
    MIN_REVIEWED_CLASSES,
    base_typed_nuclei,
    class_agreement,
    refit_classifier,
    reviewed_nuclei,
)
from wsi_assets.finetuning.comparison import MIN_GAIN, score_model, verdict
from wsi_assets.finetuning.nucleus_finetune import (
    FineTuneSettings,
    base_sample,
    fine_tune_nuclei,
)
from wsi_assets.finetuning.review_tiles import (
    TILE_PX,
    TooFewReviewedTiles,
    reviewed_tiles,
    split_held_out,
)
from wsi_assets.models import SHIPPED_MODEL_FILE
from wsi_assets.reviews.review_files import read_version_cells
from wsi_assets.reviews.scan import REVIEW_SUFFIXES
from wsi_assets.reviews.version_store import current_version, history
from wsi_assets.segmentation.model_files import CARD_SUFFIX, read_model_card
from wsi_assets.slides.reader import open_slide, slide_mpp


@dataclass
class FineTuneOutcome:
    registered: bool
    why: str
    model_file: str  # the registered model, or the candidate kept aside
    base_model: str
    before: dict
    after: dict
    reviews: list[dict] = field(default_factory=list)
    skipped_reviews: list[str] = field(default_factory=list)
    classifier: dict = field(default_factory=dict)  # the cell classifier's refit: registered, why, file, before, after
    report: str = ""


def current_cell_reviews(root: Path, user: str, branch: str) -> list:
    """The current version of each of the branch's QuPath files, in file-name order."""
    files = sorted({e["file"] for e in history(root, user, branch) if Path(e.get("file", "")).suffix in REVIEW_SUFFIXES})
    return [v for v in (current_version(root, user, branch, f) for f in files) if v is not None]


def base_model_of(root: Path, user: str, branch: str, log: Callable[[str], None]) -> Path:
    chosen = resolve_branch_model(root, user, branch, branch_settings_for(root, user, branch).model)
    if isinstance(chosen, Path):
        return chosen
    if chosen == "classical":
        log("the branch uses the classical segmenter, which learns nothing: fine-tuning starts from the shipped model")
    return SHIPPED_MODEL_FILE


def current_classifier(root: Path, user: str, branch: str, embedding: dict | None = None):
    """What types the branch's nuclei now, for nuclei carrying `embedding` (None: none)."""
    choice = branch_settings_for(root, user, branch).classifier
    # The lymphocyte rule alone is not a classifier to compare with: the shipped one stands in.
    return classifier_for(embedding, None if choice in ("default", "rule") else resolve_branch_classifier(root, user, branch, choice))


def refit_branch_classifier(root, user, branch, train_tiles, held_out, mpp, base_classes, reviews, tag, min_gain, log, model_file: Path | None = None) -> dict:
    """The cell classifier refitted on the reviewed classes; registered as branch.yaml's `classifier:` only when it agrees better on held-out cells.

    With `model_file` (the nucleus model the branch segments with after this fine-tuning) giving an
    embedding, the reviewed cells and the base data carry that model's embedding, and so does the
    refitted classifier: the one the branch's slides will be typed by is compared with the one
    they would be typed by otherwise.
    """
    segmenter = _embedding_segmenter(model_file)
    embedding = segmenter.embedding if segmenter is not None else None
    train, held = reviewed_nuclei(train_tiles, mpp, segmenter), reviewed_nuclei(held_out, mpp, segmenter)
    if len(train.classes) < MIN_REVIEWED_CLASSES or not len(held.classes):
        why = f"classifier not refitted: {len(train.classes)} classified reviewed cells to learn from and {len(held.classes)} held out (needs {MIN_REVIEWED_CLASSES}+ and 1+)"
        log(why)
        return {"registered": False, "why": why}
    refitted = refit_classifier(train, base_typed_nuclei(base_classes, segmenter=segmenter))
    before, after = class_agreement(current_classifier(root, user, branch, embedding), held), class_agreement(refitted, held)
    better = after["macro_f1"] >= before["macro_f1"] + min_gain
    why = f"classifier {'better' if better else 'not better'}: macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f} on {after['cells']} held-out reviewed cells"
    log(why)
    candidate = candidate_path(root, user, branch, tag, "cells", ".npz")
    card = {"name": f"{user}-{branch}-cells", "version": candidate.stem, "reviews": reviews, "reviewed_cells": len(train.classes),
            **({"embedding": embedding} if refitted.needs_embedding else {}),
            "evaluation": {"before": before, "after": after, "verdict": why}}
    save_classifier(CellClassifier(**{**refitted.__dict__, "info": card}), candidate)
    write_text_atomic(candidate.with_name(candidate.stem + CARD_SUFFIX), json.dumps(card, indent=2, default=str))
    path = register_model(root, user, branch, candidate, key="classifier") if better else candidate
    return {"registered": better, "why": why, "file": str(path), "before": before, "after": after}


def _embedding_segmenter(model_file: Path | None):
    """The model as a CPU segmenter when it gives nucleus embeddings, else None."""
    if model_file is None:
        return None
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    segmenter = TorchScriptSegmenter(str(model_file), device="cpu")
    return segmenter if segmenter.embedding is not None else None


def finetune_branch(
    root: Path,
    user: str,
    branch: str,
    settings: FineTuneSettings | None = None,
    base_data: Path | None = None,
    base_images: int = 12,
    min_gain: float = MIN_GAIN,
    base_classes: Path | None = None,
    tile_px: int = TILE_PX,
    log: Callable[[str], None] = print,
) -> FineTuneOutcome:
    root, settings = Path(root), settings or FineTuneSettings()
    base_model = base_model_of(root, user, branch, log)
    model_mpp = float(read_model_card(base_model).get("mpp") or 0.5)
    tiles, reviews, skipped = [], [], []
    for version in current_cell_reviews(root, user, branch):
        stem = Path(version.file).stem
        try:
            slide_file = find_slide_file(root, SlideKey(user, branch, stem))
        except FileNotFoundError:
            skipped.append(f"{version.file}: no slide '{stem}' in the branch any more")
            continue
        cells = read_version_cells(version.path, f"{version.file} (version {version.short})")
        with open_slide(slide_file) as slide:
            mpp = slide_mpp(slide_file, slide)[0]
            found = reviewed_tiles(slide, stem, cells, mpp, model_mpp, tile_px)
        tiles += found
        reviews.append({"file": version.file, "sha256": version.sha256, "audit_seq": version.entry.get("seq"), "tiles": len(found), "cells": int(sum(t.cells for t in found))})
    if not reviews:
        raise TooFewReviewedTiles(f"no imported cell reviews for {user}/{branch}: drop QuPath files in {user}/reviews/{branch}/ and let review_slide import them first")
    train_tiles, held_out = split_held_out(tiles)
    log(f"{sum(r['cells'] for r in reviews)} reviewed cells from {len(reviews)} reviews: {len(train_tiles)} tiles to learn from, {len(held_out)} held out")
    tag = hashlib.sha256("".join(r["sha256"] for r in reviews).encode()).hexdigest()[:8]
    candidate = candidate_path(root, user, branch, tag)
    base = base_sample(base_data, model_mpp, base_images, settings.seed)
    fine_tune_nuclei(base_model, train_tiles, base, candidate, {"name": f"{user}-{branch}-finetuned", "version": candidate.stem, "reviews": reviews}, settings, log)
    before, after = score_model(base_model, held_out), score_model(candidate, held_out)
    better, why = verdict(before, after, min_gain)
    log(why)
    evaluation = {"held_out": [{"slide": t.slide, "box": list(t.box), "cells": t.cells} for t in held_out], "before": before, "after": after, "verdict": why}
    card_file = candidate.with_name(candidate.stem + CARD_SUFFIX)
    write_text_atomic(card_file, json.dumps({**json.loads(card_file.read_text()), "evaluation": evaluation}, indent=2, default=str))
    model_file = register_model(root, user, branch, candidate) if better else candidate
    if settings.steps:
        classifier = refit_branch_classifier(
            root, user, branch, train_tiles, held_out, model_mpp, base_classes, reviews, tag, min_gain, log,
            model_file if better else base_model,  # what the branch segments with from now on
        )
    else:
        classifier = {"registered": False, "why": "classifier not refitted: zero steps asks only to score the branch's current model"}
    outcome = FineTuneOutcome(better, why, str(model_file), str(base_model), before, after, reviews, skipped, classifier)
    report = branch_models_dir(root, user, branch) / f"finetune-{candidate.stem.removeprefix('nuclei-')}.json"
    outcome.report = str(write_text_atomic(report, json.dumps({**asdict(outcome), "settings": asdict(settings), "evaluation": evaluation}, indent=2, default=str)))
    return outcome
