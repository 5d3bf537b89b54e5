"""Nothing a user writes is rendered as markup in the Dagster UI.

File names, slides.csv comments and codes, batch image names, channel names reach asset metadata.
A name like HOSTILE_NAME below, rendered as markdown, is a live link and a remote image that loads
for whoever opens the asset. Such text goes into table metadata (plain text cells) or, inside
markdown, through escape_markdown. The last test renders the asset pages in headless Chromium.
"""

from __future__ import annotations

import ast
import csv
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from wsi_assets.core.markdown import escape_markdown
from wsi_assets.reviews.branch_labels import slide_table
from wsi_assets.reviews.slide_labels import parse_slide_labels

PACKAGE = Path(__file__).resolve().parents[1] / "wsi_assets"
HOSTILE_NAME = "[x](http://evil.example/phish)![i](http://evil.example/a.png).svs"
# A file name cannot hold '/': "https:host" is still a link to https://host/ for a page served over http.
HOSTILE_FILE_NAME = "[x](https:evil.example)![i](https:evil.example%2Fa.png).svs"
HOSTILE_TEXTS = [
    HOSTILE_NAME,
    "see <img src=http://evil.example/h.png> and <a href='http://evil.example/r'>here</a>",
    "**loud** _quiet_ `code` ~~gone~~ &lt; # heading",
    "auto links: http://evil.example/auto www.evil.example mail@evil.example",
    "a | cell\nsplit | over\r\nlines",
    "[ref]: http://evil.example/ref\n[ref]",
]


def _markdown():
    markdown_it = pytest.importorskip("markdown_it")  # CommonMark, as the UI renders it (rich brings it with dagster)
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r\n", "\n").split("\n"))


def _as_html_text(text: str) -> str:
    """`text` as a renderer writes characters: &, <, > and " escaped."""
    return _one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# --------------------------------------------------------------- the escaping helper


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_escaped_text_renders_as_the_characters_typed(text):
    rendered = _markdown().render(escape_markdown(text)).strip()
    assert rendered == f"<p>{_as_html_text(text)}</p>"


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_escaped_text_stays_in_its_table_cell(text):
    row = "| file | why |\n| --- | --- |\n| a.svs | " + escape_markdown(text) + " |"
    rendered = _markdown().render(row)
    assert rendered.count("<td>") == 2 and "<a" not in rendered and "<img" not in rendered
    assert f"<td>{_as_html_text(text)}</td>" in rendered


def test_unescaped_text_would_be_a_link_and_an_image():
    # The check above can fail: the same renderer makes markup of the raw text.
    rendered = _markdown().render(HOSTILE_NAME)
    assert '<a href="http://evil.example/phish">' in rendered and '<img src="http://evil.example/a.png"' in rendered


def test_image_alt_text_cannot_close_the_image():
    from wsi_assets.core.images import markdown_image

    rendered = _markdown().render(markdown_image(b"\xff\xd8\xff", "x](http://evil.example/b.png) ![y"))
    assert rendered.count("<img") == 1 and "evil.example/b.png" not in rendered.split('alt="')[0]
    assert 'src="data:image/jpeg;base64,' in rendered and "<a" not in rendered


def test_markdown_metadata_holds_only_images():
    """Any other MetadataValue.md would be a place for user text to become markup: tables are MetadataValue.table."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "md":
                argument = node.args[0] if node.args else None
                is_image = isinstance(argument, ast.Call) and getattr(argument.func, "id", "") == "markdown_image"
                if not is_image:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


# --------------------------------------------------------------- upload_status


def _no_markdown_anywhere(metadata: dict) -> None:
    from dagster import MarkdownMetadataValue

    assert not [k for k, v in metadata.items() if isinstance(v, MarkdownMetadataValue)]


def test_upload_status_shows_file_names_and_reasons_as_plain_cells():
    from dagster import TableMetadataValue

    from wsi_assets.defs.upload_status import MAX_SHOWN_FILES, status_materialization
    from wsi_assets.uploads.status import FileStatus

    hostile = f"mallory/inputs/main/{HOSTILE_NAME}"
    why = f"slide name '{HOSTILE_NAME[:-4]}' may only use letters, digits, '.', '_' and '-'"
    statuses = [
        FileStatus("mallory/inputs/main/ok.svs", "processed", "run requested", 10, 1),
        FileStatus(hostile, "skipped", why, 10, 1),
    ]
    metadata = status_materialization("mallory", statuses, None).metadata
    _no_markdown_anywhere(metadata)
    table = metadata["files_table"]
    assert isinstance(table, TableMetadataValue)
    assert [r.data for r in table.records] == [  # problems first
        {"file": hostile, "state": "skipped", "why": why},
        {"file": "mallory/inputs/main/ok.svs", "state": "processed", "why": "run requested"},
    ]
    many = [
        FileStatus(f"mallory/inputs/main/s{i:04d}.svs", "processed", "run requested", 1, 1) for i in range(MAX_SHOWN_FILES + 5)
    ]
    capped = status_materialization("mallory", many, None).metadata
    assert len(capped["files_table"].records) == MAX_SHOWN_FILES
    assert capped["files_not_shown"].value == "5 more files: see mallory/outputs/upload_status.json"


# --------------------------------------------------------------- slides.csv


def _slides_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["slide", "annotator", "adequacy", "diagnosis_codes", "comment"])
    writer.writerows(rows)
    return text.getvalue().encode()


HOSTILE_REVIEW = [
    [
        "s1",
        "ann",
        "adequate",
        "C50.9;[c](http://evil.example/code)",
        "[click](http://evil.example/c) ![p](http://evil.example/p.png)",
    ],
    ["s1", "bob", "limited", "C50.9", "ann: is wrong | see <img src=http://evil.example/h.png>"],
    ["s2", "ann", "adequate", "", ""],
]


def test_two_annotators_of_a_slide_are_two_rows_each_with_its_own_comment():
    rows = slide_table(parse_slide_labels(_slides_csv(HOSTILE_REVIEW)))
    assert [(r["slide"], r["annotator"], r["adequacy"], r["diagnosis_codes"], r["comment"]) for r in rows] == [
        ("s1", "ann", "adequate", "C50.9;[c](http://evil.example/code)", HOSTILE_REVIEW[0][4]),
        ("s1", "bob", "limited", "C50.9", HOSTILE_REVIEW[1][4]),
        ("s2", "ann", "adequate", "", ""),
    ]
    s1 = [r for r in rows if r["slide"] == "s1"]
    assert {(r["annotators"], r["adequacy_majority"], r["diagnosis_agreed"]) for r in s1} == {(2, "tie", False)}
    assert rows[2]["annotators"] == 1 and rows[2]["diagnosis_agreed"] is None


def test_slide_reviews_preview_is_a_table_of_those_rows(user_files_root, dagster_instance):
    from dagster import AssetKey, TableMetadataValue

    from wsi_assets.definitions import defs

    folder = user_files_root / "mk-reviews" / "reviews" / "main"
    folder.mkdir(parents=True)
    (folder / "slides.csv").write_bytes(_slides_csv(HOSTILE_REVIEW))
    dagster_instance.add_dynamic_partitions("branches", ["mk-reviews/main"])
    result = defs.resolve_job_def("review_branch").execute_in_process(instance=dagster_instance, partition_key="mk-reviews/main")
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("slide_reviews")]
    metadata = event.materialization.metadata
    _no_markdown_anywhere(metadata)
    preview = metadata["preview"]
    assert isinstance(preview, TableMetadataValue)
    assert [(r.data["slide"], r.data["annotator"], r.data["comment"]) for r in preview.records] == [
        (s, a, c) for s, a, _, _, c in HOSTILE_REVIEW
    ]
    assert metadata["slides"].value == 2 and metadata["labels"].value == 3
    with open(user_files_root / "mk-reviews" / "outputs" / "main" / "slide_reviews.csv", newline="") as table:
        written = list(csv.DictReader(table))
    assert [(r["slide"], r["annotator"], r["comment"]) for r in written] == [(s, a, c) for s, a, _, _, c in HOSTILE_REVIEW]


def test_channel_names_are_plain_cells():
    from wsi_assets.stacks.stats import shown_rows

    stats = {
        "percentiles": [50.0],
        "rows": [{"channel": HOSTILE_NAME, "c": 0, "t": "all", "mean": 1.23456, "std": 0.5, "min": 0, "max": 3, "p50": 1.0}],
    }
    columns, rows = shown_rows(stats)
    assert columns == ["channel", "t", "mean", "std", "min", "max", "p50"]
    assert rows == [{"channel": HOSTILE_NAME, "t": "all", "mean": 1.235, "std": 0.5, "min": 0, "max": 3, "p50": 1.0}]


# --------------------------------------------------------------- in a real browser


class _Links(HTMLParser):
    """Every URL an element of the page would follow or load, and the page's visible text."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [
            value or "" for name, value in attrs if name in ("href", "src", "srcset", "action", "formaction", "poster", "data")
        ]

    def handle_data(self, data):
        self.text.append(data)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("Chromium is not installed (CI installs Debian's chromium: .ci/install_chromium.sh)")
    return found


def _render(chromium: str, url: str, profile: Path) -> subprocess.Popen:
    """Headless Chromium loading `url`, running its scripts, and printing the DOM it ends with."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # Virtual time runs ahead while the page is idle: the UI's GraphQL answers come in, then the DOM is dumped.
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


@pytest.mark.slow
def test_asset_pages_in_a_real_browser_show_user_text_and_link_nothing(tmp_path, monkeypatch):
    from dagster import AddDynamicPartitionsRequest, DagsterInstance, build_sensor_context

    from wsi_assets.definitions import defs
    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor
    from wsi_assets.testing.dagster_services import free_port, running, service_env, wait_for_http, webserver_command

    chromium = _chromium()
    home, root = tmp_path / "dagster_home", tmp_path / "user_files"
    home.mkdir()
    (root / "mallory" / "inputs" / "main").mkdir(parents=True)
    (root / "mallory" / "inputs" / "main" / HOSTILE_FILE_NAME).write_bytes(b"II*\x00" + b"\x00" * 64)
    (root / "mallory" / "reviews" / "main").mkdir(parents=True)
    (root / "mallory" / "reviews" / "main" / "slides.csv").write_bytes(_slides_csv(HOSTILE_REVIEW))
    monkeypatch.setenv("WSI_USER_FILES", str(root))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The webserver starts (tens of seconds: it loads the definitions) while the assets are materialised.
    with running(webserver_command(port), service_env(home, root), tmp_path / "webserver.log"):
        # What the daemon does: the upload sensor's ticks, then a review_branch run, on the instance the webserver reads.
        with DagsterInstance.from_config(str(home)) as instance:
            resources = {"user_files": UserFilesResource(root=str(root))}
            for _ in range(2):  # a file is judged on its second look
                tick = upload_sensor(build_sensor_context(instance=instance, resources=resources))
                for request in tick.dynamic_partitions_requests:
                    if isinstance(request, AddDynamicPartitionsRequest):
                        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                for event in tick.asset_events:
                    instance.report_runless_asset_event(event)
            instance.add_dynamic_partitions("branches", ["mallory/main"])
            assert (
                defs.resolve_job_def("review_branch").execute_in_process(instance=instance, partition_key="mallory/main").success
            )
        wait_for_http(f"{base}/server_info", timeout=120)
        pages = {
            "upload_status": f"{base}/assets/upload_status?view=partitions&partition=mallory",
            "slide_reviews": f"{base}/assets/slide_reviews?view=partitions&partition={quote('mallory/main', safe='')}",
        }
        browsers = {name: _render(chromium, url, tmp_path / f"profile-{name}") for name, url in pages.items()}
        doms = {name: browser.communicate(timeout=120)[0] for name, browser in browsers.items()}

    expected_text = {
        "upload_status": [HOSTILE_FILE_NAME],
        "slide_reviews": [HOSTILE_REVIEW[0][3], HOSTILE_REVIEW[0][4], HOSTILE_REVIEW[1][4]],
    }
    problems = []
    for name, dom in doms.items():
        page = _Links()
        page.feed(dom)
        text = "".join(page.text)
        problems += [
            f"{name} does not show {shown!r}: did the metadata render?" for shown in expected_text[name] if shown not in text
        ]
        problems += [f"{name} links or loads {url!r} from user text" for url in page.urls if "evil.example" in url]
    assert problems == []
