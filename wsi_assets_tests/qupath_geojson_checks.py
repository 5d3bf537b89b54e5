"""QuPath's GeoJSON import rules as a streaming checker (ijson), for the export tests.

What QuPath 0.5/0.6 needs to import a file by drag and drop: a FeatureCollection of Features with
Polygon geometries, `properties.objectType` "detection" (or "cell" with a `nucleusGeometry`), a
classification only with a name and an [r, g, b] colour, measurements as a name -> number map.
Beyond QuPath: UUID ids, unique; closed rings; coordinates inside the slide.
"""

from __future__ import annotations

import gzip
import uuid
from pathlib import Path
from typing import IO, Iterator

import ijson

POLYGONAL = ("Polygon", "MultiPolygon")


def open_geojson(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def iter_features(path: Path) -> Iterator[dict]:
    with open_geojson(path) as stream:
        yield from ijson.items(stream, "features.item", use_float=True)


def collection_type(path: Path) -> str | None:
    with open_geojson(path) as stream:
        return next(ijson.items(stream, "type"), None)


def _rings(geometry: dict) -> Iterator[list]:
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for polygon in polygons:
        yield from polygon


def geometry_problems(geometry: dict | None, size: tuple[float, float]) -> list[str]:
    if not isinstance(geometry, dict) or geometry.get("type") not in POLYGONAL:
        return [f"geometry is not a polygon: {str(geometry)[:60]}"]
    problems = []
    for ring in _rings(geometry):
        if len(ring) < 4 or ring[0] != ring[-1]:
            problems.append("ring not closed or under 4 positions")
        if any(not (0 <= x <= size[0] and 0 <= y <= size[1]) for x, y in ring):
            problems.append("coordinates outside the slide")
    return problems


def feature_problems(feature: dict, size: tuple[float, float], object_type: str) -> list[str]:
    """Why QuPath (or a careful reader) would refuse this feature; empty when it is fine."""
    if feature.get("type") != "Feature":
        return ["not a Feature"]
    problems = geometry_problems(feature.get("geometry"), size)
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        return problems + ["no properties"]
    if properties.get("objectType") != object_type:
        problems.append(f"objectType {properties.get('objectType')!r}, expected {object_type!r}")
    if object_type == "cell":
        problems += [f"nucleusGeometry: {p}" for p in geometry_problems(feature.get("nucleusGeometry"), size)]
    if "classification" in properties:
        classification = properties["classification"]
        colour = classification.get("color") if isinstance(classification, dict) else None
        if not isinstance(classification, dict) or not isinstance(classification.get("name"), str):
            problems.append("classification without a name")
        if not (isinstance(colour, list) and len(colour) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)):
            problems.append("classification without an [r, g, b] colour")
    measurements = properties.get("measurements")
    if not isinstance(measurements, dict) or not all(isinstance(v, (int, float)) for v in measurements.values()):
        problems.append("measurements is not a name -> number map")
    try:
        uuid.UUID(str(feature.get("id")))
    except ValueError:
        problems.append(f"id {feature.get('id')!r} is not a UUID")
    return problems


def qupath_import_problems(path: Path, size: tuple[float, float], object_type: str = "detection") -> list[str]:
    """Every problem in the file, streamed feature by feature; ids must also be unique."""
    if collection_type(path) != "FeatureCollection":
        return ["not a FeatureCollection"]
    problems, seen = [], set()
    for index, feature in enumerate(iter_features(path)):
        problems += [f"feature {index}: {p}" for p in feature_problems(feature, size, object_type)]
        if feature.get("id") in seen:
            problems.append(f"feature {index}: id {feature.get('id')} repeated")
        seen.add(feature.get("id"))
    return problems
