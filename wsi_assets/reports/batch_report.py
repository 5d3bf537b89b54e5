"""A batch's report.html: its thumbnail grid, totals, per-image counts and rejected files, from its summary.json."""

from __future__ import annotations

from wsi_assets.reports.report_html import data_uri, page, text


def render_batch_report_html(title: str, summary: dict, grid_jpeg: bytes | None) -> str:
    """The page for a batch whose summary.json holds `summary` (batches.exports.summary)."""
    classes = list(summary.get("class_counts", {}))
    totals = "".join(
        f"<tr><th>{text(label)}</th><td>{text(value)}</td></tr>"
        for label, value in (
            ("Images", f"{summary.get('images', 0):,}"),
            ("Nuclei", f"{summary.get('cells', 0):,}"),
            *((f"{name}", f"{count:,}") for name, count in summary.get("class_counts", {}).items()),
            ("Rejected files", f"{len(summary.get('rejected', [])):,}"),
        )
    )
    grid = (
        f'<h2>First images with their nuclei</h2><div class="images"><figure><img src="{data_uri(grid_jpeg, "image/jpeg")}" '
        f'alt="thumbnail grid"><figcaption>first images of the batch, nuclei outlined</figcaption></figure></div>'
        if grid_jpeg
        else ""
    )
    header = "".join(
        f"<th>{text(name)}</th>" for name in ("image", "size (px)", "µm/px (source)", "modality", "nuclei", "per mm²", *classes)
    )
    rows = "".join(
        "<tr>"
        f'<td>{text(row["image"])}</td><td class="nowrap">{row["width"]} × {row["height"]}</td>'
        f"<td>{row['mpp']:.4f} ({text(row['mpp_source'])}{', inferred' if row.get('mpp_inferred') else ''})</td>"
        f"<td>{text(row.get('modality', ''))}</td>"
        f'<td class="number">{row["cells"]:,}</td><td class="number">{row["cells_per_mm2"]:,.1f}</td>'
        + "".join(f'<td class="number">{int(row.get(f"{name}_count", 0)):,}</td>' for name in classes)
        + "</tr>"
        for row in summary.get("per_image", [])
    )
    rejected = "".join(
        f"<tr><td>{text(item['file'])}</td><td>{text(item['why'])}</td></tr>" for item in summary.get("rejected", [])
    )
    rejected_section = f"<h2>Rejected files</h2><table><tr><th>file</th><th>why</th></tr>{rejected}</table>" if rejected else ""
    return page(
        f"{title}: batch report",
        f"<h1>{text(title)}</h1><h2>Totals</h2><table>{totals}</table>{grid}"
        f"<h2>Images</h2><table><tr>{header}</tr>{rows}</table>{rejected_section}",
    )
