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
    """A library is not installed; the message names the extra to install.

    `extra` is a key of pyproject's [project.optional-dependencies]; None for a core dependency,
    which a plain install brings (tests/test_config.py checks every name used here exists).

    >>> str(MissingDependencyError("llama_cpp", "llm"))
    "the optional dependency 'llama_cpp' is not installed (fix: pip install -e '.[llm]')"
    >>> str(MissingDependencyError("onnxruntime"))
    "the dependency 'onnxruntime' is not installed (fix: pip install -e .)"
    """

    def __init__(self, module: str, extra: str | None = None) -> None:
        self.module, self.extra = module, extra
        if extra is None:
            super().__init__(f"the dependency {module!r} is not installed (fix: pip install -e .)")
        else:
            super().__init__(f"the optional dependency {module!r} is not installed "
                             f"(fix: pip install -e '.[{extra}]')")
