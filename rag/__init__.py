"""Local retrieval-augmented question answering with verified citations.

Pipeline stages, one module each: load → chunk → embed → index → retrieve → rerank → prompt →
generate → cite → verify, tied together by `rag.pipeline.Pipeline`. `import rag` stays light:
heavy libraries (torch, faiss, llama_cpp) load inside the backend that needs them.
"""
from __future__ import annotations

__version__ = "0.1.0"
