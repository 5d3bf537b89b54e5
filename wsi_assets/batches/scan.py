"""The batch sensor's bounded look: which batch folders exist, and which changed and then held still.

A batch is fingerprinted by its entries' (name, size, mtime): the count and an order-free sum of
their hashes, so a pass over a 10,000-image folder can be split over several ticks, each stat-ing
at most `max_stats` files, and resumed from the cursor (the batch and the last name done). A batch
is requested when a whole pass gives the same fingerprint as the pass before (nothing is being
copied in) and that fingerprint has not been requested yet; the run key is the fingerprint, so a
changed, added or removed image gives a new run, and an unchanged folder never runs twice.

Cursor (JSON, a few dozen bytes per batch): `pos` (batch key and last name of an unfinished
pass), `acc` (that pass's running count and sum), `seen` (last whole pass per batch), `req`
(fingerprint last requested per batch).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from wsi_assets.core.confinement import PathOutsideUserFolder, confined
from wsi_assets.core.keys import SlideKey, name_problem
from wsi_assets.uploads.listing import upload_stem

MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class BatchFolder:
    key: SlideKey
    path: Path


@dataclass
class BatchCursor:
    pos: list | None = None  # [partition key, last name stat-ed]
    acc: list | None = None  # [count, sum] of the unfinished pass
    seen: dict[str, str] = field(default_factory=dict)
    req: dict[str, str] = field(default_factory=dict)

    def serialize(self) -> str:
        return json.dumps({"pos": self.pos, "acc": self.acc, "seen": self.seen, "req": self.req}, separators=(",", ":"))

    @classmethod
    def deserialize(cls, text: str | None) -> BatchCursor:
        try:
            data = json.loads(text) if text else {}
            return cls(data.get("pos"), data.get("acc"), dict(data.get("seen", {})), dict(data.get("req", {})))
        except (ValueError, AttributeError, TypeError):
            return cls()


@dataclass
class BatchScan:
    folders: list[BatchFolder] = field(default_factory=list)
    requests: list[tuple[BatchFolder, str]] = field(default_factory=list)  # (batch, fingerprint)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)
    stats: int = 0
    unfinished: str | None = None  # the batch whose pass continues next tick
    cursor: BatchCursor = field(default_factory=BatchCursor)


def _dirs(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)), key=lambda e: e.name)
    except OSError:
        return []  # the upload sensor reports unreadable folders


def _upload_stems(branch: Path) -> set[str]:
    """The branch's file stems, case folded (output folders that differ only in case are one on SMB shares and macOS)."""
    try:
        with os.scandir(branch) as it:
            return {upload_stem(e.name).casefold() for e in it if not e.is_dir(follow_symlinks=False)}
    except OSError:
        return set()


def list_batch_folders(root: Path) -> tuple[list[BatchFolder], list[tuple[str, str]]]:
    """Every <user>/inputs/<branch>/<batch>/ folder with a usable name, and the refused ones with why."""
    root = Path(root)
    folders, refused = [], []
    for user in _dirs(root):
        if name_problem(user.name, "user"):
            continue
        for branch in _dirs(Path(user.path) / "inputs"):
            if name_problem(branch.name, "branch"):
                continue
            upload_stems = _upload_stems(Path(branch.path))
            batches = _dirs(Path(branch.path))
            folded = [b.name.casefold() for b in batches]
            for batch in batches:
                shown = f"{user.name}/inputs/{branch.name}/{batch.name}/"
                problem = name_problem(batch.name, "batch")
                if not problem and batch.name.casefold() in upload_stems:
                    problem = (
                        f"a slide or stack of the branch has the name '{batch.name}' too (case ignored), and both would be published at "
                        f"outputs/{branch.name}/{batch.name}/"
                    )
                elif not problem and folded.count(batch.name.casefold()) > 1:
                    problem = (
                        "another batch folder of the branch has the same name but for upper/lower case; their output folders "
                        "are one folder on case-insensitive file systems (SMB shares, macOS)"
                    )
                if problem:
                    refused.append((shown, problem + "; rename the folder"))
                    continue
                try:
                    confined(Path(batch.path), root, user.name)
                except (PathOutsideUserFolder, OSError, RuntimeError) as error:
                    refused.append((shown, str(error).splitlines()[0]))
                    continue
                folders.append(BatchFolder(SlideKey(user.name, branch.name, batch.name), Path(batch.path)))
    return folders, refused


def _entry_hash(name: str, size: int, mtime_ns: int) -> int:
    digest = hashlib.blake2b(f"{name}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _file_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if not e.name.startswith("."))
    except OSError:
        return []


def scan_batches(root: Path, cursor: BatchCursor, max_stats: int = 5000) -> BatchScan:
    """One tick: continue the fingerprint passes, stat-ing at most `max_stats` entries in all."""
    folders, refused = list_batch_folders(root)
    scan = BatchScan(folders=folders, refused=refused)
    keys = [f.key.partition_key for f in folders]
    seen = {k: v for k, v in cursor.seen.items() if k in keys}
    req = {k: v for k, v in cursor.req.items() if k in keys}
    pos, acc = cursor.pos, cursor.acc
    start = keys.index(pos[0]) if pos and pos[0] in keys else 0
    if not (pos and pos[0] in keys):
        pos, acc = None, None
    order = folders[start:] + folders[:start]  # each batch at most once a tick
    for folder in order:
        key = folder.key.partition_key
        after = pos[1] if pos and pos[0] == key else None
        count, total = acc if after is not None and acc else (0, 0)
        names = _file_names(folder.path)
        if after is not None:
            names = [n for n in names if n > after]
        finished = True
        for name in names:
            if scan.stats >= max_stats:
                finished = False
                break
            scan.stats += 1
            try:
                st = os.stat(folder.path / name, follow_symlinks=False)
            except OSError:
                continue  # gone between listing and stat: the next pass sees the folder as it is then
            size = st.st_size if stat.S_ISREG(st.st_mode) else -1
            count, total = count + 1, (total + _entry_hash(name, size, st.st_mtime_ns)) & MASK64
            after = name
        if not finished:
            scan.unfinished = key
            scan.cursor = BatchCursor([key, after], [count, total], seen, req)
            return scan
        pos, acc = None, None
        fingerprint = f"{count}-{total:016x}"
        if count and seen.get(key) == fingerprint and req.get(key) != fingerprint:
            scan.requests.append((folder, fingerprint))
            req[key] = fingerprint
        seen[key] = fingerprint
    scan.cursor = BatchCursor(None, None, seen, req)
    return scan
