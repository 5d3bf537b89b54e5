"""Random upload trees (files, folders, links incl. loops and links to other users or outside, odd names,
future times): a scan never raises and never requests a file whose real path leaves its key's user folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wsi_assets.slides.synthetic  # noqa: F401 - imported before the env guard's baseline (cv2 sets LD_LIBRARY_PATH)
from wsi_assets.uploads.scan import ScanCursor, scan_uploads

USERS = ["alice", "bob", ".hidden", "bad user", "-dash"]
NAMES = ["s1.svs", "s2.tif", "my slide.svs", "résumé.svs", ".part.svs", "-x.svs", "n" * 110 + ".svs", "notes.txt", "s1.tiff"]
BRANCHES = ["", "main", "cohort", ".secret", "a b", "main/sub"]
FUTURE_NS = 4_000_000_000 * 10**9  # year 2096

entry = st.tuples(
    st.sampled_from(USERS),
    st.sampled_from(BRANCHES),
    st.sampled_from(NAMES),
    st.sampled_from(["slide", "junk", "link-other-user", "link-outside", "loop", "dangling", "dir-link", "hard-link"]),
    st.booleans(),  # a future modification time
)


def build(root: Path, outside: Path, slide: Path, spec) -> None:
    user, branch, name, kind, future = spec
    folder = root / user / "inputs" / branch if branch else root / user / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if os.path.lexists(target):
        return
    if kind == "slide":
        shutil.copyfile(slide, target)
    elif kind == "junk":
        target.write_bytes(b"not a slide")
    elif kind == "link-other-user":
        other = root / ("bob" if user != "bob" else "alice") / "inputs" / "main" / "victim.svs"
        other.parent.mkdir(parents=True, exist_ok=True)
        if not other.exists():
            shutil.copyfile(slide, other)
        target.symlink_to(other)
    elif kind == "link-outside":
        target.symlink_to(outside)
    elif kind == "loop":
        target.symlink_to(target)
    elif kind == "dangling":
        target.symlink_to(folder / "never-there.svs")
    elif kind == "dir-link":
        target.symlink_to(root / "bob" if user != "bob" else root / "alice")
    elif kind == "hard-link":
        os.link(outside, target)
    if future and os.path.lexists(target) and not target.is_symlink():
        os.utime(target, ns=(FUTURE_NS, FUTURE_NS))


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(entry, min_size=1, max_size=12), user_links=st.booleans())
def test_scan_never_raises_and_never_leaves_the_user_folder(small_slide, specs, user_links):
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "root", Path(tmp) / "outside.svs"
        root.mkdir()
        shutil.copyfile(small_slide, outside)
        for spec in specs:
            build(root, outside, small_slide, spec)
        if user_links:
            (root / "mallory").symlink_to(root / "alice")
            (root / "loopy").symlink_to(root / "loopy")
        cursor, now = ScanCursor(), time.time_ns()
        for tick in range(3):
            result = scan_uploads(root, cursor, max_files_per_tick=7, now_ns=now + tick)
            assert result.cursor.hwm <= now + tick
            for request in result.requests:
                home = (root / request.key.user).resolve()
                real = request.path.resolve()
                assert home in real.parents and real.is_file(), (request, real)
                assert request.path.stat().st_nlink == 1
            for relpath, why in result.skipped + result.waiting:
                assert why and "\n" not in why, (relpath, why)
            cursor = result.cursor
        assert len(cursor.serialize()) < 4000
