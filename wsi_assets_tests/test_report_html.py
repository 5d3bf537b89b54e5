"""report.html: a slide's result set shown in a browser, opened from disk, user text never markup.

And the warning a tissue_mask_only run gives when it replaces a set that had cells.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wsi_assets.core.slide_outputs import SlideOutputs
from wsi_assets.reports.report_html import REPORT_FILE, render_report_html
from wsi_assets.reports.slide_report import CheckVerdict, ClassRow, ReportImage, SlideReport, slide_report
from wsi_assets.results.dropped_cells import dropped_cells_warning

HOSTILE = "<img src=http://evil.example/a.png onerror=alert(1)><a href='http://evil.example/r'>x</a>&amp;\"'"
# A 1x1 JPEG is enough for the page's structure; the browser test loads the real overlays.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a1c1c20"
    "242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f00000105010101010101000000"
    "00000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191"
    "a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a"
    "737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8"
    "d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.handlers: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("href", "src", "srcset", "action", "poster", "data")]
        self.handlers += [name for name, _ in attrs if name.startswith("on")]

    def handle_data(self, data):
        self.text.append(data)


def _hostile_report() -> SlideReport:
    return SlideReport(
        title=f"mallory/{HOSTILE}/slide",
        slide_file=f"{HOSTILE}.svs",
        stage="exports",
        figures=(("Slide file", f"{HOSTILE}.svs"), ("Nuclei", "12")),
        images=(ReportImage(f"Thumbnail {HOSTILE}", TINY_JPEG),),
        classes=(ClassRow(HOSTILE, (10, 20, 30), 12, 1.0, 3.0),),
        checks=(CheckVerdict("class_mix_plausible", "passed", f"98% of nuclei are '{HOSTILE}'"),),
    )


def test_user_text_in_the_report_is_shown_as_typed_and_never_becomes_markup():
    page = _Page()
    page.feed(render_report_html(_hostile_report()))
    assert "a" not in page.tags, "a user's text became a link"
    assert page.handlers == [], "a user's text became an event handler"
    assert all(url.startswith("data:image/jpeg;base64,") for url in page.urls), page.urls
    assert page.tags.count("img") == 1
    text = "".join(page.text)
    assert f"{HOSTILE}.svs" in text and f"'{HOSTILE}'" in text


def test_report_page_loads_nothing_from_outside():
    html = render_report_html(_hostile_report())
    assert "default-src 'none'; img-src data:" in html


# --------------------------------------------------------------- the tissue_mask_only warning


def _set_with_cells(folder: Path, nuclei: int = 2678) -> Path:
    outputs = SlideOutputs(folder)
    outputs.segmentation_dir.mkdir(parents=True)
    outputs.cells_parquet.write_bytes(b"PAR1")
    outputs.segmentation_json.write_text(json.dumps({"cells": nuclei}))
    for name in ("thumbnail.jpg", "tissue_mask.png", "cells.csv", "cells.geojson", REPORT_FILE):
        (folder / name).write_bytes(b"x")
    return folder


def test_a_set_without_cells_replacing_one_with_cells_warns_what_left(tmp_path):
    previous = _set_with_cells(tmp_path / "previous")
    warning = dropped_cells_warning(previous, "tissue", "alice/main/s1", "tissue_mask_only")
    assert warning == (
        "alice/main/s1: tissue_mask_only published a result set without cells: the previous set's 2,678 nuclei and its "
        "exports (cells.csv, cells.geojson) are no longer published, and the slide drops out of the branch's summary.xlsx; "
        "run process_slide to segment it again"
    )


def test_no_warning_when_no_cells_are_dropped(tmp_path):
    with_cells = _set_with_cells(tmp_path / "with_cells")
    without = tmp_path / "without"
    without.mkdir()
    (without / "thumbnail.jpg").write_bytes(b"x")
    assert dropped_cells_warning(with_cells, "exports", "alice/main/s1", "process_slide") is None
    assert dropped_cells_warning(without, "tissue", "alice/main/s1", "tissue_mask_only") is None
    assert dropped_cells_warning(None, "tissue", "alice/main/s1", "tissue_mask_only") is None


# --------------------------------------------------------------- a real set, in a real browser


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("Chromium is not installed (CI installs Debian's chromium: .ci/install_chromium.sh)")
    return found


# Runs once the page has loaded (virtual time lets every data: image decode), then writes what
# the browser shows into the DOM that --dump-dom prints.
_PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete}));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, text: document.body.innerText});
  document.body.appendChild(out);
});
</script>
"""


def _browser_view(chromium: str, report: Path, scratch: Path) -> dict:
    # The published page forbids scripts (its CSP); the probe runs on a copy with the probe added.
    page = scratch / "probe.html"
    page.write_text(
        report.read_text()
        .replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
        .replace("</body>", _PROBE + "</body>")
    )
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={scratch / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    return json.loads(unescape(dom[start : dom.index("</pre>", start)]))


def test_published_report_opens_from_disk_with_its_images_and_figures(processed_synthetic, tmp_path):
    chromium = _chromium()
    key, result, folder = processed_synthetic
    report = folder / REPORT_FILE
    assert report.is_file(), "process_slide published no report.html"
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert metadata["slide_results"]["report"].value == report.absolute().as_uri()

    view = _browser_view(chromium, report, tmp_path)
    assert [(image["alt"], image["width"] > 0) for image in view["images"]] == [
        ("Thumbnail", True),
        ("Tissue mask over the thumbnail", True),
        ("Nucleus outlines (quality-check regions)", True),
        ("Nucleus classes", True),
        ("Lymphocytes per mm² over the thumbnail", True),
    ]
    summary = json.loads((folder / "segmentation" / "summary.json").read_text())
    classes = json.loads((folder / "segmentation" / "classes.json").read_text())
    text = view["text"]
    assert key in text and "synthetic01.svs" in text
    assert f"{summary['cells']:,}" in text, "the nuclei count is missing"
    assert f"{classes['lymphocytes_per_mm2']:,.0f} per mm² of tissue" in text, "the lymphocyte density is missing"
    assert "0.2500 µm/px (slide)" in text and f"v{summary['segmenter_version']}" in text
    for name, count in classes["class_counts"].items():
        assert f"{name}\t{count:,}\t" in text, f"class {name} ({count}) is missing from the class mix"
    for check in (
        "slide_resolution_fine_enough",
        "nuclei_found_in_tissue",
        "nuclei_density_plausible",
        "no_duplicate_nuclei_at_tile_borders",
        "class_mix_plausible",
    ):
        assert check in text


def test_report_verdicts_are_those_of_the_runs_asset_checks(processed_synthetic):
    key, result, folder = processed_synthetic
    report = slide_report(SlideOutputs(folder.resolve()), "exports", key, "synthetic01.svs")
    checks = {
        e.check_name: e.passed
        for e in (
            event.asset_check_evaluation_data for event in result.all_events if event.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }
    assert {check.name: check.verdict == "passed" for check in report.checks} == checks


def test_batch_report_shows_image_names_as_typed():
    from wsi_assets.reports.batch_report import render_batch_report_html

    row = {
        "image": f"{HOSTILE}.png",
        "width": 256,
        "height": 256,
        "mpp": 0.5,
        "mpp_source": "estimated",
        "mpp_inferred": True,
        "modality": "brightfield",
        "cells": 7,
        "cells_per_mm2": 100.0,
        "inflammatory_count": 7,
    }
    summary = {
        "images": 1,
        "cells": 7,
        "class_counts": {"inflammatory": 7},
        "per_image": [row],
        "rejected": [{"file": f"{HOSTILE}.txt", "why": "not an image of a batch"}],
    }
    page = _Page()
    page.feed(render_batch_report_html(f"mallory/main/{HOSTILE}", summary, TINY_JPEG))
    assert "a" not in page.tags and page.handlers == [] and page.tags.count("img") == 1
    assert all(url.startswith("data:image/jpeg;base64,") for url in page.urls), page.urls
    text = "".join(page.text)
    assert f"{HOSTILE}.png" in text and f"{HOSTILE}.txt" in text
