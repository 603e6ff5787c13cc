"""Thin command lines: they parse arguments and call the library (`python -m rag.ask`, `rag.search`, `rag.ingest`)."""
from __future__ import annotations
