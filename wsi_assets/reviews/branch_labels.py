"""slide_reviews: one branch's slide labels as a table, with agreement between annotators where slides have several."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import numpy as np

from wsi_assets.reviews.agreement import cohen_kappa, fleiss_kappa
from wsi_assets.reviews.slide_labels import ADEQUACY_LEVELS, SlideLabel

# One row per slide and annotator: each annotator's codes and comment stay in their own cells
# (joined into one cell they could not be told apart, and a comment holding the separator broke
# the table); the slide's majority and agreement repeat on each of its rows.
TABLE_COLUMNS = (
    "slide",
    "annotator",
    "adequacy",
    "diagnosis_codes",
    "comment",
    "annotators",
    "adequacy_votes",
    "adequacy_majority",
    "diagnosis_agreed",
)


def slide_table(labels: list[SlideLabel]) -> list[dict]:
    """One row per slide and annotator (slides, then annotators, in order), with the slide's votes, majority and code agreement."""
    by_slide: dict[str, list[SlideLabel]] = defaultdict(list)
    for label in labels:
        by_slide[label.slide].append(label)
    rows = []
    for _, group in sorted(by_slide.items()):
        votes = Counter(label.adequacy for label in group)
        top = votes.most_common()
        majority = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else "tie"
        agreed = len({label.diagnosis_codes for label in group}) == 1 if len(group) > 1 else None
        shared = {
            "annotators": len(group),
            "adequacy_votes": ";".join(f"{level}={votes[level]}" for level in ADEQUACY_LEVELS if votes[level]),
            "adequacy_majority": majority,
            "diagnosis_agreed": agreed,
        }
        for label in sorted(group, key=lambda label: label.annotator):
            rows.append({**label.as_dict(), **shared})
    return rows


def annotator_agreement(labels: list[SlideLabel]) -> dict:
    """Weighted κ (quadratic, adequacy is ordinal) per annotator pair; Fleiss' κ where slides have 3+ annotators.

    Fleiss' κ uses the slides that the most common number (3 or more) of annotators labelled, for
    adequacy and for the diagnosis (the set of codes, compared whole).
    """
    by_slide: dict[str, dict[str, SlideLabel]] = defaultdict(dict)
    for label in labels:
        by_slide[label.slide][label.annotator] = label
    annotators = sorted({label.annotator for label in labels})
    pairs = []
    for a, b in itertools.combinations(annotators, 2):
        shared = [s for s, group in by_slide.items() if a in group and b in group]
        if not shared:
            continue
        first, second = [by_slide[s][a].adequacy for s in shared], [by_slide[s][b].adequacy for s in shared]
        pairs.append(
            {
                "annotators": [a, b],
                "slides": len(shared),
                "adequacy_weighted_kappa": cohen_kappa(first, second, list(ADEQUACY_LEVELS), "quadratic"),
                "diagnosis_exact_agreement": float(
                    np.mean([by_slide[s][a].diagnosis_codes == by_slide[s][b].diagnosis_codes for s in shared])
                ),
            }
        )
    result = {"annotators": annotators, "slides": len(by_slide), "pairs": pairs}
    counts = Counter(len(group) for group in by_slide.values())
    raters = max((n for n in counts if n >= 3), key=lambda n: (counts[n], n), default=None)
    if raters is not None:
        slides = [group for group in by_slide.values() if len(group) == raters]
        adequacy = np.array(
            [[sum(1 for label in g.values() if label.adequacy == level) for level in ADEQUACY_LEVELS] for g in slides]
        )
        diagnoses = sorted({label.diagnosis_codes for g in slides for label in g.values()})
        diagnosis = np.array([[sum(1 for label in g.values() if label.diagnosis_codes == d) for d in diagnoses] for g in slides])
        result["fleiss"] = {
            "raters_per_slide": raters,
            "slides": len(slides),
            "adequacy_kappa": fleiss_kappa(adequacy),
            "diagnosis_kappa": fleiss_kappa(diagnosis),
        }
    return result
