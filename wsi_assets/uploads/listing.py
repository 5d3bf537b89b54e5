"""One walk over <root>/<user>/inputs/[<branch>/]: every entry, and for each one that cannot be an upload, why.

Nothing here raises for a bad entry: a link loop, an unreadable folder, a FIFO, a file that vanishes
between listing and stat, or a name that is not text becomes an entry with a `problem`, so one
user's mess never stops another user's uploads. Only a missing or unreadable root raises.
Every path is checked with `core.confinement` before it is followed.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.core.confinement import (
    HardLinkedUpload,
    PathOutsideUserFolder,
    confined,
    confined_upload,
    user_folder,
)
from wsi_assets.core.keys import DEFAULT_BRANCH, name_problem


class UploadRootUnavailable(OSError):
    """The upload root itself is missing or unreadable: nothing can be listed."""


@dataclass(frozen=True)
class UploadFile:
    path: Path
    relpath: str  # relative to the user-files root, '/'-separated, printable
    user: str | None  # None when the entry belongs to no valid user (a bad or hidden user folder)
    branch: str
    size: int
    mtime_ns: int
    stamp_ns: int
    problem: str | None = None  # why this entry cannot be an upload, from the walk alone

    @property
    def stem(self) -> str:
        return upload_stem(self.path.name)

    @property
    def signature(self) -> list[int]:
        return [self.size, self.mtime_ns]


def upload_stem(name: str) -> str:
    """The name a partition key uses: the file name without its extension, and without `.ome` for an OME-TIFF."""
    stem = Path(name).stem
    if Path(name).suffix.lower() in (".tif", ".tiff") and stem.lower().endswith(".ome"):
        return stem[: -len(".ome")]
    return stem


def shown_name(name: str) -> str:
    """A name as one printable line: undecodable bytes become U+FFFD, control characters are escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _name_is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


class _Walk:
    def __init__(self, root: Path, folder: str = "inputs"):
        self.root = Path(root)
        self.folder = folder  # the per-user folder walked: inputs/ (slides) or reviews/ (wsi_assets.reviews)
        self.entries: list[UploadFile] = []

    def rel(self, path: Path) -> str:
        text, prefix = str(path), str(self.root).rstrip("/") + "/"
        parts = text[len(prefix) :].split("/") if text.startswith(prefix) else path.relative_to(self.root).parts
        return "/".join(shown_name(part) for part in parts)

    def note(self, path: Path, user: str | None, branch: str, problem: str, is_dir: bool = False) -> None:
        """Record an entry that cannot be an upload; its own lstat gives the stamp that reports it once."""
        try:
            st = os.lstat(path)
            size, mtime, stamp = st.st_size, st.st_mtime_ns, max(st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            size, mtime, stamp = -1, -1, -1  # gone already: reported in this look only
        rel = self.rel(path) + ("/" if is_dir else "")
        self.entries.append(UploadFile(path, rel, user, branch, size, mtime, stamp, problem))

    def children(self, folder: Path, user: str | None, branch: str) -> list[os.DirEntry] | None:
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as error:
            why = "cannot be read" if error.errno in (errno.EACCES, errno.EPERM) else f"cannot be listed ({error.strerror})"
            self.note(folder, user, branch, f"folder {why}: nothing in it is seen; fix its permissions", is_dir=True)
            return None

    def target(self, entry: os.DirEntry, user: str, branch: str) -> os.stat_result | None:
        """The stat of what `entry` really is, after the user-folder check; None (and a note) when refused."""
        path = Path(entry.path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.lexists(path):
                self.note(
                    path, user, branch, "is a link to nothing (the file it points to is gone); remove the link or upload the file"
                )
            else:
                self.note(
                    path, user, branch, "disappeared while the folder was being listed; it is looked at again if it comes back"
                )
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                self.note(path, user, branch, "is a loop of symbolic links; remove the link")
            else:
                self.note(path, user, branch, f"cannot be read ({error.strerror}); fix its permissions")
            return None
        if entry.is_symlink():
            try:
                confined(path, self.root, user)
            except (PathOutsideUserFolder, RuntimeError, OSError) as error:
                self.note(path, user, branch, _one_line(error))
                return None
        return st

    def walk(self) -> list[UploadFile]:
        for entry in self.children_of_root():
            self.user_entry(entry)
        return self.entries

    def children_of_root(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as it:
                return sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            raise UploadRootUnavailable(
                f"upload root {self.root} does not exist: create it or point WSI_USER_FILES (or the user_files resource) at it"
            ) from None
        except OSError as error:
            raise UploadRootUnavailable(
                f"upload root {self.root} cannot be read ({error.strerror}): fix its permissions"
            ) from None

    def user_entry(self, entry: os.DirEntry) -> None:
        path, name = Path(entry.path), entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if name.startswith("."):
            if is_dir or entry.is_symlink():
                self.note(
                    path, None, "", "hidden folder is not read as a user (user names must not start with '.'); rename it", True
                )
            return  # dot-files are upload tools' temporary files
        if not _name_is_text(name):
            self.note(path, None, "", "name is not valid UTF-8 text; rename it", is_dir)
            return
        if not is_dir and not entry.is_symlink():
            self.note(path, None, "", "a file at the top of the upload root is not read; uploads go in <user>/inputs/<branch>/")
            return
        problem = name_problem(name, "user")
        if problem:
            self.note(path, None, "", problem + "; rename the folder", True)
            return
        try:
            user_folder(self.root, name)
        except (PathOutsideUserFolder, RuntimeError, OSError) as error:
            self.note(path, name, "", _one_line(error), True)
            return
        self.inputs(path / self.folder, name)

    def inputs(self, inputs: Path, user: str) -> None:
        if not os.path.lexists(inputs):
            return  # a user with outputs only
        try:
            confined(inputs, self.root, user)
        except (PathOutsideUserFolder, RuntimeError, OSError) as error:
            self.note(inputs, user, "", _one_line(error), True)
            return
        if not inputs.is_dir():
            self.note(inputs, user, "", "inputs is not a folder; make it a folder and put uploads in it")
            return
        for entry in self.children(inputs, user, "") or []:
            self.branch_entry(entry, user)

    def branch_entry(self, entry: os.DirEntry, user: str) -> None:
        path, name = Path(entry.path), entry.name
        if name.startswith("."):
            if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                self.note(
                    path,
                    user,
                    "",
                    "hidden folder is not read as a branch (branch names must not start with '.'); rename it",
                    True,
                )
            return
        if not _name_is_text(name):
            self.note(path, user, DEFAULT_BRANCH, "name is not valid UTF-8 text; rename it")
            return
        st = self.target(entry, user, DEFAULT_BRANCH)
        if st is None:
            return
        if stat.S_ISREG(st.st_mode):
            self.file(path, user, DEFAULT_BRANCH, entry.is_symlink())
        elif stat.S_ISDIR(st.st_mode):
            problem = name_problem(name, "branch")
            if problem:
                self.note(path, user, "", problem + "; rename the folder", True)
                return
            for inner in self.children(path, user, name) or []:
                self.slide_entry(inner, user, name)
        else:
            self.note(path, user, DEFAULT_BRANCH, f"is {_kind(st.st_mode)}, not an uploaded file; remove it")

    def slide_entry(self, entry: os.DirEntry, user: str, branch: str) -> None:
        path, name = Path(entry.path), entry.name
        if name.startswith("."):
            return  # temporary files of upload tools, and hidden folders inside a branch
        if not _name_is_text(name):
            self.note(path, user, branch, "name is not valid UTF-8 text; rename it")
            return
        st = self.target(entry, user, branch)
        if st is None:
            return
        if stat.S_ISREG(st.st_mode):
            self.file(path, user, branch, entry.is_symlink())
        elif stat.S_ISDIR(st.st_mode):
            # A folder inside a branch is a batch of small images: the batch sensor reads it (wsi_assets.batches).
            problem = name_problem(name, "batch")
            if problem:
                self.note(
                    path, user, branch, problem + "; rename the folder (a folder inside a branch is a batch of images)", True
                )
        else:
            self.note(path, user, branch, f"is {_kind(st.st_mode)}, not an uploaded file; remove it")

    def file(self, path: Path, user: str, branch: str, is_link: bool = True) -> None:
        if not is_link and self.plain_file(path, user, branch):
            return
        try:
            real = confined_upload(path, self.root, user)
            st = os.stat(real)
            link_stamp = os.lstat(path)
        except HardLinkedUpload as error:
            self.note(path, user, branch, _one_line(error))
            return
        except FileNotFoundError:
            self.note(path, user, branch, "disappeared while the folder was being listed; it is looked at again if it comes back")
            return
        except (PathOutsideUserFolder, RuntimeError, OSError) as error:
            self.note(path, user, branch, _one_line(error))
            return
        stamp = max(st.st_mtime_ns, st.st_ctime_ns, link_stamp.st_ctime_ns)
        self.entries.append(UploadFile(path, self.rel(path), user, branch, st.st_size, st.st_mtime_ns, stamp))

    def plain_file(self, path: Path, user: str, branch: str) -> bool:
        """A regular file with one name, in a folder already checked to be the user's: listed without
        resolving its path (the costly part of a walk over thousands of files). False: check it in full."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return False  # replaced by a link since the folder was listed, or hard-linked: the full check says why
        self.entries.append(
            UploadFile(path, self.rel(path), user, branch, st.st_size, st.st_mtime_ns, max(st.st_mtime_ns, st.st_ctime_ns))
        )
        return True


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, RuntimeError) and "loop" in text.lower():
        return "is a loop of symbolic links; remove the link"
    return text


def list_uploads(root: Path) -> list[UploadFile]:
    """Every entry under <user>/inputs/[<branch>/], bad ones with their problem; raises only when the root is unusable."""
    return _Walk(Path(root)).walk()


def list_user_uploads(root: Path, user: str) -> list[UploadFile]:
    """The same walk for one user (the submit command's view of that user's uploads)."""
    walk = _Walk(Path(root))
    walk.children_of_root()  # the same error as the sensor when the root is unusable
    path = Path(root) / user
    if not os.path.lexists(path):
        return []
    with os.scandir(root) as it:
        for entry in it:
            if entry.name == user:
                walk.user_entry(entry)
    return walk.entries


def list_review_uploads(root: Path) -> list[UploadFile]:
    """The same walk over <user>/reviews/[<branch>/]: pathologists' review files, with the same link and name rules."""
    return _Walk(Path(root), "reviews").walk()
