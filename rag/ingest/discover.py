"""Discover: a folder on disk → the files the ingest reads, each read whole and safely.

- `discover(root)` walks a folder and returns the supported files (by suffix, see
  `rag.ingest.parse.SUPPORTED_SUFFIXES`), sorted by their display-safe source name, plus a
  `Failure` for everything it had to leave out (hidden files, symlink loops, broken links,
  unreadable folders).
- `read_bytes(found, max_bytes=…)` reads one file whole, refusing oversized, special or changing files.
- `display_safe(name)` turns an undecodable file name into text that JSON and SQLite accept.

Every bad input raises `LoadError(source, reason, fix)` or becomes a `Failure`; the ingest reports it
and goes on. Deliberately skipped: what a file holds (that is `rag.ingest.parse`), files with other
suffixes (left out silently), and watching a folder for changes (each ingest walks it again).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rag.errors import LoadError
from rag.ingest.parse import SUPPORTED_SUFFIXES
from rag.records import Failure


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute path to open (may hold undecodable bytes as surrogates)
    source: str  # path relative to the root, posix '/', display-safe; the document's identity


# --------------------------------------------------------------------------------------- discover


def display_safe(name: str) -> str:
    r"""A file name as valid UTF-8 text: undecodable bytes become '\xNN', all else is kept.

    On Linux `os.fsdecode(b'bad\xff.txt')` is 'bad\udcff.txt', a lone surrogate that JSON and
    SQLite reject; this gives 'bad\\xff.txt'. Newlines and other characters stay as they are.
    """
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte produced (e.g. from a Windows name)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _is_supported(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES


def _may_matter(name: str) -> bool:
    """Worth reporting when it cannot be read: a supported file, or no suffix (maybe a folder)."""
    suffix = PurePosixPath(name).suffix
    return not suffix or suffix.lower() in SUPPORTED_SUFFIXES


def _link_problem(path: str) -> str | None:
    """'symlink loop' / 'broken symlink …' when `path` is a link that cannot be followed."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop (the link points back to itself)"
        return f"broken symlink (target missing: {display_safe(os.readlink(path))})"
    return None


# a folder to walk: (path, its source prefix, ids of the folders on the way down: a repeat is a loop)
_Walk = tuple[str, str, tuple[tuple[int, int], ...]]


def discover(root: Path, *, follow_symlinks: bool = True) -> tuple[list[FoundFile], list[Failure]]:
    """Recursively find supported files under root, sorted by source.

    Hidden files and folders are reported as skipped; symlink loops, broken links and unreadable
    folders as failed; files with other suffixes are left out silently. A folder reached twice is
    read once, under its real path (symlinked folders are walked last). A file as root is
    returned alone (source = its name). Raises LoadError if root does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise LoadError(display_safe(str(root)), "not found", "check the path to the folder or file")
    if not root.is_dir():
        return [FoundFile(root.absolute(), display_safe(root.name))], []

    top = root.absolute()
    try:
        top_id = _dir_id(top)
    except OSError as err:
        raise LoadError(display_safe(str(root)), f"cannot open the folder: {err.strerror}",
                        "check its permissions (chmod +rx) and owner") from err
    found: list[FoundFile] = []
    failures: list[Failure] = []
    seen: dict[tuple[int, int], str] = {top_id: "the root folder"}  # folder id → its source
    folders: list[_Walk] = [(str(top), "", (top_id,))]
    linked: list[_Walk] = []  # symlinked folders wait, so a folder is named by its real path
    while folders or linked:
        folder, prefix, ancestors = folders.pop() if folders else linked.pop(0)
        source = display_safe(prefix[:-1]) or "."
        key = ancestors[-1]
        if key in ancestors[:-1]:
            failures.append(Failure(source, f"symlink loop (points back to {seen[key]})",
                                    "remove the link or point it outside its own folder"))
            continue
        if seen.setdefault(key, source) != source and prefix:
            failures.append(Failure(source, f"same folder as {seen[key]} (read there)",
                                    "nothing to do: it is not ingested twice", kind="skipped"))
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            reason = ("permission denied: cannot list the folder" if isinstance(err, PermissionError)
                      else f"cannot list the folder: {err.strerror or err}")
            failures.append(Failure(source, reason, "make it readable (chmod +rx) or check its owner"))
            continue
        for entry in entries:
            failure = _visit(entry, prefix, ancestors, follow_symlinks, found, folders, linked)
            if failure:
                failures.append(failure)
    found.sort(key=lambda f: f.source)
    failures.sort(key=lambda f: f.source)
    return found, failures


def _visit(entry: os.DirEntry[str], prefix: str, ancestors: tuple[tuple[int, int], ...],
           follow_symlinks: bool, found: list[FoundFile], folders: list[_Walk],
           linked: list[_Walk]) -> Failure | None:
    """Sort one folder entry into found files or folders to walk; the Failure to report, if any."""
    source = display_safe(prefix + entry.name)
    is_link = entry.is_symlink()
    try:
        is_dir = entry.is_dir()  # follows links
    except OSError:
        is_dir = False
    if entry.name.startswith("."):
        if is_dir or _is_supported(entry.name):
            return Failure(source, "hidden folder" if is_dir else "hidden file",
                           "rename it without the leading '.' to include it", kind="skipped")
        return None
    if is_link and not follow_symlinks:
        if is_dir or _is_supported(entry.name):
            return Failure(source, "symlink (not followed)",
                           "follow symlinks, or copy the target into the folder", kind="skipped")
        return None
    if is_link and not os.path.exists(entry.path):
        if _may_matter(entry.name):
            return Failure(source, _link_problem(entry.path) or "broken symlink",
                           "remove the link or point it at an existing file")
        return None
    if is_dir:
        try:
            key = _dir_id(entry.path)
        except OSError as err:
            return Failure(source, f"cannot open the folder: {err.strerror}",
                           "make it readable (chmod +rx) or check its owner")
        (linked if is_link else folders).append((entry.path, prefix + entry.name + "/", ancestors + (key,)))
    elif _is_supported(entry.name):
        # special files (fifos, devices) are kept: read_bytes reports them by name
        found.append(FoundFile(Path(entry.path), source))
    return None


def _dir_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


# ------------------------------------------------------------------------------------ read_bytes


def _file_signature(path: Path) -> tuple[int, int, int, int]:
    """(mode, inode, size, mtime): any difference before and after a read means the file changed."""
    st = os.stat(path)
    return st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns


def _size_text(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def too_large_reason(size: int, max_bytes: int) -> str:
    """'file is 250.0 MB, over the 200.0 MB limit' (exact bytes when MB would look equal)."""
    shown, limit = _size_text(size), _size_text(max_bytes)
    if shown == limit:
        shown, limit = f"{shown} ({size:,} bytes)", f"{limit} ({max_bytes:,} bytes)"
    return f"file is {shown}, over the {limit} limit"


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _os_error(source: str, err: OSError) -> LoadError:
    if isinstance(err, PermissionError):
        return LoadError(source, "permission denied",
                         "make it readable (e.g. chmod a+r FILE) or check its owner")
    if isinstance(err, FileNotFoundError):
        return LoadError(source, "file not found (moved or deleted during the ingest?)",
                         "re-run the ingest")
    return LoadError(source, f"cannot read the file: {err.strerror or err}",
                     "check the file and the disk, then re-run the ingest")


def read_bytes(found: FoundFile, *, max_bytes: int) -> bytes:
    """Read the whole file, or raise LoadError naming the file, the reason and the fix.

    Refuses unreadable files, files over `max_bytes`, anything but a regular file, and files
    that change while being read (mode, inode, size or mtime differ before and after).
    """
    source = found.source
    try:
        before = _file_signature(found.path)
    except OSError as err:
        raise _os_error(source, err) from err
    if not stat.S_ISREG(before[0]):
        raise LoadError(source, f"not a regular file ({_kind_of(before[0])})",
                        "remove it from the folder or replace it with a regular file")
    if before[2] > max_bytes:
        raise LoadError(source, too_large_reason(before[2], max_bytes),
                        "raise RAG_MAX_FILE_MB or split the file")
    try:
        with open(found.path, "rb") as f:
            data = f.read(max_bytes + 1)  # +1: a file that grew past the limit shows up here
    except OSError as err:
        raise _os_error(source, err) from err
    try:
        after = _file_signature(found.path)
    except OSError:
        after = None
    if after != before or len(data) != before[2]:
        raise LoadError(source, "file changed while being read", "re-run the ingest when it is stable")
    return data
