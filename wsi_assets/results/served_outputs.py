"""Result files served over HTTP, so a report link in the Dagster UI opens with one click.

Browsers refuse file:// links from the UI's http:// page. `scripts/run.sh` therefore serves each
user's `outputs/` read-only (`python -m wsi_assets.cli.outputs_server`) and sets
`WSI_OUTPUTS_URL`; the assets then link there. Only regular files whose real location lies under
`<root>/<user>/outputs/` are served: not inputs, not another user's folder through a link, no
folder listings.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

from wsi_assets.core.keys import name_problem

OUTPUTS_URL_ENV = "WSI_OUTPUTS_URL"


def output_link(root: Path, path: Path) -> str:
    """An http URL of `path` when outputs are served ($WSI_OUTPUTS_URL), else its file:// URI."""
    base = os.environ.get(OUTPUTS_URL_ENV, "").rstrip("/")
    path = Path(path).absolute()
    if base:
        relative = path.relative_to(Path(root).absolute()).as_posix()
        return f"{base}/{quote(relative)}"
    return path.as_uri()


def served_file(root: Path, url_path: str) -> tuple[Path | None, str | None]:
    """(the file a GET of `url_path` serves, None), or (None, the user it asked for) when nothing may be served."""
    parts = [part for part in unquote(url_path.split("?", 1)[0]).split("/") if part]
    if len(parts) < 3 or parts[1] != "outputs" or name_problem(parts[0], "user") or any(part in (".", "..") for part in parts):
        return None, None
    user = parts[0]
    home = (Path(root) / user / "outputs").resolve()
    candidate = Path(root, *parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a dangling link, a link loop
        return None, user
    if home not in real.parents or not real.is_file():
        return None, user
    return real, user
