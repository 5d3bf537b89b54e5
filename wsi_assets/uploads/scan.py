"""One look over the upload folders: which files became stable slides, which wait, which are skipped.

Plain functions over the filesystem; `sensors.py` turns a scan into Dagster requests.

Cursor (kept small): a high-water mark `hwm` of change stamps (every file whose stamp is at or
below it has been dealt with), the files above it that were dealt with (`done`), and the files
waiting for a second look (`pending`). A file's change stamp is max(mtime, ctime), so a file
copied in with an old mtime (`cp -p`, `rsync -a`, `mv`) is still seen.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import openslide

from wsi_assets.core.keys import DEFAULT_BRANCH, SlideKey, name_problem
from wsi_assets.core.user_files import SLIDE_EXTENSIONS

CURSOR_VERSION = 1


@dataclass(frozen=True)
class UploadFile:
    path: Path
    relpath: str  # relative to the user-files root, '/'-separated
    user: str
    branch: str
    size: int
    mtime_ns: int
    stamp_ns: int

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def signature(self) -> list[int]:
        return [self.size, self.mtime_ns]


@dataclass(frozen=True)
class SlideRequest:
    key: SlideKey
    path: Path
    size: int
    mtime_ns: int

    @property
    def run_key(self) -> str:
        return f"{self.key.partition_key}:{self.size}:{self.mtime_ns}"


@dataclass
class ScanCursor:
    hwm: int = 0
    done: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)

    def serialize(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "hwm": self.hwm, "done": self.done, "pending": self.pending},
            separators=(",", ":"),
        )

    @classmethod
    def deserialize(cls, text: str | None) -> "ScanCursor":
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != CURSOR_VERSION:
            return cls()
        return cls(hwm=data["hwm"], done=data["done"], pending=data["pending"])


@dataclass
class ScanResult:
    requests: list[SlideRequest] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why)
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why)
    deferred: int = 0  # stable candidates left for the next tick by the per-tick bound
    cursor: ScanCursor = field(default_factory=ScanCursor)


def _stat_file(path: Path, root: Path, user: str, branch: str) -> UploadFile | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return UploadFile(
        path=path,
        relpath=path.relative_to(root).as_posix(),
        user=user,
        branch=branch,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        stamp_ns=max(st.st_mtime_ns, st.st_ctime_ns),
    )


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    # Dot-files are upload tools' temporary files (rsync, browsers): not uploads yet.
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_uploads(root: Path) -> tuple[list[UploadFile], list[tuple[str, str]]]:
    """Every file under <user>/inputs/[<branch>/], and the folders that cannot be read with why."""
    root = Path(root)
    files: list[UploadFile] = []
    unusable: list[tuple[str, str]] = []
    for user_entry in _visible_entries(root):
        if not user_entry.is_dir():
            continue
        inputs = Path(user_entry.path) / "inputs"
        if not inputs.is_dir():
            continue
        problem = name_problem(user_entry.name, "user")
        if problem:
            unusable.append((inputs.relative_to(root).as_posix(), problem + "; rename the folder"))
            continue
        for entry in _visible_entries(inputs):
            if entry.is_file():
                found = _stat_file(Path(entry.path), root, user_entry.name, DEFAULT_BRANCH)
                if found:
                    files.append(found)
            elif entry.is_dir():
                branch_dir = Path(entry.path)
                problem = name_problem(entry.name, "branch")
                if problem:
                    unusable.append((branch_dir.relative_to(root).as_posix(), problem + "; rename the folder"))
                    continue
                for inner in _visible_entries(branch_dir):
                    if inner.is_file():
                        found = _stat_file(Path(inner.path), root, user_entry.name, entry.name)
                        if found:
                            files.append(found)
    return files, unusable


def file_problem(upload: UploadFile) -> str | None:
    """Why this upload is not a slide we can key, from its name alone."""
    suffix = upload.path.suffix.lower()
    if suffix not in SLIDE_EXTENSIONS:
        allowed = " ".join(sorted(SLIDE_EXTENSIONS))
        return f"not a slide: extension '{suffix or '(none)'}' is not one of {allowed}"
    return name_problem(upload.stem, "slide")


def slide_format_problem(path: Path) -> str | None:
    """Why OpenSlide cannot read this file, from its header, or None when it can."""
    try:
        detected = openslide.OpenSlide.detect_format(str(path))
    except Exception as error:  # noqa: BLE001 - any read failure means "not readable"
        return f"not a slide OpenSlide can read ({type(error).__name__}: {error})"
    if detected is None:
        return "not a slide OpenSlide can read (unknown format or damaged file)"
    return None


def _group_key(upload: UploadFile) -> tuple[str, str, str]:
    return (upload.user, upload.branch, upload.stem)


def scan_uploads(root: Path, cursor: ScanCursor, max_files_per_tick: int = 500) -> ScanResult:
    """Compare the upload folders with the cursor and decide what each changed file needs."""
    files, unusable_folders = list_uploads(root)
    result = ScanResult()
    for relpath, why in unusable_folders:
        if relpath not in cursor.done:
            result.skipped.append((relpath, why))
    done_folders = {relpath: [0, 0] for relpath, _ in unusable_folders}

    siblings: dict[tuple[str, str, str], list[UploadFile]] = defaultdict(list)
    for upload in files:
        if upload.path.suffix.lower() in SLIDE_EXTENSIONS:
            siblings[_group_key(upload)].append(upload)

    candidates = sorted(
        (f for f in files if f.stamp_ns > cursor.hwm and cursor.done.get(f.relpath) != f.signature),
        key=lambda f: (f.stamp_ns, f.relpath),
    )
    done = {rel: sig for rel, sig in cursor.done.items()}
    pending: dict[str, list[int]] = {}
    unfinished_stamps: list[int] = []
    examined = 0
    for upload in candidates:
        if examined >= max_files_per_tick:
            result.deferred += 1
            unfinished_stamps.append(upload.stamp_ns)
            continue
        examined += 1
        problem = file_problem(upload)
        if problem is None and len(siblings[_group_key(upload)]) > 1:
            names = ", ".join(sorted(f.relpath for f in siblings[_group_key(upload)]))
            problem = f"ambiguous: {names} share the slide name '{upload.stem}' in branch '{upload.branch}'; rename or remove one"
        if problem is not None:
            result.skipped.append((upload.relpath, problem))
            done[upload.relpath] = upload.signature
            continue
        if cursor.pending.get(upload.relpath) != upload.signature:
            pending[upload.relpath] = upload.signature
            unfinished_stamps.append(upload.stamp_ns)
            why = "new file" if upload.relpath not in cursor.pending else "still being written (size or time changed)"
            result.waiting.append((upload.relpath, f"{why}; processed once unchanged at the next look"))
            continue
        problem = slide_format_problem(upload.path)
        if problem is not None:
            result.skipped.append((upload.relpath, problem))
        else:
            key = SlideKey(upload.user, upload.branch, upload.stem)
            result.requests.append(SlideRequest(key, upload.path, upload.size, upload.mtime_ns))
        done[upload.relpath] = upload.signature

    existing = {f.relpath: f for f in files}
    if unfinished_stamps:
        hwm = max(cursor.hwm, min(unfinished_stamps) - 1)
    else:
        hwm = max([cursor.hwm] + [f.stamp_ns for f in files])
    # Forget what the high-water mark now covers, and files that are gone.
    result.cursor = ScanCursor(
        hwm=hwm,
        done={
            rel: sig
            for rel, sig in {**done, **done_folders}.items()
            if (rel in existing and existing[rel].stamp_ns > hwm) or rel in done_folders
        },
        pending=pending,
    )
    return result
