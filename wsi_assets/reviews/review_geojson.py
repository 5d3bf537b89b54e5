"""A reviewer's QuPath GeoJSON export: corrected cells, and the annotation polygons that mark reviewed regions.

QuPath writes several shapes of the same thing, and every one is accepted: a FeatureCollection
or a bare array of features (QuPath's default), measurements as a map or as the older list of
`{name, value}`, a classification as an object or a plain string, and objectType `detection`,
`cell` (its nucleus is `nucleusGeometry` when present) or `annotation` (a reviewed region).
Tolerant where QuPath is: an invalid outline is repaired (make_valid) and keeps its polygonal
area; a feature with no area at all is skipped and reported by id, never the whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

CELL_OBJECT_TYPES = ("detection", "cell", "tile")
REGION_OBJECT_TYPE = "annotation"
MAX_REVIEW_GEOJSON_BYTES = 512 * 1024 * 1024  # parsed whole in memory: about 800,000 cells


class ReviewFileError(ValueError):
    """A review file cannot be used; the message is one line naming the file and the fix."""


@dataclass
class ReviewedCells:
    """The reviewer's cells (polygons, classes, feature ids) and the regions they reviewed."""

    polygons: list = field(default_factory=list)  # shapely Polygons, level-0 px
    classes: list = field(default_factory=list)  # str or None
    feature_ids: list = field(default_factory=list)  # str ("" when the feature has none)
    regions: list = field(default_factory=list)  # shapely Polygons of the reviewed regions
    # Features left out because their geometry has no area (a point, a line, a collapsed ring),
    # each as "feature <id>: why": reported, while every other feature is used.
    skipped: list = field(default_factory=list)

    @property
    def centroids(self) -> np.ndarray:
        if not self.polygons:
            return np.empty((0, 2))
        points = shapely.centroid(np.asarray(self.polygons, dtype=object))
        return np.stack([shapely.get_x(points), shapely.get_y(points)], axis=1)


def class_name(classification) -> str | None:
    """QuPath's classification as a name: an object with `name`, a string, or absent."""
    if classification is None:
        return None
    if isinstance(classification, str):
        return classification.strip() or None
    if isinstance(classification, dict):
        name = classification.get("name")
        if name is None and isinstance(classification.get("names"), list):  # a derived class: A: B
            name = ": ".join(str(part) for part in classification["names"])
        return str(name).strip() or None if name is not None else None
    raise ValueError(f"classification must be an object or a string, not {type(classification).__name__}")


def measurement_map(measurements) -> dict[str, float]:
    """Measurements as name → number, from QuPath's map or its older `[{name, value}]` list."""
    if measurements is None:
        return {}
    if isinstance(measurements, dict):
        return {str(k): v for k, v in measurements.items()}
    if isinstance(measurements, list):
        found = {}
        for entry in measurements:
            if not isinstance(entry, dict) or "name" not in entry:
                raise ValueError('a measurements list must hold {"name": ..., "value": ...} objects')
            found[str(entry["name"])] = entry.get("value")
        return found
    raise ValueError(f"measurements must be a map or a list, not {type(measurements).__name__}")


def _features(document) -> list:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if document.get("type") == "FeatureCollection":
            features = document.get("features")
            if not isinstance(features, list):
                raise ValueError("a FeatureCollection needs a 'features' array")
            return features
        if document.get("type") == "Feature":
            return [document]
    raise ValueError("expected a GeoJSON FeatureCollection or an array of features (QuPath's export)")


class NoArea(ValueError):
    """A feature whose geometry, repaired, covers no area: skipped and reported, not fatal."""


def polygonal_parts(shape) -> list:
    """The Polygons with area anywhere in `shape`: a Polygon, a MultiPolygon, or a GeometryCollection
    (what make_valid gives for a ring that crosses itself: polygons plus the lines it shed)."""
    parts = []
    for part in shapely.get_parts(shape):
        if part.geom_type == "Polygon":
            parts.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            parts.extend(polygonal_parts(part))
    return [part for part in parts if part.area > 0]


def _polygons(geometry) -> list:
    """The polygons of a GeoJSON Polygon or MultiPolygon, repaired as QuPath and JTS would: an invalid
    outline keeps its polygonal area. NoArea when none is left."""
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
            raise NoArea(f"geometry is a {kind}, which has no area")
        raise ValueError(f"geometry must be a Polygon or MultiPolygon, not {kind}")
    shape = shapely.from_geojson(json.dumps(geometry))
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    parts = polygonal_parts(shape)
    if not parts:
        raise NoArea("geometry has no area")
    return parts


def _feature_name(feature: dict, index: int) -> str:
    properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
    named = feature.get("id", properties.get("id"))
    return f"feature {index} (id {named})" if named not in (None, "") else f"feature {index}"


def parse_review_features(document) -> ReviewedCells:
    """The cells and reviewed regions of a parsed QuPath GeoJSON document; ValueError (one line) when malformed."""
    found = ReviewedCells()
    for index, feature in enumerate(_features(document)):
        try:
            if not isinstance(feature, dict):
                raise ValueError("is not an object")
            properties = feature.get("properties") or {}
            # QuPath before 0.4 wrote `object_type`; a feature naming neither is taken as a detection.
            object_type = str(properties.get("objectType", properties.get("object_type", "detection"))).lower()
            if object_type == REGION_OBJECT_TYPE:
                found.regions.extend(_polygons(feature.get("geometry")))
                continue
            if object_type not in CELL_OBJECT_TYPES:
                raise ValueError(f"objectType '{object_type}' is not detection, cell or annotation")
            geometry = feature.get("nucleusGeometry") or feature.get("geometry")
            # A cell of several parts (a MultiPolygon, or an outline make_valid split) is its largest
            # part: one nucleus is one blob, and matching pairs it with one model outline.
            polygon = max(_polygons(geometry), key=lambda p: p.area)
            measurement_map(properties.get("measurements"))  # malformed measurements are refused, not ignored
            found.polygons.append(polygon)
            found.classes.append(class_name(properties.get("classification")))
            found.feature_ids.append(str(feature.get("id", properties.get("id", ""))))
        except NoArea as error:
            found.skipped.append(f"{_feature_name(feature, index)}: {error}")
        except (ValueError, TypeError, shapely.errors.GEOSException) as error:
            raise ValueError(f"feature {index}: {str(error).splitlines()[0]}") from None
    return found


def read_review_geojson(path: Path, shown: str | None = None) -> ReviewedCells:
    """A review file's cells and regions; ReviewFileError naming the file when it is too big or malformed."""
    path = Path(path)
    shown = shown or path.name
    size = path.stat().st_size
    if size > MAX_REVIEW_GEOJSON_BYTES:
        raise ReviewFileError(
            f"{shown} is {size / 1e6:.0f} MB, over the {MAX_REVIEW_GEOJSON_BYTES // 2**20} MiB limit for a review; export only the reviewed regions from QuPath"
        )
    return parse_review_bytes(path.read_bytes(), shown)


def parse_review_bytes(data: bytes, shown: str) -> ReviewedCells:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ReviewFileError(f"{shown} is not UTF-8 text: export it again from QuPath as GeoJSON") from None
    except json.JSONDecodeError as error:
        raise ReviewFileError(
            f"{shown} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); export it again from QuPath"
        ) from None
    except RecursionError:
        raise ReviewFileError(
            f"{shown} is nested deeper than any QuPath export (JSON arrays or objects inside each other beyond Python's limit); export it again from QuPath"
        ) from None
    try:
        return parse_review_features(document)
    except ValueError as error:
        raise ReviewFileError(
            f"{shown}: {error}; export the corrected objects again from QuPath (File > Export objects as GeoJSON)"
        ) from None
    except RecursionError:
        raise ReviewFileError(
            f"{shown}: a geometry is nested deeper than any QuPath export; export the corrected objects again from QuPath"
        ) from None
