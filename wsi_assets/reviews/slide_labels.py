"""slides.csv: slide-level labels from pathologists (adequacy, diagnosis codes, a comment), one row per slide and annotator."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from wsi_assets.core.keys import name_problem
from wsi_assets.reviews.review_geojson import ReviewFileError

SLIDE_LABELS_FILE = "slides.csv"
REQUIRED_COLUMNS = ("slide", "annotator", "adequacy")
OPTIONAL_COLUMNS = ("diagnosis_codes", "comment")
# Ordered worst to best, so adequacy is an ordinal label ("limited": adequate but limited, as in Bethesda).
ADEQUACY_LEVELS = ("inadequate", "limited", "adequate")
MAX_SLIDE_LABELS_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SlideLabel:
    slide: str
    annotator: str
    adequacy: str
    diagnosis_codes: tuple[str, ...]
    comment: str

    def as_dict(self) -> dict:
        return {
            "slide": self.slide,
            "annotator": self.annotator,
            "adequacy": self.adequacy,
            "diagnosis_codes": ";".join(self.diagnosis_codes),
            "comment": self.comment,
        }


def _codes(text: str) -> tuple[str, ...]:
    # Codes are separated by ';' or '|' (a ',' would need quoting in a CSV cell, which spreadsheets get wrong).
    parts = [p.strip() for p in text.replace("|", ";").split(";")]
    return tuple(sorted({p for p in parts if p}))


def parse_slide_labels(data: bytes, shown: str = SLIDE_LABELS_FILE) -> list[SlideLabel]:
    """The rows of a slides.csv; ReviewFileError (one line naming the row and column) when one is unusable."""
    if len(data) > MAX_SLIDE_LABELS_BYTES:
        raise ReviewFileError(
            f"{shown} is over {MAX_SLIDE_LABELS_BYTES // 2**20} MiB: one row per slide and annotator is expected"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReviewFileError(f"{shown} is not UTF-8 text: save it as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        return _parse_rows(reader, shown)
    except csv.Error as error:  # e.g. a field over the csv module's limit of 131,072 characters
        detail = str(error).splitlines()[0] if str(error) else "csv.Error"
        raise ReviewFileError(
            f"{shown} line {reader.line_num + 1}: not readable as CSV ({detail}); save it again as CSV UTF-8"
        ) from None


def _parse_rows(reader: csv.DictReader, shown: str) -> list[SlideLabel]:
    columns = [c.strip().lower().replace(" ", "_") for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ReviewFileError(
            f"{shown} lacks the column(s) {', '.join(missing)}; its header must be slide,annotator,adequacy,diagnosis_codes,comment"
        )
    labels, seen = [], {}
    for line, raw in enumerate(reader, start=2):
        row = {c: (v or "").strip() for c, v in zip(columns, raw.values()) if c}
        for what in ("slide", "annotator"):
            problem = name_problem(row[what], what)
            if problem:
                raise ReviewFileError(f"{shown} line {line}: {problem}")
        adequacy = row["adequacy"].lower()
        if adequacy not in ADEQUACY_LEVELS:
            raise ReviewFileError(f"{shown} line {line}: adequacy '{row['adequacy']}' is not one of {', '.join(ADEQUACY_LEVELS)}")
        pair = (row["slide"], row["annotator"])
        if pair in seen:
            raise ReviewFileError(
                f"{shown} line {line}: {row['annotator']} labels slide {row['slide']} again (first on line {seen[pair]}); keep one row"
            )
        seen[pair] = line
        labels.append(
            SlideLabel(row["slide"], row["annotator"], adequacy, _codes(row.get("diagnosis_codes", "")), row.get("comment", ""))
        )
    return labels
