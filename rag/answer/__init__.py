"""Answering: retrieve (fusion) → rerank → abstain → prompt → generate → cite → verify."""
from __future__ import annotations
