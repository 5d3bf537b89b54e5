"""Hostile uploads and faults: each bad entry is skipped with a one-line reason, and nobody else is held up.

Every case builds a real upload tree: alice plants one bad entry, bob has one good slide. Each case
checks the reason alice sees (in the scan, the sensor and her lasting upload status), that no
input changed, that it is reported once, and that bob's slide is still requested in the same tick.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wsi_assets.slides.synthetic  # noqa: F401 - imported before the env guard's baseline (cv2 sets LD_LIBRARY_PATH)
from wsi_assets.core.confinement import HardLinkedUpload, PathOutsideUserFolder
from wsi_assets.core.keys import SlideKey
from wsi_assets.core.user_files import find_slide_file
from wsi_assets.uploads import listing, status
from wsi_assets.uploads.listing import UploadRootUnavailable
from wsi_assets.uploads.scan import ScanCursor, scan_uploads

IS_ROOT = os.geteuid() == 0
BOB_SLIDE = "bob/inputs/main/good.svs"


@pytest.fixture(scope="module")
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def tree(tmp_path, small_slide):
    root = tmp_path / "user_files"
    (root / "alice/inputs/main").mkdir(parents=True)
    (root / "bob/inputs/main").mkdir(parents=True)
    shutil.copyfile(small_slide, root / BOB_SLIDE)
    shutil.copyfile(small_slide, root / "alice/inputs/main/mine.svs")
    return root


def file_hashes(*folders: Path) -> dict[str, str]:
    """Every regular file's content hash, links not followed: proves nothing was modified, moved or deleted."""
    hashes = {}
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def outside(tmp_path: Path, small_slide: Path) -> Path:
    target = tmp_path / "elsewhere" / "secret.svs"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(small_slide, target)
    return target


# Each case plants one bad entry and returns (its relpath as reported, a phrase of the reason).
def symlink_to_other_user(root, tmp_path, slide):
    (root / "alice/inputs/main/stolen.svs").symlink_to(root / BOB_SLIDE)
    return "alice/inputs/main/stolen.svs", "leads outside alice/"


def symlink_outside_root(root, tmp_path, slide):
    (root / "alice/inputs/main/outside.svs").symlink_to(outside(tmp_path, slide))
    return "alice/inputs/main/outside.svs", "leads outside alice/"


def symlinked_user_folder(root, tmp_path, slide):
    (root / "mallory").symlink_to(root / "bob")
    return "mallory/", "is a link: a user folder must be a real folder"


def symlinked_branch_to_other_user(root, tmp_path, slide):
    (root / "alice/inputs/cohort").symlink_to(root / "bob/inputs/main")
    return "alice/inputs/cohort", "leads outside alice/"


def hard_link(root, tmp_path, slide):
    os.link(outside(tmp_path, slide), root / "alice/inputs/main/linked.svs")
    return "alice/inputs/main/linked.svs", "hard-linked (2 names for one file)"


def file_symlink_loop(root, tmp_path, slide):
    (root / "alice/inputs/main/loop.svs").symlink_to(root / "alice/inputs/main/loop.svs")
    return "alice/inputs/main/loop.svs", "loop of symbolic links"


def branch_symlink_loop(root, tmp_path, slide):
    (root / "alice/inputs/ring").symlink_to(root / "alice/inputs/ring2")
    (root / "alice/inputs/ring2").symlink_to(root / "alice/inputs/ring")
    return "alice/inputs/ring", "loop of symbolic links"


def user_symlink_loop(root, tmp_path, slide):
    (root / "looper").symlink_to(root / "looper")
    return "looper/", "loop of symbolic links"


def dangling_symlink(root, tmp_path, slide):
    (root / "alice/inputs/main/gone.svs").symlink_to(root / "alice/inputs/main/never-there.svs")
    return "alice/inputs/main/gone.svs", "link to nothing"


def fifo(root, tmp_path, slide):
    os.mkfifo(root / "alice/inputs/main/pipe.svs")
    return "alice/inputs/main/pipe.svs", "FIFO (named pipe)"


def unix_socket(root, tmp_path, slide):
    path = root / "alice/inputs/main/sock.svs"
    if len(str(path)) > 100:
        pytest.skip("socket path too long for AF_UNIX in this temporary folder")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
    return "alice/inputs/main/sock.svs", "is a socket"


def unreadable_folder(root, tmp_path, slide):
    if IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root reading; the FIFO, socket and dangling cases stand in")
    folder = root / "alice/inputs/secret"
    folder.mkdir()
    shutil.copyfile(slide, folder / "hidden.svs")
    folder.chmod(0)
    return "alice/inputs/secret/", "folder cannot be read"


def name_with_spaces(root, tmp_path, slide):
    shutil.copyfile(slide, root / "alice/inputs/main/my slide.svs")
    return "alice/inputs/main/my slide.svs", "slide name 'my slide' may only use"


def unicode_name(root, tmp_path, slide):
    shutil.copyfile(slide, root / "alice/inputs/main/résumé.svs")
    return "alice/inputs/main/résumé.svs", "slide name 'résumé' may only use"


def leading_dash(root, tmp_path, slide):
    shutil.copyfile(slide, root / "alice/inputs/main/-rf.svs")
    return "alice/inputs/main/-rf.svs", "must not start with '.' or '-'"


def too_long_name(root, tmp_path, slide):
    name = "s" * 120
    shutil.copyfile(slide, root / f"alice/inputs/main/{name}.svs")
    return f"alice/inputs/main/{name}.svs", "is longer than 100 characters"


def newline_in_name(root, tmp_path, slide):
    shutil.copyfile(slide, root / "alice/inputs/main/two\nlines.svs")
    return "alice/inputs/main/two\\nlines.svs", "slide name 'two\\nlines' may only use"


def undecodable_name(root, tmp_path, slide):
    shutil.copyfile(slide, os.path.join(os.fsencode(root / "alice/inputs/main"), b"bad\xff.svs"))
    return "alice/inputs/main/bad\ufffd.svs", "name is not valid UTF-8 text"


def hidden_user_folder(root, tmp_path, slide):
    (root / ".eve/inputs/main").mkdir(parents=True)
    shutil.copyfile(slide, root / ".eve/inputs/main/x.svs")
    return ".eve/", "hidden folder is not read as a user"


def hidden_branch(root, tmp_path, slide):
    (root / "alice/inputs/.cohort").mkdir()
    shutil.copyfile(slide, root / "alice/inputs/.cohort/x.svs")
    return "alice/inputs/.cohort/", "hidden folder is not read as a branch"


def nested_folder(root, tmp_path, slide):
    # A folder inside a branch is a batch of small images, not a place for slides.
    (root / "alice/inputs/main/sub").mkdir()
    shutil.copyfile(slide, root / "alice/inputs/main/sub/x.svs")
    return "alice/inputs/main/sub/", ""


def badly_named_batch_folder(root, tmp_path, slide):
    # A folder inside a branch is a batch (the batch sensor's); one whose name cannot be a key is reported here.
    (root / "alice/inputs/main/sub folder").mkdir()
    shutil.copyfile(slide, root / "alice/inputs/main/sub folder/x.svs")
    return "alice/inputs/main/sub folder/", "batch name 'sub folder' may only use letters, digits"


CASES = [
    symlink_to_other_user,
    symlink_outside_root,
    symlinked_user_folder,
    symlinked_branch_to_other_user,
    hard_link,
    file_symlink_loop,
    branch_symlink_loop,
    user_symlink_loop,
    dangling_symlink,
    fifo,
    unix_socket,
    unreadable_folder,
    name_with_spaces,
    unicode_name,
    leading_dash,
    too_long_name,
    newline_in_name,
    undecodable_name,
    hidden_user_folder,
    hidden_branch,
    badly_named_batch_folder,
]


def sensor_tick(instance, root: Path, cursor: str | None = None):
    from dagster import build_sensor_context

    from wsi_assets.defs.resources import UserFilesResource
    from wsi_assets.defs.sensors import upload_sensor

    context = build_sensor_context(instance=instance, resources={"user_files": UserFilesResource(root=str(root))}, cursor=cursor)
    return upload_sensor(context)


def status_rows(result, user: str) -> list[dict]:
    """The user's upload-status table as the UI shows it: one {file, state, why} per row."""
    for event in result.asset_events:
        if event.partition == user:
            return [record.data for record in event.metadata["files_table"].records]
    return []


@pytest.mark.parametrize("plant", CASES, ids=[c.__name__ for c in CASES])
def test_bad_entry_is_skipped_with_its_reason_and_others_go_on(plant, tree, tmp_path, small_slide, instance):
    relpath, reason = plant(tree, tmp_path, small_slide)
    before = file_hashes(tree, tmp_path / "elsewhere")
    try:
        first = scan_uploads(tree, ScanCursor())
        second = scan_uploads(tree, first.cursor)
        skipped = dict(first.skipped + second.skipped)
        assert relpath in skipped, skipped
        assert reason in skipped[relpath] and "\n" not in skipped[relpath], skipped[relpath]
        requested = sorted(r.key.partition_key for r in second.requests)
        assert requested == ["alice/main/mine", "bob/main/good"]
        assert scan_uploads(tree, second.cursor).skipped == [], "a bad entry is reported once"

        # The sensor, on a real instance: same reason in alice's lasting status, bob requested in the same tick.
        tick1 = sensor_tick(instance, tree)
        tick2 = sensor_tick(instance, tree, tick1.cursor)
        assert "bob/main/good" in [r.partition_key for r in tick2.run_requests]
        owner = relpath.split("/")[0]
        if owner == "alice":
            rows = status_rows(tick1, "alice")
            assert any(r["state"] == "skipped" and reason in r["why"] for r in rows), rows
            assert (tree / "alice/outputs/upload_status.json").is_file()
        assert ("bob/inputs/main/good.svs", "processed") in [(r["file"], r["state"]) for r in status_rows(tick2, "bob")]
        bob_status = (tree / "bob/outputs/upload_status.json").read_text()
        assert relpath not in bob_status and "skipped" not in bob_status.split('"files"')[1]
    finally:
        if (tree / "alice/inputs/secret").exists():
            (tree / "alice/inputs/secret").chmod(0o755)
    after = file_hashes(tree, tmp_path / "elsewhere")
    assert {p: h for p, h in after.items() if "/outputs/" not in p} == before, "an input was modified, moved or deleted"


def test_file_vanishing_between_listing_and_stat_is_skipped(tree):
    target = tree / "alice/inputs/main/flaky.svs"
    target.write_bytes(b"x")
    with os.scandir(target.parent) as it:
        entry = next(e for e in it if e.name == "flaky.svs")
    target.unlink()  # the upload tool removes it after the folder was listed
    walk = listing._Walk(tree)
    walk.slide_entry(entry, "alice", "main")
    assert [(e.relpath, e.problem) for e in walk.entries] == [
        ("alice/inputs/main/flaky.svs", "disappeared while the folder was being listed; it is looked at again if it comes back")
    ]
    result = scan_uploads(tree, ScanCursor())
    assert "alice/inputs/main/flaky.svs" not in dict(result.skipped)


def test_future_mtime_never_hides_later_uploads(tree, small_slide, instance):
    future = tree / "alice/inputs/main/future.svs"
    shutil.copyfile(small_slide, future)
    ten_years = time.time_ns() + 10 * 365 * 24 * 3600 * 10**9
    os.utime(future, ns=(ten_years, ten_years))
    now = time.time_ns()
    first = scan_uploads(tree, ScanCursor(), now_ns=now)
    second = scan_uploads(tree, first.cursor, now_ns=now + 1)
    assert "alice/main/future" in [r.key.partition_key for r in second.requests], "a future file is still processed"
    assert second.cursor.hwm <= now + 1, "the high-water mark never passes the present"
    third = scan_uploads(tree, second.cursor)
    assert third.requests == [] and third.skipped == [] and third.waiting == []

    # Another user's ordinary upload after it is still requested, and so after the file is gone.
    (tree / "carol/inputs/main").mkdir(parents=True)
    shutil.copyfile(small_slide, tree / "carol/inputs/main/later.svs")
    fourth = scan_uploads(tree, third.cursor)
    fifth = scan_uploads(tree, fourth.cursor)
    assert [r.key.partition_key for r in fifth.requests] == ["carol/main/later"]
    future.unlink()
    shutil.copyfile(small_slide, tree / "bob/inputs/main/after.svs")
    sixth = scan_uploads(tree, fifth.cursor)
    seventh = scan_uploads(tree, sixth.cursor)
    assert [r.key.partition_key for r in seventh.requests] == ["bob/main/after"]
    assert "future" not in seventh.cursor.serialize(), "a gone file leaves the cursor"

    # A cursor written before the rule (its mark ten years ahead) recovers the uploads it hid.
    shutil.copyfile(small_slide, tree / "bob/inputs/main/recover.svs")
    stale = ScanCursor(hwm=ten_years, pending=dict(seventh.cursor.pending))
    recovered = scan_uploads(tree, scan_uploads(tree, stale).cursor)
    assert "bob/main/recover" in [r.key.partition_key for r in recovered.requests]
    assert recovered.cursor.hwm <= time.time_ns()

    # The status says why the date looks wrong.
    os.utime(tree / "bob/inputs/main/recover.svs", ns=(ten_years, ten_years))
    tick = sensor_tick(instance, tree)
    assert any("is in the future; check the uploading machine's clock" in r["why"] for r in status_rows(tick, "bob"))


def test_settings_files_are_listed_as_settings_not_skipped_or_processed(tree):
    (tree / "alice/inputs/main/branch.yaml").write_text("mpp: 0.5\n")
    (tree / "alice/inputs/main/mine.yaml").write_text("mpp: 0.25\n")
    first = scan_uploads(tree, ScanCursor())
    second = scan_uploads(tree, first.cursor)
    requested = sorted(r.relpath for r in first.requests + second.requests)
    assert requested == ["alice/inputs/main/mine.svs", BOB_SLIDE]
    assert not [rel for rel, _ in first.skipped + second.skipped + first.waiting + second.waiting if rel.endswith(".yaml")]
    statuses = {s.path: s for s in status.draft_statuses(second, first.cursor)["alice"]}
    assert statuses["alice/inputs/main/branch.yaml"].state == status.SETTINGS
    assert "every slide of the branch" in statuses["alice/inputs/main/branch.yaml"].why
    assert statuses["alice/inputs/main/mine.yaml"].state == status.SETTINGS
    assert "slide 'mine'" in statuses["alice/inputs/main/mine.yaml"].why
    # Any other file is still reported as not a slide.
    (tree / "alice/inputs/main/notes.txt").write_text("hello")
    third = scan_uploads(tree, second.cursor)
    assert [rel for rel, _ in third.skipped] == ["alice/inputs/main/notes.txt"]


def test_missing_root_fails_the_tick(tmp_path, instance):
    missing = tmp_path / "no-such-root"
    with pytest.raises(UploadRootUnavailable, match="does not exist: create it or point WSI_USER_FILES"):
        scan_uploads(missing, ScanCursor())
    with pytest.raises(Exception, match="does not exist"):
        sensor_tick(instance, missing)


def test_find_slide_file_refuses_links_out_and_hard_links(tree, tmp_path, small_slide):
    symlink_to_other_user(tree, tmp_path, small_slide)
    with pytest.raises(PathOutsideUserFolder, match="leads outside alice/"):
        find_slide_file(tree, SlideKey("alice", "main", "stolen"))
    symlinked_user_folder(tree, tmp_path, small_slide)
    with pytest.raises(PathOutsideUserFolder, match="is a link"):
        find_slide_file(tree, SlideKey("mallory", "main", "good"))
    symlinked_branch_to_other_user(tree, tmp_path, small_slide)
    with pytest.raises(PathOutsideUserFolder):
        find_slide_file(tree, SlideKey("alice", "cohort", "good"))
    hard_link(tree, tmp_path, small_slide)
    with pytest.raises(HardLinkedUpload, match="upload a copy instead"):
        find_slide_file(tree, SlideKey("alice", "main", "linked"))
    assert find_slide_file(tree, SlideKey("bob", "main", "good")) == tree / BOB_SLIDE


@pytest.mark.parametrize(
    "plant, key, reason",
    [
        (symlink_to_other_user, "alice/main/stolen", "leads outside alice/"),
        (hard_link, "alice/main/linked", "hard-linked"),
        (nested_folder, "alice/main/x", "no uploaded slide for alice/main/x"),
    ],
    ids=["link-to-other-user", "hard-link", "slide-in-nested-folder"],
)
def test_submit_refuses_what_the_sensor_skips(plant, key, reason, tree, tmp_path, small_slide):
    plant(tree, tmp_path, small_slide)
    env = {**os.environ, "WSI_USER_FILES": str(tree), "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "wsi_assets.cli.submit", key], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    message = completed.stderr.strip()
    assert message.startswith("error: ") and reason in message and "\n" not in message, completed.stderr
