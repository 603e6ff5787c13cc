"""Model backends and their resolution: embedders, the GGUF registry and pulls (`python -m rag.models`)."""
from __future__ import annotations
