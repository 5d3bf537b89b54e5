"""Where the lab's shared reference data lives (real slides, labelled nuclei), outside the package."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "WSI_SHARED_DATA"


def shared_data_dir() -> Path:
    """$WSI_SHARED_DATA, else ../shared/data seen from the current folder (a checkout's neighbour).

    Read at call time, never from the package's own location, so an installed wheel finds the
    data wherever the lab keeps it.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    return Path(configured).expanduser().resolve() if configured else (Path.cwd().parent / "shared" / "data").resolve()
