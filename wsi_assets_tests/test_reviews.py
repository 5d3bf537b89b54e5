"""Reviews: every QuPath variant imports, agreement equals independent figures, versions are kept, the log is append-only."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import shapely

from wsi_assets.reviews.agreement import cohen_kappa, fleiss_kappa
from wsi_assets.reviews.audit_log import AuditLogTampered, read_log
from wsi_assets.reviews.branch_labels import annotator_agreement, slide_table
from wsi_assets.reviews.cell_review import compare_cells
from wsi_assets.reviews.model_cells import ModelCells
from wsi_assets.reviews.review_files import cell_review_changes
from wsi_assets.reviews.review_geojson import ReviewFileError, parse_review_bytes
from wsi_assets.reviews.slide_labels import parse_slide_labels
from wsi_assets.reviews.version_store import (
    UnknownReviewVersion,
    audit_log_path,
    current_version,
    history,
    import_review,
    restore_review,
)
from wsi_assets.slides.synthetic import SyntheticSlideSpec, synthetic_nuclei, synthetic_nucleus_polygons

# Imported at collection: scikit-learn sets threading variables in os.environ on first import,
# which the environment guard would pin on whichever test imported it first.
try:
    import sklearn.metrics as SKLEARN_METRICS
except ImportError:  # the independent κ checks skip without it
    SKLEARN_METRICS = None

SPEC = SyntheticSlideSpec(width=3000, height=2000, mpp=0.25, seed=5)
CLASSES = ["inflammatory", "epithelial", "spindle", "other"]


def truth_cells():
    nuclei = synthetic_nuclei(SPEC, 0, 0, SPEC.width, SPEC.height)
    outlines = synthetic_nucleus_polygons(SPEC, nuclei)
    # The drawn truth acts as the reviewer; its class follows the nucleus size (a stand-in a test can predict).
    classes = [CLASSES[int(a) % 4] for a in nuclei["area_pixels"]]
    return nuclei, [shapely.Polygon(o) for o in outlines], classes


def feature(polygon, object_type="detection", classification=None, measurements=None, fid=None):
    properties = {"objectType": object_type}
    if classification is not None:
        properties["classification"] = classification
    if measurements is not None:
        properties["measurements"] = measurements
    return {"type": "Feature", "id": fid, "geometry": json.loads(shapely.to_geojson(polygon)), "properties": properties}


def qupath_bytes(polygons, classes, *, bare=False, list_measurements=False, string_class=False, cell=False, regions=()):
    features = []
    for i, (polygon, name) in enumerate(zip(polygons, classes)):
        measurements = [{"name": "Area", "value": polygon.area}] if list_measurements else {"Area": polygon.area}
        classification = None if name is None else (name if string_class else {"name": name, "color": [1, 2, 3]})
        item = feature(polygon, "cell" if cell else "detection", classification, measurements, f"f{i}")
        if cell:
            item["nucleusGeometry"] = item["geometry"]
            item["geometry"] = json.loads(shapely.to_geojson(polygon.buffer(4)))
        features.append(item)
    features += [feature(region, "annotation", fid=f"r{i}") for i, region in enumerate(regions)]
    return json.dumps(features if bare else {"type": "FeatureCollection", "features": features}).encode()


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(bare=True),
        dict(list_measurements=True),
        dict(string_class=True),
        dict(cell=True),
        dict(bare=True, list_measurements=True, string_class=True),
    ],
    ids=["collection-map-object", "bare-array", "list-measurements", "string-class", "cell-with-nucleus", "bare-list-string"],
)
def test_every_qupath_variant_imports_the_same_cells_classes_and_regions(variant):
    _, polygons, classes = truth_cells()
    region = shapely.box(0, 0, 1500, 1000)
    parsed = parse_review_bytes(qupath_bytes(polygons[:50], classes[:50], regions=[region], **variant), "r.geojson")
    assert parsed.classes == classes[:50]
    assert len(parsed.regions) == 1 and parsed.regions[0].equals(region)
    assert all(abs(a.area - b.area) < 1e-6 for a, b in zip(parsed.polygons, polygons[:50]))


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"{not json", "is not valid JSON (line 1"),
        (b'{"type": "Point", "coordinates": [1, 2]}', "expected a GeoJSON FeatureCollection or an array"),
        # A Point has no area: skipped and reported, not fatal (test_the_review_import_repairs_...). A shape GeoJSON lacks is fatal.
        (
            json.dumps(
                [{"type": "Feature", "geometry": {"type": "Circle", "radius": 2}, "properties": {"objectType": "detection"}}]
            ).encode(),
            "feature 0: geometry must be a Polygon",
        ),
        (
            json.dumps([feature(shapely.box(0, 0, 5, 5), "tma_core")]).encode(),
            "objectType 'tma_core' is not detection, cell or annotation",
        ),
        (json.dumps([feature(shapely.box(0, 0, 5, 5), measurements=[1, 2])]).encode(), "measurements list must hold"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
    ids=["not-json", "not-features", "not-a-shape", "object-type", "measurements", "encoding"],
)
def test_a_bad_review_file_is_one_line_naming_the_file(data, expected):
    with pytest.raises(ReviewFileError) as caught:
        parse_review_bytes(data, "alice/reviews/main/s1.geojson")
    message = str(caught.value)
    assert expected in message and "alice/reviews/main/s1.geojson" in message and "\n" not in message


def test_slide_labels_parse_and_bad_rows_are_named():
    rows = parse_slide_labels(b"slide,annotator,adequacy,diagnosis_codes,comment\ns1,ann,Adequate,C50.9; C77.3,ok\n")
    assert rows[0].adequacy == "adequate" and rows[0].diagnosis_codes == ("C50.9", "C77.3")
    for data, expected in (
        (b"slide,annotator\ns1,a\n", "lacks the column(s) adequacy"),
        (b"slide,annotator,adequacy\ns1,a,great\n", "line 2: adequacy 'great' is not one of"),
        (b"slide,annotator,adequacy\n../x,a,adequate\n", "line 2: slide name '../x'"),
        (b"slide,annotator,adequacy\ns1,a,adequate\ns1,a,limited\n", "line 3: a labels slide s1 again"),
    ):
        with pytest.raises(ReviewFileError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            parse_slide_labels(data)


# ------------------------------------------------------------------ agreement


def test_cohen_and_weighted_kappa_equal_scikit_learn():
    sklearn_metrics = SKLEARN_METRICS or pytest.skip("scikit-learn is not installed")
    rng = np.random.default_rng(3)
    first = rng.integers(0, 4, 300)
    second = np.where(rng.random(300) < 0.6, first, rng.integers(0, 4, 300))
    labels = CLASSES
    for weights in (None, "linear", "quadratic"):
        kappa = cohen_kappa([labels[i] for i in first], [labels[i] for i in second], labels, weights)
        assert kappa == pytest.approx(sklearn_metrics.cohen_kappa_score(first, second, weights=weights), abs=1e-12)
    # Worked by hand: 50 items, observed agreement 0.7, chance 0.5.
    assert cohen_kappa(["a"] * 25 + ["b"] * 25, ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15, ["a", "b"]) == pytest.approx(
        0.4
    )
    # Ordinal labels: the weights count how far apart the two ratings are, in the labels' order.
    levels = ["low", "mid", "high"]
    first_levels = ["low"] * 3 + ["mid"] * 4 + ["high"] * 3
    second_levels = ["low", "low", "mid", "mid", "mid", "high", "low", "high", "high", "mid"]
    expected = {None: 13 / 33, "linear": 11 / 21, "quadratic": 2 / 3}
    assert {w: cohen_kappa(first_levels, second_levels, levels, w) for w in expected} == pytest.approx(expected)
    assert cohen_kappa([], [], ["a", "b"]) is None
    assert cohen_kappa(["a", "a"], ["a", "a"], ["a", "b"]) is None  # both always say "a": undefined, not 1
    assert cohen_kappa(["a", "a"], ["a", "a"], ["a"]) is None
    with pytest.raises(ValueError):
        cohen_kappa(first_levels, second_levels, levels, "cubic")


def test_fleiss_kappa_equals_the_hand_computed_case():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, κ = 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[1, 1], [2, 1]]))


def test_truth_as_reviewer_gives_exactly_the_edits_made_to_the_model():
    nuclei, polygons, classes = truth_cells()
    n = len(polygons)
    assert n > 200
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    missed, reclassified, reshaped = order[:20], order[20:35], order[35:45]
    keep = np.setdiff1d(np.arange(n), missed)
    model_classes = list(classes)
    for i in reclassified:
        model_classes[i] = CLASSES[(CLASSES.index(classes[i]) + 1) % 4]
    model_polygons = list(polygons)
    for i in reshaped:  # same centre, a third of the area: IoU 1/3
        model_polygons[i] = shapely.affinity.scale(polygons[i], 3**-0.5, 3**-0.5, origin="centroid")
    # Spurious model cells on empty glass (the reviewer deletes them).
    spurious = [shapely.Point(x, 1990).buffer(5) for x in (100, 400, 700)]
    centroids = np.array([[p.centroid.x, p.centroid.y] for p in [model_polygons[i] for i in keep] + spurious])
    model = ModelCells(
        np.arange(1, len(keep) + 4),
        np.array([model_polygons[i] for i in keep] + spurious, dtype=object),
        centroids,
        [model_classes[i] for i in keep] + ["other"] * 3,
        True,
    )
    reviewer = parse_review_bytes(qupath_bytes(polygons, classes, bare=True, string_class=True), "truth.geojson")
    result = compare_cells(model, reviewer, radius_px=3.0 / SPEC.mpp)
    f = result.figures
    assert (f["added"], f["deleted"], f["reshaped"], f["reclassified"]) == (20, 3, 10, 15)
    tp = n - 20
    assert f["detection_f1"] == pytest.approx(2 * tp / (2 * tp + 3 + 20))
    # κ over the paired cells, independently: the model's class against the truth's for every kept nucleus.
    sklearn_metrics = SKLEARN_METRICS or pytest.skip("scikit-learn is not installed")
    assert f["cohen_kappa"] == pytest.approx(
        sklearn_metrics.cohen_kappa_score([model_classes[i] for i in keep], [classes[i] for i in keep])
    )
    kinds = {row["kind"] for row in result.disagreements}
    assert kinds == {"added", "deleted", "reshaped", "reclassified"}


def test_regions_limit_the_comparison_and_a_model_without_classes_still_compares():
    _, polygons, classes = truth_cells()
    region = shapely.box(0, 0, 1000, 1000)
    centroids = np.array([[p.centroid.x, p.centroid.y] for p in polygons])
    model = ModelCells(np.arange(len(polygons)), np.array(polygons, dtype=object), centroids, [None] * len(polygons), False)
    inside = region.contains(shapely.points(centroids))
    reviewer = parse_review_bytes(
        qupath_bytes([p for p, k in zip(polygons, inside) if k], [None] * int(inside.sum()), regions=[region]), "r"
    )
    from wsi_assets.reviews.model_cells import inside as within

    keep = within(centroids, region)
    limited = ModelCells(model.cell_ids[keep], model.polygons[keep], centroids[keep], [None] * int(keep.sum()), False)
    f = compare_cells(limited, reviewer, 12.0, region).figures
    assert f["detection_f1"] == 1.0 and f["model_cells"] == int(inside.sum()) and not f["classes_compared"]
    assert "class column" in f["classes_not_compared_because"]


def test_slide_reviews_table_and_annotator_agreement():
    rows = ["slide,annotator,adequacy,diagnosis_codes,comment"]
    votes = {
        "s1": "adequate adequate adequate",
        "s2": "adequate limited inadequate",
        "s3": "inadequate inadequate limited",
        "s4": "limited limited limited",
    }
    for slide, levels in votes.items():
        for annotator, level in zip(("ann", "bob", "cat"), levels.split()):
            rows.append(f"{slide},{annotator},{level},C50.9,")
    labels = parse_slide_labels("\n".join(rows).encode())
    table = {r["slide"]: r for r in slide_table(labels)}
    assert table["s2"]["adequacy_majority"] == "tie" and table["s3"]["adequacy_majority"] == "inadequate"
    agreement = annotator_agreement(labels)
    sklearn_metrics = SKLEARN_METRICS or pytest.skip("scikit-learn is not installed")
    levels = {"inadequate": 0, "limited": 1, "adequate": 2}
    ann = [levels[v.split()[0]] for v in votes.values()]
    bob = [levels[v.split()[1]] for v in votes.values()]
    pair = next(p for p in agreement["pairs"] if p["annotators"] == ["ann", "bob"])
    assert pair["adequacy_weighted_kappa"] == pytest.approx(
        sklearn_metrics.cohen_kappa_score(ann, bob, weights="quadratic", labels=[0, 1, 2])
    )
    table3 = np.array([[sum(1 for v in vs.split() if v == lvl) for lvl in levels] for vs in votes.values()])
    assert agreement["fleiss"]["adequacy_kappa"] == pytest.approx(fleiss_kappa(table3))
    assert agreement["fleiss"]["diagnosis_kappa"] is None  # everyone gave the same code: κ undefined, not 1


# ------------------------------------------------------------------ versions and the audit log


@pytest.fixture()
def review_home(tmp_path):
    root = tmp_path / "user_files"
    folder = root / "alice" / "reviews" / "main"
    folder.mkdir(parents=True)
    return root, folder / "s1.geojson"


def test_reuploads_keep_every_version_restore_brings_one_back_and_inputs_are_untouched(review_home):
    root, upload = review_home
    _, polygons, classes = truth_cells()
    first = qupath_bytes(polygons[:30], classes[:30])
    second = qupath_bytes(polygons[:25], [c if i else "other" for i, c in enumerate(classes[:25])])
    upload.write_bytes(first)
    v1, new = import_review(root, "alice", "main", upload, cell_review_changes)
    assert new and v1.path.read_bytes() == first
    assert import_review(root, "alice", "main", upload, cell_review_changes)[1] is False  # same content: nothing logged
    upload.write_bytes(second)
    v2, _ = import_review(root, "alice", "main", upload, cell_review_changes)
    assert v1.path.exists() and v2.path.read_bytes() == second and v1.sha256 != v2.sha256
    assert v2.entry["changes"]["cells_removed"] == 5 and v2.entry["changes"]["cells_reclassified"] == (classes[0] != "other")
    restored = restore_review(root, "alice", "main", "s1.geojson", v1.sha256[:10], "tester", cell_review_changes)
    assert current_version(root, "alice", "main", "s1.geojson").sha256 == v1.sha256 == restored.sha256
    assert [e["action"] for e in history(root, "alice")] == ["import", "import", "restore"]
    assert hashlib.sha256(upload.read_bytes()).digest() == hashlib.sha256(second).digest()  # the upload is never changed
    with pytest.raises(UnknownReviewVersion, match="is not a version of it"):
        restore_review(root, "alice", "main", "s1.geojson", "abcdef", "tester", cell_review_changes)


def test_a_bad_file_is_neither_stored_nor_logged(review_home):
    root, upload = review_home
    upload.write_bytes(b"[{]")
    with pytest.raises(ReviewFileError, match="not valid JSON"):
        import_review(root, "alice", "main", upload, cell_review_changes)
    assert history(root, "alice") == [] and not (root / "alice" / "outputs" / "main" / ".reviews").exists()


@pytest.mark.parametrize(
    "tampering", ["edit-a-line", "drop-the-last-line", "rewrite-a-consistent-chain", "remove-the-head", "reorder"]
)
def test_the_audit_log_is_append_only_a_rewritten_log_is_refused(review_home, tampering):
    root, upload = review_home
    _, polygons, classes = truth_cells()
    for count in (10, 20, 30):
        upload.write_bytes(qupath_bytes(polygons[:count], classes[:count]))
        import_review(root, "alice", "main", upload, cell_review_changes)
    log = audit_log_path(root, "alice")
    lines = log.read_bytes().splitlines(keepends=True)
    if tampering == "edit-a-line":
        log.write_bytes(b"".join([lines[0], lines[1].replace(b'"import"', b'"restore"'), lines[2]]))
    elif tampering == "drop-the-last-line":
        log.write_bytes(b"".join(lines[:2]))
    elif tampering == "rewrite-a-consistent-chain":
        from wsi_assets.reviews.audit_log import entry_hash

        entries = [json.loads(line) for line in lines[:2]]
        entries[1]["annotator"] = "someone-else"
        entries[1]["hash"] = entry_hash(entries[1])
        log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    elif tampering == "remove-the-head":
        os.remove(log.with_name(log.name + ".head"))
    else:
        log.write_bytes(b"".join([lines[1], lines[0], lines[2]]))
    with pytest.raises(AuditLogTampered) as caught:
        read_log(log)
    assert "\n" not in str(caught.value)
    # Nothing more can be appended to a log that fails its check.
    upload.write_bytes(qupath_bytes(polygons[:5], classes[:5]))
    with pytest.raises(AuditLogTampered):
        import_review(root, "alice", "main", upload, cell_review_changes)


def test_the_review_import_repairs_outlines_and_skips_only_what_has_no_area():
    """QuPath opens all of these; before, the first invalid outline refused the whole file ('feature 0: geometry has no area')."""

    def feature(fid, geometry, name="epithelial"):
        return {
            "type": "Feature",
            "id": fid,
            "geometry": geometry,
            "properties": {"objectType": "detection", "classification": {"name": name}},
        }

    spur = [[0, 0], [10, 0], [10, 5], [20, 5], [10, 5], [10, 10], [0, 10], [0, 0]]  # a ring running out and back along a line
    bow_tie = [[30, 0], [40, 10], [40, 0], [30, 10], [30, 0]]  # a ring crossing itself: two triangles of 25 px² each
    two_parts = [[[[50, 0], [60, 0], [60, 10], [50, 10], [50, 0]]], [[[70, 0], [72, 0], [72, 2], [70, 2], [70, 0]]]]
    flat = [[80, 0], [90, 0], [85, 0], [80, 0]]  # a collapsed ring: no area at all
    document = [
        feature("spur", {"type": "Polygon", "coordinates": [spur]}),
        feature("bow-tie", {"type": "Polygon", "coordinates": [bow_tie]}),
        feature("two-parts", {"type": "MultiPolygon", "coordinates": two_parts}, "inflammatory"),
        feature("flat", {"type": "Polygon", "coordinates": [flat]}),
        feature("dot", {"type": "Point", "coordinates": [5, 5]}),
    ]
    parsed = parse_review_bytes(json.dumps(document).encode(), "r.geojson")
    assert parsed.feature_ids == ["spur", "bow-tie", "two-parts"]
    assert [p.area for p in parsed.polygons] == [100.0, 25.0, 100.0]  # the spur's square; a triangle; the larger part
    assert all(p.is_valid and p.geom_type == "Polygon" for p in parsed.polygons)
    assert parsed.classes == ["epithelial", "epithelial", "inflammatory"]
    assert len(parsed.skipped) == 2 and parsed.skipped[0].startswith("feature 3 (id flat)") and "(id dot)" in parsed.skipped[1]
    # Malformed files are still refused whole, with one line.
    with pytest.raises(ReviewFileError, match="feature 0"):
        parse_review_bytes(json.dumps([feature("x", {"type": "Polygon", "coordinates": "nonsense"})]).encode(), "r.geojson")
