"""Stacks on the command line: `python -m wsi_assets.cli.stack slice <user>/<branch>/<stack> --t 0 --z 5 --c 1 -o slice.png`.

Reads the stack's published OME-Zarr copy under $WSI_USER_FILES (or --root), so process_stack
must have run for it. Errors are one line on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsi_assets.core.keys import InvalidSlideKey, SlideKey
from wsi_assets.core.user_files import default_user_files_root
from wsi_assets.slides.errors import SlideReadError
from wsi_assets.stacks.result_set import require_published
from wsi_assets.stacks.slices import write_slice_png


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wsi_assets.cli.stack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    slice_ = commands.add_parser("slice", help="write one (t, z, c) plane of a processed stack as PNG (16-bit values kept)")
    slice_.add_argument("key", help="<user>/<branch>/<stack>, e.g. alice/main/cells01")
    slice_.add_argument("--t", type=int, default=0)
    slice_.add_argument("--z", type=int, default=0)
    slice_.add_argument("--c", type=int, default=0)
    slice_.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")
    slice_.add_argument("--root", type=Path, default=None, help="user-files root (default $WSI_USER_FILES or ./user_files)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = (args.root or default_user_files_root()).resolve()
    try:
        key = SlideKey.parse(args.key)
        outputs = require_published(root, key)
        path, plane, how = write_slice_png(outputs.zarr, args.t, args.z, args.c, args.output)
    except (SlideReadError, InvalidSlideKey, PermissionError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{path}: t={args.t} z={args.z} c={args.c}, {plane.shape[1]}x{plane.shape[0]} {plane.dtype} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
