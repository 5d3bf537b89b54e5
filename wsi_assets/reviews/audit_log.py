"""The per-user review audit log: append-only JSON lines, each chained to the one before by its hash.

Every entry carries `prev` (the previous entry's hash) and `hash` (SHA-256 of its own canonical
JSON without `hash`), and a head file beside the log holds the number of entries and the last
hash. Every read checks the whole chain and the head, so an edited, reordered, removed or
truncated entry is detected and the log is refused rather than trusted. Appends hold an
exclusive lock, so runs of several branches never interleave their lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from pathlib import Path

from wsi_assets.core.atomic import write_text_atomic

GENESIS = "0" * 64


class AuditLogTampered(RuntimeError):
    """The audit log no longer matches its own hash chain or its head: it was changed after it was written."""


def _canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def head_path(log: Path) -> Path:
    return log.with_name(log.name + ".head")


def read_log(log: Path) -> list[dict]:
    """Every entry, after checking the chain and the head; AuditLogTampered (one line) when they disagree."""
    log = Path(log)
    head = head_path(log)
    if not log.exists():
        if head.exists():
            raise AuditLogTampered(
                f"{log.name} is missing but its head says it had entries: the log was removed; restore it from a backup"
            )
        return []
    entries, previous = [], GENESIS
    with open(log, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AuditLogTampered(f"{log.name} line {number} is not a JSON entry: the log was edited") from None
            if entry.get("seq") != number or entry.get("prev") != previous or entry.get("hash") != entry_hash(entry):
                raise AuditLogTampered(
                    f"{log.name} line {number} does not match the hash chain: the log was edited after it was written"
                )
            entries.append(entry)
            previous = entry["hash"]
    try:
        state = json.loads(head.read_text())
    except (OSError, ValueError):
        raise AuditLogTampered(f"{head.name} is missing or unreadable: the log cannot be shown to be whole") from None
    if state.get("entries") != len(entries) or state.get("hash") != previous:
        raise AuditLogTampered(
            f"{log.name} has {len(entries)} entries but its head records {state.get('entries')}: entries were removed or the log replaced"
        )
    return entries


@contextlib.contextmanager
def _locked(log: Path):
    lock = log.with_name(log.name + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_entry(log: Path, record: dict) -> dict:
    """Append `record` (with time, seq, prev and hash added) after verifying the log; returns the entry written."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked(log):
        entries = read_log(log)
        entry = dict(record)
        entry.setdefault("time", dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"))
        entry["seq"] = len(entries) + 1
        entry["prev"] = entries[-1]["hash"] if entries else GENESIS
        entry["hash"] = entry_hash(entry)
        descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, _canonical(entry) + b"\n")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        write_text_atomic(head_path(log), json.dumps({"entries": entry["seq"], "hash": entry["hash"]}))
    return entry
