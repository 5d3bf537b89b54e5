"""Put demo slides in the upload folder so a fresh start has something to process.

python -m wsi_assets.cli.demo [--user-files DIR]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from wsi_assets.core.shared_data import shared_data_dir
from wsi_assets.core.user_files import default_user_files_root
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide

DEMO_USER = "demo"
DEMO_SPEC = SyntheticSlideSpec(width=12_000, height=9_000, mpp=0.25, seed=7)
REAL_SLIDE_NAME = "CMU-1-Small-Region.svs"


def install_demo_slides(root: Path) -> list[Path]:
    """A synthetic slide (always) and the real CMU-1 region (when the shared data folder holds it)."""
    branch = Path(root) / DEMO_USER / "inputs" / "main"
    branch.mkdir(parents=True, exist_ok=True)
    written = []
    synthetic = branch / "synthetic_demo.svs"
    if not synthetic.exists():
        write_synthetic_slide(synthetic, DEMO_SPEC)
        written.append(synthetic)
    real = branch / REAL_SLIDE_NAME
    shared = shared_data_dir() / "slides" / REAL_SLIDE_NAME
    if shared.exists() and not real.exists():
        temporary = branch / f".{real.name}.part"
        shutil.copyfile(shared, temporary)
        temporary.rename(real)
        written.append(real)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--user-files", type=Path, default=None, help="user-files root (default: $WSI_USER_FILES or ./user_files)"
    )
    args = parser.parse_args()
    root = args.user_files or default_user_files_root()
    for path in install_demo_slides(root):
        print(f"demo slide ready: {path}")


if __name__ == "__main__":
    main()
