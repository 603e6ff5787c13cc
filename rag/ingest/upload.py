"""Uploads: what the UI may write into the documents folder, and under which name.

    saved = save_upload(docs, "../../etc/report.pdf", data, max_bytes=limit, existing_hashes=hashes)
    saved.source   # 'report.pdf' — always a plain name inside `docs`, never a path out of it

The rules, each a pure function the UI calls (and the tests call directly):

- `sanitize_filename` keeps only the last path component, drops control and shell-hostile
  characters and leading dots (hidden files are skipped by the ingest), and bounds the length;
- the type check takes the loader's table and sniffing (`rag.ingest.parse`): the suffix must be
  one the ingest reads and must agree with what the content is (`content_kind`), because the
  loader parses by suffix; archives, images and other binaries are refused whatever their name says;
- `save_upload` refuses files over the size limit and content already in the collection (by
  SHA-256, the hash the ingest records), never writes outside `docs_dir` and never overwrites:
  a taken name gets a `-1`, `-2`… suffix. The file appears whole or not at all (written to a hidden
  temporary file, then hard-linked into place), so a concurrent ingest never reads half a file.

Adding the saved files to the index, deleting documents and the page viewer are `rag.collection`.
Deliberately skipped: virus scanning, quotas per user, and content checks beyond the type (a
well-formed PDF can still fail to parse; the ingest reports that with its reason).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rag.errors import RagError
from rag.ingest.discover import too_large_reason
from rag.ingest.parse import FORMATS, SUPPORTED_NAMES, SUPPORTED_SUFFIXES, Kind, content_kind

MAX_NAME_CHARS = 120  # well under the 255-byte limit of common file systems, even in UTF-8 CJK


class UploadRejected(RagError):
    """An uploaded file that was not stored; `reason` says why, `fix` what to do."""

    def __init__(self, name: str, reason: str, fix: str = "") -> None:
        self.name, self.reason, self.fix = name, reason, fix
        super().__init__(f"{name}: {reason}" + (f" (fix: {fix})" if fix else ""))


@dataclass(frozen=True)
class SavedUpload:
    source: str  # the name inside docs_dir: what the ingest will call the document
    path: Path
    kind: Kind
    sha256: str
    size: int
    renamed_from: str = ""  # the sanitized name, when it was taken and a suffix was added


# --- names ------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')  # controls, and characters Windows or shells trip on
_SPACES = re.compile(r"\s+")


def sanitize_filename(name: str) -> str:
    """A plain file name that is safe to create inside a folder.

    >>> sanitize_filename("../../etc/x.pdf"), sanitize_filename("C:\\\\Users\\\\me\\\\notes.md")
    ('x.pdf', 'notes.md')
    >>> sanitize_filename(".bashrc.txt"), sanitize_filename("a<b>|c?.html"), sanitize_filename("..")
    ('bashrc.txt', 'a_b__c_.html', 'upload')

    Only the last component of a '/' or '\\' path is kept; the result never starts with a dot,
    holds no separators or control characters, and is at most MAX_NAME_CHARS long (suffix kept).
    """
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base)
    base = _SPACES.sub(" ", base).strip(" .")  # leading dots hide a file; trailing ones vanish on Windows
    if not base or set(base) <= {"_", "."}:
        return "upload"
    stem, suffix = _split_suffix(base)
    if len(base) > MAX_NAME_CHARS:
        stem = stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") or "upload"
    return stem + suffix


def _split_suffix(name: str) -> tuple[str, str]:
    suffix = PurePosixPath(name).suffix
    if not suffix or len(suffix) > 12:
        return name, ""
    return name[: -len(suffix)], suffix


def _numbered(name: str, n: int) -> str:
    """'report.pdf', 2 → 'report-2.pdf'."""
    stem, suffix = _split_suffix(name)
    return f"{stem}-{n}{suffix}"


# --- types ------------------------------------------------------------------------------------------


def _check_type(name: str, data: bytes) -> Kind:
    """The kind of an upload whose suffix agrees with its content, else UploadRejected."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadRejected(name, f"unsupported file type ({suffix or 'no suffix'})",
                             f"upload {SUPPORTED_NAMES} files")
    kind, why = content_kind(data, name)
    if kind is None:
        raise UploadRejected(name, why, f"upload a {SUPPORTED_NAMES} file")
    if suffix not in FORMATS[kind].suffixes:
        wanted = FORMATS[kind].suffixes[0]
        raise UploadRejected(name, f"the name ends in {suffix} but the content is {kind.upper()}",
                             f"rename it to end in {wanted}")
    return kind


# --- saving -----------------------------------------------------------------------------------------


def inside(root: Path, path: Path) -> bool:
    """Whether `path` lies strictly inside folder `root`. A lexical test: callers pass paths already
    resolved, so no '..' or symlink is left to lead out."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return path != root


def _same_content(path: Path, digest: str) -> bool:
    try:
        if not path.is_file() or path.is_symlink():
            return False
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == digest
    except OSError:
        return False


def save_upload(docs_dir: str | Path, name: str, data: bytes, *, max_bytes: int,
                existing_hashes: Mapping[str, str] | None = None) -> SavedUpload:
    """Store one uploaded file in `docs_dir`, or raise UploadRejected with the reason.

    `existing_hashes` maps SHA-256 hex digests of documents already in the collection to their
    source names (the index's FileRecord.hash); content found there is rejected as a duplicate.
    """
    shown = sanitize_filename(name)
    if len(data) > max_bytes:
        raise UploadRejected(shown, too_large_reason(len(data), max_bytes),
                             "raise RAG_MAX_FILE_MB (max_file_mb) or split the file")
    kind = _check_type(shown, data)
    digest = hashlib.sha256(data).hexdigest()
    if existing_hashes and digest in existing_hashes:
        raise UploadRejected(shown, f"duplicate: the same content is already in the collection as "
                                    f"{existing_hashes[digest]}", "nothing to do")
    root = Path(docs_dir)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    tmp = root / f".upload-{secrets.token_hex(8)}.part"  # hidden: the ingest skips it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        for n in range(1000):
            candidate = shown if n == 0 else _numbered(shown, n)
            target = root / candidate
            if not inside(root, target.parent.resolve() / target.name):
                raise UploadRejected(shown, "the name points outside the documents folder", "rename the file")
            if _same_content(target, digest):
                raise UploadRejected(shown, f"duplicate: the same content is already saved as {candidate}",
                                     "nothing to do")
            try:
                os.link(tmp, target, follow_symlinks=False)  # fails if the name exists: never overwrites
            except FileExistsError:
                continue
            return SavedUpload(candidate, target, kind, digest, len(data), shown if n else "")
        raise UploadRejected(shown, "too many files with this name in the documents folder", "rename the file")
    finally:
        tmp.unlink(missing_ok=True)
