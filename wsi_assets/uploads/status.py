"""A lasting per-user upload status: every entry under <user>/inputs/ and whether it was processed, waits, or was skipped.

A scan says what happened in one look; the status says where every file stands now. It is built in
two steps so that most looks cost nothing: `draft_statuses` uses only this look (and marks files
it cannot judge alone as `earlier`), and `settle` fills those from the user's previous status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic
from wsi_assets.core.confinement import PathOutsideUserFolder, confined, user_folder
from wsi_assets.uploads.checks import settings_role, siblings_of, upload_problem
from wsi_assets.uploads.scan import ScanCursor, ScanResult

PROCESSED, WAITING, SKIPPED, SETTINGS = "processed", "waiting", "skipped", "settings"
EARLIER = "earlier"  # draft only: dealt with in an earlier look; the previous status says how
FUTURE_TOLERANCE_NS = 5 * 60 * 10**9  # clocks of file shares drift by seconds, not minutes
STATUS_FILE = "upload_status.json"


@dataclass(frozen=True)
class FileStatus:
    path: str  # relative to the user-files root
    state: str
    why: str
    size: int
    mtime_ns: int


def _note_future(why: str, mtime_ns: int, now_ns: int) -> str:
    if mtime_ns > now_ns + FUTURE_TOLERANCE_NS:
        when = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d")
        return f"{why} (its modification time {when} is in the future; check the uploading machine's clock)"
    return why


def draft_statuses(result: ScanResult, before: ScanCursor) -> dict[str, list[FileStatus]]:
    """Each user's status from this look alone."""
    requested = {r.relpath for r in result.requests}
    skipped, waiting = dict(result.skipped), dict(result.waiting)
    deferred = set(result.deferred_paths)
    siblings = siblings_of(result.entries)
    statuses: dict[str, list[FileStatus]] = {}
    for entry in result.entries:
        if entry.user is None:
            continue
        rel = entry.relpath
        if (role := settings_role(entry)) is not None:
            state, why = SETTINGS, role
        elif rel in requested:
            state, why = PROCESSED, "run requested for this size and modification time"
        elif rel in skipped:
            state, why = SKIPPED, skipped[rel]
        elif rel in waiting:
            state, why = WAITING, waiting[rel]
        elif rel in deferred:
            state, why = WAITING, "queued: many files changed at once; looked at in a later tick"
        elif (problem := upload_problem(entry, siblings)) is not None:
            state, why = SKIPPED, problem
        elif rel in before.pending:
            state, why = WAITING, "waiting for a second look"
        else:
            state, why = EARLIER, ""
        why = _note_future(why, entry.mtime_ns, result.started_ns)
        statuses.setdefault(entry.user, []).append(FileStatus(rel, state, why, entry.size, entry.mtime_ns))
    return statuses


def digest(statuses: list[FileStatus]) -> str:
    text = json.dumps([asdict(s) for s in statuses], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def settle(draft: list[FileStatus], previous: dict[str, FileStatus]) -> list[FileStatus]:
    """Fill what this look could not judge from the user's previous status (same size and time only)."""
    settled = []
    for status in draft:
        if status.state == EARLIER:
            old = previous.get(status.path)
            if old is not None and (old.size, old.mtime_ns) == (status.size, status.mtime_ns) and old.state != EARLIER:
                status = old
            else:
                status = FileStatus(
                    status.path, PROCESSED, "dealt with before this status was kept", status.size, status.mtime_ns
                )
        settled.append(status)
    return settled


def counts(statuses: list[FileStatus]) -> dict[str, int]:
    found = {PROCESSED: 0, WAITING: 0, SKIPPED: 0, SETTINGS: 0}
    for status in statuses:
        found[status.state] = found.get(status.state, 0) + 1
    return found


def to_json(user: str, statuses: list[FileStatus], now_ns: int) -> str:
    return json.dumps(
        {
            "user": user,
            "updated": datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds"),
            "counts": counts(statuses),
            "files": [asdict(s) for s in statuses],
        },
        indent=1,
        ensure_ascii=False,
    )


def from_records(records: list[list]) -> dict[str, FileStatus]:
    """A previous status from its compact form ([path, state, why, size, mtime_ns] rows)."""
    found = {}
    for row in records:
        try:
            status = FileStatus(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))
        except (IndexError, TypeError, ValueError):
            continue
        found[status.path] = status
    return found


def to_records(statuses: list[FileStatus]) -> list[list]:
    return [[s.path, s.state, s.why, s.size, s.mtime_ns] for s in statuses]


def write_status_file(root: Path, user: str, statuses: list[FileStatus], now_ns: int) -> Path | None:
    """<root>/<user>/outputs/upload_status.json, atomically; None when outputs/ would lead outside the user's folder."""
    outputs = Path(root) / user / "outputs"
    try:
        user_folder(root, user)  # before mkdir: a linked user folder must not get an outputs/ in its target
        outputs.mkdir(parents=False, exist_ok=True)
        real_outputs = confined(outputs, root, user)
        target = real_outputs / STATUS_FILE
        if target.is_symlink() or target.exists() and not target.is_file():
            return None  # never write through a link the user placed
        return write_text_atomic(target, to_json(user, statuses, now_ns))
    except (PathOutsideUserFolder, RuntimeError, OSError):
        return None
