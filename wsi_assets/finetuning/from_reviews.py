"""finetune_from_reviews as a plain function: a branch's current cell reviews in, a better model registered (or kept aside) out.

1. the current version of every cell review of the branch (the audit log's, never the upload
   itself) and its slide, read at the model's µm/px into tiles with the reviewer's cells;
2. every third tile held out; the rest, with a sample of the base training data, fine-tune the
   branch's current nucleus model (the shipped one when the branch names none);
3. both models scored on the held-out tiles, each segmented as process_slide segments the slide
   (its tile grid: slide_grid.py); the new one is registered in branch.yaml only when it is
   better, else kept aside in candidates/;
4. the cell classifier refitted on the reviewed classes of the same tiles, and registered (as
   branch.yaml's `classifier:`) by the same rule on the held-out cells; without reviewed
   classes, refitted on the base data where the branch's model is new (its embedding is one no
   classifier of the branch reads).
A report of each attempt stays beside the models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wsi_assets.cells.cell_classifier import (
    CellClassifier,
    ClassifierNeedsEmbedding,
    classifier_for,
    save_classifier,
)
from wsi_assets.cells.stain_vectors import StainVectors, estimate_stain_vectors
from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.branch_settings import branch_settings_for
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.progress import EverySeconds
from wsi_assets.core.user_files import find_slide_file
from wsi_assets.finetuning.branch_model import (
    branch_models_dir,
    candidate_path,
    register_model,
    resolve_branch_classifier,
    resolve_branch_model,
    set_branch_setting,
)
from wsi_assets.finetuning.branch_files import NAMED_CLASSIFIERS
from wsi_assets.finetuning.classifier_finetune import (
    BASE_TILES,
    MIN_REVIEWED_CLASSES,
    base_held_out_nuclei,
    base_typed_nuclei,
    class_agreement,
    has_typed_base,
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
from wsi_assets.cells.embeddings import same_embedding
from wsi_assets.segmentation.model_files import CARD_SUFFIX, read_model_card
from wsi_assets.segmentation.slide import TilingSettings
from wsi_assets.slides.mpp import slide_mpp
from wsi_assets.slides.reader import open_slide


PROGRESS_EVERY_S = 30.0  # a long phase (reading tiles, training, scoring) says how far it is at least this often


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
    # The lymphocyte rule alone, or the network, is no forest to compare a refit with: the shipped one stands in.
    return classifier_for(
        embedding, None if choice in NAMED_CLASSIFIERS else resolve_branch_classifier(root, user, branch, choice)
    )


def classifier_otherwise(root: Path, user: str, branch: str, embedding: dict | None) -> tuple[CellClassifier, bool]:
    """What would type nuclei carrying `embedding` without a refit, and whether branch.yaml's
    classifier is stale: a file reading another model's embedding (a model registered since),
    which the branch's runs would refuse; the shipped choice for `embedding` then stands in."""
    try:
        return current_classifier(root, user, branch, embedding), False
    except ClassifierNeedsEmbedding:
        return classifier_for(embedding), True


def refit_branch_classifier(
    root,
    user,
    branch,
    train_tiles,
    held_out,
    mpp,
    base_classes,
    reviews,
    tag,
    min_gain,
    log,
    model_file: Path | None = None,
    stains_of=None,
    tiling: TilingSettings = TilingSettings(),
    every_s: float = PROGRESS_EVERY_S,
) -> dict:
    """The cell classifier refitted for the branch; registered as branch.yaml's `classifier:` only when it agrees better on held-out cells.

    With enough reviewed classes: fitted on them and a few base tiles, judged on the held-out
    reviewed cells. Without, where the branch's model (`model_file`, what it segments with after
    this fine-tuning) gives an embedding nothing the branch has can read (a fine-tuned model is a
    new network: the shipped classifier would fall back to measurements alone): fitted on every
    training tile of the base data with that embedding, judged on the base data's held-out
    tiles. Either way against what would type the branch's nuclei otherwise. A classifier left
    naming another model's embedding is set back to `default`, so the branch's runs still type.
    """
    segmenter = _embedding_segmenter(model_file)
    embedding = segmenter.embedding if segmenter is not None else None
    otherwise, stale = classifier_otherwise(root, user, branch, embedding)
    # A new network's nuclei: nothing the branch has reads their embedding (they would be typed by measurements alone).
    unread_embedding = embedding is not None and not same_embedding(otherwise.embedding, embedding)
    classified = [t for t in train_tiles + held_out if t.classes]
    log(
        f"measuring the reviewer's classified cells on {len(classified)} tiles as a slide run measures them"
        + (" (with the model's embedding)" if embedding else "")
    )
    # Training and held-out tiles are measured in one pass: they share the slide's grid tiles.
    measured = reviewed_nuclei(
        classified, mpp, segmenter, stains_of, tiling, EverySeconds(log, "measuring reviewed cells:", "slide tiles", every_s)
    )
    is_held = np.isin(measured.tiles, [f"{t.slide}:{t.box}" for t in held_out])
    train, held = measured.subset(np.flatnonzero(~is_held)), measured.subset(np.flatnonzero(is_held))
    if len(train.classes) >= MIN_REVIEWED_CLASSES and len(held.classes):
        log(f"refitting the cell classifier on {len(train.classes)} reviewed cells and {BASE_TILES} tiles of the base data")
        refitted, judged_on = (
            refit_classifier(train, base_typed_nuclei(base_classes, segmenter=segmenter)),
            "held-out reviewed cells",
        )
    elif unread_embedding and has_typed_base(base_classes):
        log(
            f"too few reviewed classes ({len(train.classes)} to learn from, {len(held.classes)} held out): refitting on the base data with the branch's model's embedding (every training tile of {Path(base_classes).name}: minutes)"
        )
        refitted, held = (
            refit_classifier(base_typed_nuclei(base_classes, tiles=None, segmenter=segmenter), None),
            base_held_out_nuclei(base_classes, segmenter),
        )
        judged_on = f"held-out cells of the base data ({Path(base_classes).name})"
    else:
        why = f"classifier not refitted: {len(train.classes)} classified reviewed cells to learn from and {len(held.classes)} held out (needs {MIN_REVIEWED_CLASSES}+ and 1+)"
        if unread_embedding:
            why += f"; no base data with types.csv ({base_classes or 'none given'}) to refit on, so the new model's nuclei are typed by {otherwise.name}"
        log(why)
        return {"registered": False, "why": why, **_set_back_if_stale(root, user, branch, stale, log)}
    before, after = class_agreement(otherwise, held), class_agreement(refitted, held)
    better = after["macro_f1"] >= before["macro_f1"] + min_gain
    why = f"classifier {'better' if better else 'not better'}: macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f} on {after['cells']} {judged_on}"
    log(why)
    candidate = candidate_path(root, user, branch, tag, "cells", ".npz")
    card = {
        "name": f"{user}-{branch}-cells",
        "version": candidate.stem,
        "reviews": reviews,
        "reviewed_cells": len(train.classes),
        **({"embedding": embedding} if refitted.needs_embedding else {}),
        "evaluation": {"judged_on": judged_on, "before": before, "after": after, "verdict": why},
    }
    save_classifier(CellClassifier(**{**refitted.__dict__, "info": card}), candidate)
    write_text_atomic(candidate.with_name(candidate.stem + CARD_SUFFIX), json.dumps(card, indent=2, default=str))
    if better:
        return {
            "registered": True,
            "why": why,
            "file": str(register_model(root, user, branch, candidate, key="classifier")),
            "before": before,
            "after": after,
        }
    return {
        "registered": False,
        "why": why,
        "file": str(candidate),
        "before": before,
        "after": after,
        **_set_back_if_stale(root, user, branch, stale, log),
    }


def _set_back_if_stale(root: Path, user: str, branch: str, stale: bool, log: Callable[[str], None]) -> dict:
    if not stale:
        return {}
    old = branch_settings_for(root, user, branch).classifier
    set_branch_setting(
        root, user, branch, "classifier", "default", f"set by finetune_from_reviews: {old} reads the previous model's embedding"
    )
    log(f"classifier {old} reads the embedding of the branch's previous model: branch.yaml's classifier set back to default")
    return {"reset": f"{old} -> default"}


def _embedding_segmenter(model_file: Path | None):
    """The model as a CPU segmenter when it gives nucleus embeddings, else None."""
    if model_file is None:
        return None
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter

    segmenter = TorchScriptSegmenter(str(model_file), device="cpu")
    return segmenter if segmenter.embedding is not None else None


def slide_stains(root: Path, key: SlideKey) -> StainVectors | None:
    """The stain vectors the slide's published run measured with (its segmentation summary), None when it has none."""
    summary = Path(root) / key.user / "outputs" / key.branch / key.stem / "segmentation" / "summary.json"
    try:
        return StainVectors.from_dict(json.loads(summary.read_text())["stain_vectors"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    tiling: TilingSettings = TilingSettings(),
    every_s: float = PROGRESS_EVERY_S,
) -> FineTuneOutcome:
    """Fine-tune the branch's nucleus model and refit its classifier from its current cell reviews.

    `tiling` is the grid process_slide segments the branch's slides with: the models are scored on
    it. `log` hears each phase as it starts, with its counts, and long phases every `every_s` s.
    """
    root, settings = Path(root), settings or FineTuneSettings()
    base_model = base_model_of(root, user, branch, log)
    model_mpp = float(read_model_card(base_model).get("mpp") or 0.5)
    versions = current_cell_reviews(root, user, branch)
    log(f"fine-tuning {user}/{branch} from {len(versions)} current cell review(s), starting from {base_model.name}")
    tiles, reviews, skipped, stains = [], [], [], {}
    for number, version in enumerate(versions, start=1):
        stem = Path(version.file).stem
        try:
            slide_file = find_slide_file(root, SlideKey(user, branch, stem))
        except FileNotFoundError:
            skipped.append(f"{version.file}: no slide '{stem}' in the branch any more")
            continue
        cells = read_version_cells(version.path, f"{version.file} (version {version.short})")
        log(
            f"review {number}/{len(versions)} {version.file}: {len(cells.polygons)} cells, {len(cells.regions)} regions; reading its tiles of {tile_px} px from {slide_file.name}"
        )
        with open_slide(slide_file) as slide:
            mpp = slide_mpp(slide_file, slide)[0]
            found = reviewed_tiles(
                slide,
                stem,
                cells,
                mpp,
                model_mpp,
                tile_px,
                source=slide_file,
                progress=EverySeconds(log, f"reading {version.file}:", "tiles", every_s),
            )
        stains[slide_file] = slide_stains(root, SlideKey(user, branch, stem))
        tiles += found
        reviews.append(
            {
                "file": version.file,
                "sha256": version.sha256,
                "audit_seq": version.entry.get("seq"),
                "tiles": len(found),
                "cells": int(sum(t.cells for t in found)),
            }
        )
    if not reviews:
        raise TooFewReviewedTiles(
            f"no imported cell reviews for {user}/{branch}: drop QuPath files in {user}/reviews/{branch}/ and let review_slide import them first"
        )
    train_tiles, held_out = split_held_out(tiles)
    log(
        f"{sum(r['cells'] for r in reviews)} reviewed cells from {len(reviews)} reviews: {len(train_tiles)} tiles to learn from, {len(held_out)} held out"
    )
    tag = hashlib.sha256("".join(r["sha256"] for r in reviews).encode()).hexdigest()[:8]
    candidate = candidate_path(root, user, branch, tag)
    if base_data is not None and base_images > 0:
        log(f"loading {base_images} images of the base training data ({Path(base_data).name}) to mix in")
    base = base_sample(base_data, model_mpp, base_images, settings.seed)
    log(
        f"fine-tuning {settings.steps} steps of {settings.batch} crops of {settings.crop} px ({len(train_tiles)} reviewed tiles, {len(base)} base images)"
    )
    fine_tune_nuclei(
        base_model,
        train_tiles,
        base,
        candidate,
        {"name": f"{user}-{branch}-finetuned", "version": candidate.stem, "reviews": reviews},
        settings,
        log,
        every_s,
    )
    scores = {}
    for which, model in (("before", base_model), ("after", candidate)):
        log(
            f"scoring the {'branch model' if which == 'before' else 'fine-tuned model'} ({model.name}) on {len(held_out)} held-out tiles, segmented on the slide's grid of {tiling.core} px tiles"
        )
        scores[which] = score_model(model, held_out, tiling, EverySeconds(log, f"scoring {which}:", "slide tiles", every_s))
    before, after = scores["before"], scores["after"]
    better, why = verdict(before, after, min_gain)
    log(why)
    evaluation = {
        "held_out": [{"slide": t.slide, "box": list(t.box), "cells": t.cells} for t in held_out],
        "before": before,
        "after": after,
        "verdict": why,
    }
    card_file = candidate.with_name(candidate.stem + CARD_SUFFIX)
    write_text_atomic(
        card_file, json.dumps({**json.loads(card_file.read_text()), "evaluation": evaluation}, indent=2, default=str)
    )
    model_file = register_model(root, user, branch, candidate) if better else candidate
    if settings.steps:
        classifier = refit_branch_classifier(
            root,
            user,
            branch,
            train_tiles,
            held_out,
            model_mpp,
            base_classes,
            reviews,
            tag,
            min_gain,
            log,
            model_file if better else base_model,  # what the branch segments with from now on
            lambda t: stains.get(t.source) or estimate_stain_vectors(t.rgb),
            tiling,
            every_s,
        )
    else:
        classifier = {
            "registered": False,
            "why": "classifier not refitted: zero steps asks only to score the branch's current model",
        }
    outcome = FineTuneOutcome(better, why, str(model_file), str(base_model), before, after, reviews, skipped, classifier)
    report = branch_models_dir(root, user, branch) / f"finetune-{candidate.stem.removeprefix('nuclei-')}.json"
    outcome.report = str(
        write_text_atomic(
            report, json.dumps({**asdict(outcome), "settings": asdict(settings), "evaluation": evaluation}, indent=2, default=str)
        )
    )
    log(f"done: {why}; {classifier['why']}")
    return outcome
