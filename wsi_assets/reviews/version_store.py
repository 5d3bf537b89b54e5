"""Every imported review file, kept by content hash and never overwritten; the audit log says which version is current.

Layout (inside the user's own folder, checked with core.confinement):

    <user>/outputs/<branch>/.reviews/<sha256>.<ext>   each distinct content once, read-only
    <user>/outputs/.review_audit.jsonl               who imported or restored what, when, and what it changed

A version is a content hash. Importing a file whose content is the current version records
nothing; any other content is stored (if new) and logged as the current version. Restoring logs
an earlier version as current again; the file the user uploaded is never touched.
"""

from __future__ import annotations

import hashlib
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.atomic import atomic_output
from wsi_assets.core.confinement import confined, confined_upload, shown_under_root
from wsi_assets.core.quoting import short_repr
from wsi_assets.core.user_files import outputs_dir
from wsi_assets.reviews.audit_log import append_entry, read_log

VERSIONS_FOLDER = ".reviews"  # slide names never start with '.', so no slide's outputs can collide
AUDIT_LOG_NAME = ".review_audit.jsonl"


class UnknownReviewVersion(LookupError):
    """A restore names a version that was never imported."""


@dataclass(frozen=True)
class ReviewVersion:
    branch: str
    file: str  # the uploaded file's name in reviews/<branch>/
    sha256: str
    path: Path  # the stored copy
    entry: dict  # the audit entry that made it current

    @property
    def short(self) -> str:
        return self.sha256[:12]


def audit_log_path(root: Path, user: str) -> Path:
    log = outputs_dir(root, user) / AUDIT_LOG_NAME
    confined(log.parent, root, user)
    return log


def versions_dir(root: Path, user: str, branch: str) -> Path:
    folder = outputs_dir(root, user) / branch / VERSIONS_FOLDER
    confined(folder, root, user)
    return folder


def _owner(path: Path) -> str:
    uid = os.stat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _store_blob(folder: Path, data: bytes, suffix: str, root: Path, user: str) -> tuple[str, Path]:
    sha = hashlib.sha256(data).hexdigest()
    blob = folder / f"{sha}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    confined(folder, root, user)
    if blob.exists():
        if hashlib.sha256(blob.read_bytes()).hexdigest() != sha:
            raise RuntimeError(
                f"{shown_under_root(blob, root)} no longer holds the content its name records: the version store was changed"
            )
        return sha, blob
    with atomic_output(blob) as temporary:
        temporary.write_bytes(data)
        os.chmod(temporary, 0o444)
    return sha, blob


def history(root: Path, user: str, branch: str | None = None, file: str | None = None) -> list[dict]:
    """The verified audit entries of the user, optionally of one branch and file, oldest first."""
    entries = read_log(audit_log_path(root, user))
    return [e for e in entries if (branch is None or e.get("branch") == branch) and (file is None or e.get("file") == file)]


def current_version(root: Path, user: str, branch: str, file: str) -> ReviewVersion | None:
    entries = [e for e in history(root, user, branch, file) if e.get("action") in ("import", "restore")]
    if not entries:
        return None
    entry = entries[-1]
    path = versions_dir(root, user, branch) / f"{entry['sha256']}{Path(file).suffix}"
    return ReviewVersion(branch, file, entry["sha256"], path, entry)


def import_review(root: Path, user: str, branch: str, upload: Path, changes_from) -> tuple[ReviewVersion, bool]:
    """Store the upload's content as the current version of its file (True) unless it already is (False).

    `changes_from(previous_bytes or None, new_bytes)` describes what the version changed, for the log;
    it also parses the file, so a file it refuses is neither stored nor logged.
    """
    real = confined_upload(upload, root, user)
    data = real.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    current = current_version(root, user, branch, upload.name)
    if current is not None and current.sha256 == sha:
        return current, False
    changes = changes_from(current.path.read_bytes() if current is not None else None, data)
    sha, blob = _store_blob(versions_dir(root, user, branch), data, upload.suffix, root, user)
    entry = append_entry(
        audit_log_path(root, user),
        {
            "action": "import",
            "user": user,
            "branch": branch,
            "file": upload.name,
            "sha256": sha,
            "bytes": len(data),
            "annotator": _owner(real),
            "upload_mtime_ns": os.stat(real).st_mtime_ns,
            "previous": current.sha256 if current is not None else None,
            "changes": changes,
        },
    )
    return ReviewVersion(branch, upload.name, sha, blob, entry), True


def restore_review(root: Path, user: str, branch: str, file: str, version: str, actor: str, changes_from) -> ReviewVersion:
    """Make an earlier version (a content hash or its unique prefix) current again, and log who did it."""
    imported = {e["sha256"] for e in history(root, user, branch, file) if e.get("action") == "import"}
    matches = sorted(sha for sha in imported if sha.startswith(version.lower()))
    if len(matches) != 1:
        known = ", ".join(sorted(sha[:12] for sha in imported)) or "none"
        why = "matches several versions" if matches else "is not a version of it"
        raise UnknownReviewVersion(f"{short_repr(version)} {why} for {user}/reviews/{branch}/{file}; its versions: {known}")
    sha = matches[0]
    blob = versions_dir(root, user, branch) / f"{sha}{Path(file).suffix}"
    data = blob.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise RuntimeError(
            f"{shown_under_root(blob, root)} no longer holds the content its name records: the version store was changed"
        )
    current = current_version(root, user, branch, file)
    changes = changes_from(current.path.read_bytes() if current is not None else None, data)
    entry = append_entry(
        audit_log_path(root, user),
        {
            "action": "restore",
            "user": user,
            "branch": branch,
            "file": file,
            "sha256": sha,
            "annotator": actor,
            "previous": current.sha256 if current is not None else None,
            "changes": changes,
        },
    )
    return ReviewVersion(branch, file, sha, blob, entry)
