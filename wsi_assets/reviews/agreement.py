"""Agreement figures: detection and per-class F1, the confusion matrix, Cohen's (weighted) κ and Fleiss' κ."""

from __future__ import annotations

import math
import warnings

import numpy as np


def f1(tp: int, fp: int, fn: int) -> float | None:
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def confusion_matrix(first: list[str], second: list[str], labels: list[str]) -> np.ndarray:
    """counts[i, j]: items `first` calls labels[i] and `second` calls labels[j]."""
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), np.int64)
    for a, b in zip(first, second):
        counts[index[a], index[b]] += 1
    return counts


def cohen_kappa(first: list[str], second: list[str], labels: list[str], weights: str | None = None) -> float | None:
    """Cohen's κ of two raters' labels of the same items; `weights` 'linear' or 'quadratic' for ordinal `labels` (in order).

    None when it is undefined (no items, one label, or both raters always give one and the same label).
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    if len(first) == 0 or len(labels) < 2:
        return None
    # Imported here: scikit-learn's metrics take seconds to import, and only a review needs them.
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        # An undefined κ is a warning and NaN there (a division by zero before scikit-learn 1.6); None here.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(cohen_kappa_score(first, second, labels=labels, weights=weights))
    return None if math.isnan(kappa) else kappa


def fleiss_kappa(ratings: np.ndarray) -> float | None:
    """Fleiss' κ of a (subjects × categories) table of how many raters put each subject in each category.

    Every subject must have the same number of raters; None when κ is undefined.
    """
    ratings = np.asarray(ratings, np.float64)
    if ratings.size == 0:
        return None
    raters = ratings.sum(1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (at least 2) of raters for every subject")
    n, subjects = raters[0], len(ratings)
    p_category = ratings.sum(0) / (subjects * n)
    p_subject = ((ratings**2).sum(1) - n) / (n * (n - 1))
    p_bar, p_expected = p_subject.mean(), (p_category**2).sum()
    if p_expected == 1:
        return None
    return float((p_bar - p_expected) / (1 - p_expected))


def per_class_f1(model_classes, reviewer_classes, pairs_model, pairs_reviewer, labels) -> dict[str, float | None]:
    """F1 of each class: a true positive is a paired cell both call that class; everything else of it is an error.

    A model cell of class c is a false positive unless paired with a reviewer cell of class c, a
    reviewer cell of class c a false negative unless paired with a model cell of class c (deleted and
    added cells count too).
    """
    result = {}
    paired_m = [model_classes[i] for i in pairs_model]
    paired_r = [reviewer_classes[i] for i in pairs_reviewer]
    for label in labels:
        tp = sum(1 for a, b in zip(paired_m, paired_r) if a == label and b == label)
        fp = sum(1 for c in model_classes if c == label) - tp
        fn = sum(1 for c in reviewer_classes if c == label) - tp
        result[label] = f1(tp, fp, fn)
    return result
