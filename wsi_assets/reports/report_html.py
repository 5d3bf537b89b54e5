"""A slide report as one self-contained HTML page (report.html in the result set).

Images are embedded as data: URIs, so the page opens from disk, from a copy, or as a mail
attachment, and loads nothing from anywhere. Every piece of text goes through `text`: file,
branch and class names are the user's, and none of it may become markup.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.slide_outputs import REPORT_FILE, SlideOutputs
from wsi_assets.reports.slide_report import SlideReport

__all__ = ["REPORT_FILE", "data_uri", "page", "render_report_html", "text", "write_report_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 1.4em; word-break: break-all; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } .nowrap { white-space: nowrap; }
.images { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; } figure img { max-width: 512px; max-height: 512px; border: 1px solid #ccc; display: block; }
figcaption { font-size: 0.9em; color: #555; margin-top: 4px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; border: 1px solid #555; }
.passed { color: #1b7a2e; font-weight: 600; } .failed { color: #b3261e; font-weight: 600; } .warning { color: #9a6700; font-weight: 600; }
.note { background: #fff4ce; padding: 8px 12px; border-left: 4px solid #9a6700; }
"""


def text(value: object) -> str:
    """`value` as HTML text: shown as typed, never markup."""
    return html.escape(str(value), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render_report_html(report: SlideReport) -> str:
    """The page, as a string."""
    figures = "".join(f"<tr><th>{text(label)}</th><td>{text(value)}</td></tr>" for label, value in report.figures)
    images = "".join(
        f'<figure><img src="{data_uri(image.data, image.mime)}" alt="{text(image.caption)}">'
        f"<figcaption>{text(image.caption)}</figcaption></figure>"
        for image in report.images
    )
    classes = "".join(
        f'<tr><td><span class="swatch" style="background: rgb{text(row.colour)}"></span>{text(row.name)}</td>'
        f'<td class="number">{row.count:,}</td><td class="number">{row.fraction:.1%}</td><td class="number">{row.per_mm2:,.1f}</td></tr>'
        for row in report.classes
    )
    checks = "".join(
        f'<tr><td>{text(check.name)}</td><td class="{text(check.verdict)}">{text(check.verdict)}</td><td>{text(check.description)}</td></tr>'
        for check in report.checks
    )
    notes = "".join(f'<p class="note">{text(note)}</p>' for note in report.notes)
    class_section = (
        f"<h2>Class mix</h2><table><tr><th>class</th><th>nuclei</th><th>fraction</th><th>per mm² of tissue</th></tr>{classes}</table>"
        if report.classes
        else ""
    )
    return page(
        f"{report.title}: slide report",
        f"<h1>{text(report.title)}</h1>{notes}"
        f"<h2>Key figures</h2><table>{figures}</table>"
        f'<h2>Images</h2><div class="images">{images}</div>'
        f"{class_section}"
        f"<h2>Quality checks</h2><table><tr><th>check</th><th>verdict</th><th>result</th></tr>{checks}</table>",
    )


def page(title: str, body: str) -> str:
    """A whole page around `body` (already HTML); `title` is text."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # Nothing but the embedded images may load: a report read from disk reaches no server.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{text(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_report_html(outputs: SlideOutputs, report: SlideReport) -> Path:
    """report.html written into the set (atomically: a reader never sees half a page)."""
    path = outputs.report_html
    write_text_atomic(path, render_report_html(report))
    return path
