"""One look over the upload folders: which files became stable slides, which wait, which are skipped.

Plain functions over the filesystem; `sensors.py` turns a scan into Dagster requests.

Cursor (kept small): a high-water mark `hwm` of change stamps (every entry whose stamp is at or
below it has been dealt with), the entries above it that were dealt with (`done`), the files
waiting for a second look (`pending`), and one short digest per user of their upload status
(`users`), so the status is rebuilt only for users whose uploads changed. A file's change stamp is
max(mtime, ctime), so a file copied in with an old mtime (`cp -p`, `rsync -a`, `mv`) is still seen.

Clocks: the high-water mark never moves past the moment the look started. A file stamped in the
future (`touch -d 2036-01-01`, a share with a wrong clock) is dealt with once through `done` and
stays there while it exists; it can never hide another file's later upload.

Bounds: a look examines at most `max_files_per_tick` changed files and stops starting new ones
once `max_seconds` have passed (each examination is itself bounded: wsi_assets.uploads.kinds);
the rest wait in order for the next look. Users take turns, so one user's thousand new files
delay another user's upload by one look at most. Whatever one file raises becomes its reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from wsi_assets.core.keys import SlideKey
from wsi_assets.uploads.checks import settings_role, siblings_of, upload_problem
from wsi_assets.uploads.kinds import SLIDE, upload_kind
from wsi_assets.uploads.listing import UploadFile, list_uploads

CURSOR_VERSION = 2


@dataclass(frozen=True)
class SlideRequest:
    key: SlideKey
    path: Path
    size: int
    mtime_ns: int
    relpath: str = ""
    kind: str = SLIDE  # or STACK (wsi_assets.uploads.kinds): which partition set and job

    @property
    def run_key(self) -> str:
        return f"{self.key.partition_key}:{self.size}:{self.mtime_ns}"


@dataclass
class ScanCursor:
    hwm: int = 0
    done: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)

    def serialize(self) -> str:
        data = {"v": CURSOR_VERSION, "hwm": self.hwm, "done": self.done, "pending": self.pending}
        if self.users:
            data["users"] = self.users
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def deserialize(cls, text: str | None) -> ScanCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if data.get("v") not in (1, CURSOR_VERSION):  # version 1 lacks only `users`
            return cls()
        return cls(hwm=data["hwm"], done=data["done"], pending=data["pending"], users=data.get("users", {}))


@dataclass
class ScanResult:
    requests: list[SlideRequest] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why)
    deferred: int = 0  # stable candidates left for the next tick by the per-tick bound
    deferred_paths: list[str] = field(default_factory=list)
    cursor: ScanCursor = field(default_factory=ScanCursor)
    entries: list[UploadFile] = field(default_factory=list)  # the whole listing, for the upload status
    started_ns: int = 0


def scan_uploads(
    root: Path,
    cursor: ScanCursor,
    max_files_per_tick: int = 500,
    now_ns: int | None = None,
    max_seconds: float | None = None,
    clock=time.monotonic,
) -> ScanResult:
    """Compare the upload folders with the cursor and decide what each changed entry needs.

    Raises UploadRootUnavailable when the root itself is missing or unreadable; never for one entry.
    """
    deadline = None if max_seconds is None else clock() + max_seconds
    now_ns = time.time_ns() if now_ns is None else now_ns
    entries = list_uploads(root)
    return scan_entries(entries, cursor, max_files_per_tick, now_ns, deadline, clock)


def users_take_turns(candidates: list[UploadFile]) -> list[UploadFile]:
    """Each user's changed files oldest first, the users taking turns (entries of no user count as one more)."""
    queues: dict[str, list[UploadFile]] = {}
    for upload in sorted(candidates, key=lambda e: (e.stamp_ns, e.relpath)):
        queues.setdefault(upload.user or "", []).append(upload)
    ordered, users = [], sorted(queues)
    for turn in range(max((len(q) for q in queues.values()), default=0)):
        ordered += [queues[user][turn] for user in users if turn < len(queues[user])]
    return ordered


def _kind(upload: UploadFile) -> tuple[str | None, str | None]:
    try:
        return upload_kind(upload.path)
    except Exception as error:  # noqa: BLE001 - one file's trouble (RecursionError, MemoryError, OSError...) is its own
        text = str(error).strip().splitlines()
        return (
            None,
            f"could not be checked ({type(error).__name__}{': ' + text[0][:200] if text else ''}); upload it again or remove it",
        )


def scan_entries(
    entries: list[UploadFile],
    cursor: ScanCursor,
    max_files_per_tick: int,
    now_ns: int,
    deadline: float | None = None,
    clock=time.monotonic,
) -> ScanResult:
    result = ScanResult(entries=entries, started_ns=now_ns)
    # A mark in the future (a cursor written before this rule, or a clock set back) may have hidden
    # uploads: look at everything again. Run keys stop a file already requested from running twice.
    start_hwm = cursor.hwm if cursor.hwm <= now_ns else 0
    siblings = siblings_of(entries)
    candidates = users_take_turns(
        [e for e in entries if (e.stamp_ns > start_hwm or e.stamp_ns < 0) and cursor.done.get(e.relpath) != e.signature]
    )
    done = dict(cursor.done)
    pending: dict[str, list[int]] = {}
    unfinished_stamps: list[int] = []
    examined = 0
    for upload in candidates:
        out_of_time = deadline is not None and examined and clock() >= deadline  # at least one file a look: progress
        if examined >= max_files_per_tick or out_of_time:
            result.deferred += 1
            result.deferred_paths.append(upload.relpath)
            unfinished_stamps.append(upload.stamp_ns)
            continue
        examined += 1
        if settings_role(upload) is not None:
            done[upload.relpath] = upload.signature
            continue
        problem = upload_problem(upload, siblings)
        if problem is not None:
            result.skipped.append((upload.relpath, problem))
            if upload.stamp_ns >= 0:
                done[upload.relpath] = upload.signature
            continue
        if cursor.pending.get(upload.relpath) != upload.signature:
            pending[upload.relpath] = upload.signature
            unfinished_stamps.append(upload.stamp_ns)
            why = "new file" if upload.relpath not in cursor.pending else "still being written (size or time changed)"
            result.waiting.append((upload.relpath, f"{why}; processed once unchanged at the next look"))
            continue
        kind, problem = _kind(upload)
        if problem is not None:
            result.skipped.append((upload.relpath, problem))
        else:
            # Entries of no valid user and uploads of no known kind were skipped above with their reasons.
            assert upload.user is not None and kind is not None
            key = SlideKey(upload.user, upload.branch, upload.stem)
            result.requests.append(SlideRequest(key, upload.path, upload.size, upload.mtime_ns, upload.relpath, kind))
        done[upload.relpath] = upload.signature

    listed = [e for e in entries if e.stamp_ns >= 0]
    if unfinished_stamps:
        hwm = max(start_hwm, min(unfinished_stamps) - 1)
    else:
        hwm = max([start_hwm] + [e.stamp_ns for e in listed])
    hwm = min(hwm, now_ns)  # a file stamped in the future stays in `done` instead
    existing = {e.relpath: e for e in listed}
    # Forget what the high-water mark now covers, and entries that are gone.
    result.cursor = ScanCursor(
        hwm=hwm,
        done={rel: sig for rel, sig in done.items() if rel in existing and existing[rel].stamp_ns > hwm},
        pending=pending,
        users=dict(cursor.users),
    )
    return result
