"""The error hierarchy. Every message names what went wrong, where, and how to fix it.

Callers catch `RagError` at the edges (CLIs, the UI) and print `str(err)`; nothing in the
library prints and returns None.
"""
from __future__ import annotations


class RagError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(RagError):
    """A setting is malformed or inconsistent."""


class IngestError(RagError):
    """A whole ingest could not run (nothing readable, a lock held, a write failed)."""


class LoadError(RagError):
    """One file could not be read as a document. The ingest reports it and goes on."""

    def __init__(self, path: str, reason: str, fix: str = "") -> None:
        self.path, self.reason, self.fix = path, reason, fix
        super().__init__(f"{path}: {reason}" + (f" (fix: {fix})" if fix else ""))


class IndexLockedError(IngestError):
    """Another live process is writing this index."""


class IndexStateError(RagError):
    """The index on disk is missing, damaged, or was built differently from what is asked."""


class IndexMissingError(IndexStateError):
    """No index has been built at this location yet."""


class ModelMismatchError(IndexStateError):
    """The index was built with another embedding model than the configured one."""


class ModelNotFoundError(RagError):
    """A model (embedder, reranker, GGUF) cannot be found or loaded offline."""


class MissingDependencyError(RagError):
    """An optional library is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"the optional dependency {module!r} is not installed "
                         f"(fix: pip install -e '.[{extra}]')")
