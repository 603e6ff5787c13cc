"""The index: on-disk generations (SQLite chunks, FAISS vectors, bm25s) and the tokens BM25 sees."""
from __future__ import annotations
