"""Recommended local LLMs and the one command that downloads them.

    python -m rag.models list [--dir models]
    python -m rag.models pull qwen2.5-1.5b [--dir models]

`pull` is the only code in the product that touches the network; everything else runs offline.
The table is short on purpose: one small model that runs on any laptop CPU, and a few better ones
for machines with 8+ GB of free memory or a GPU. Any other instruct GGUF works too: set llm_model
to its path.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.errors import RagError

DEFAULT_DIR = Path("models")


@dataclass(frozen=True)
class RecommendedModel:
    name: str  # what `pull` takes
    repo: str  # Hugging Face repo id
    file: str  # the GGUF file in that repo
    size_gb: float  # approximate download (and RAM) size
    tier: str  # small | better
    languages: str
    note: str = ""

    @property
    def spec(self) -> str:
        return f"{self.repo}/{self.file}"


RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf",
                     1.1, "small", "29 incl. Chinese + English", "runs on any laptop CPU"),
    RecommendedModel("llama3.2-3b", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
                     2.0, "small", "English (+de fr it pt hi es th)", "good English answers on CPU"),
    RecommendedModel("qwen2.5-7b", "bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
                     4.7, "better", "29 incl. Chinese + English", "8 GB RAM, or a GPU"),
    RecommendedModel("mistral-7b", "bartowski/Mistral-7B-Instruct-v0.3-GGUF", "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf",
                     4.4, "better", "English, European languages", "8 GB RAM, or a GPU"),
)


def find_recommended(name: str) -> RecommendedModel | None:
    """The table entry called `name` (case-insensitive), or whose file is `name`."""
    low = name.strip().lower()
    return next((m for m in RECOMMENDED if low in (m.name, m.file.lower())), None)


_HF_SPEC = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:/|:)(?P<file>[^/:]+\.gguf)$", re.IGNORECASE)


def parse_hf_spec(spec: str) -> tuple[str, str] | None:
    """(repo id, file name) from 'owner/repo/file.gguf' or 'owner/repo:file.gguf', else None.

    >>> parse_hf_spec("Qwen/Qwen2.5-1.5B-Instruct-GGUF:qwen2.5-1.5b-instruct-q4_k_m.gguf")
    ('Qwen/Qwen2.5-1.5B-Instruct-GGUF', 'qwen2.5-1.5b-instruct-q4_k_m.gguf')
    >>> parse_hf_spec("models/x.gguf") is None
    True
    """
    m = _HF_SPEC.match(spec.strip())
    return (m["repo"], m["file"]) if m else None


def format_table(directory: Path = DEFAULT_DIR) -> str:
    rows = [("name", "tier", "size", "languages", "present", "repo / file")]
    for m in RECOMMENDED:
        present = "yes" if (directory / m.file).is_file() else ""
        rows.append((m.name, m.tier, f"{m.size_gb:.1f} GB", m.languages, present, m.spec))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    others = sorted(p.name for p in directory.glob("*.gguf")
                    if p.is_file() and not find_recommended(p.name)) if directory.is_dir() else []
    if others:
        lines.append(f"also in {directory}: " + ", ".join(others))
    return "\n".join(lines)


class PullError(RagError):
    """A download that could not happen; the message is one line for the terminal."""


def pull(name: str, directory: Path = DEFAULT_DIR) -> Path:
    """Download a recommended model (or 'owner/repo/file.gguf') into `directory`; returns its path."""
    rec = find_recommended(name)
    if rec is not None:
        repo, file = rec.repo, rec.file
    elif parse_hf_spec(name):
        repo, file = parse_hf_spec(name)
    else:
        known = ", ".join(r.name for r in RECOMMENDED)
        raise PullError(f"unknown model {name!r} (fix: one of {known}, or 'owner/repo/file.gguf')")
    target = directory / file
    if target.is_file():
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise PullError(f"cannot download {file}: offline mode is on (HF_HUB_OFFLINE=1) (fix: unset HF_HUB_OFFLINE, "
                        f"or download it on a connected machine and copy it into {directory}/)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise PullError("huggingface_hub is not installed (fix: pip install huggingface_hub)") from err
    _check_reachable(repo, file, directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return Path(hf_hub_download(repo, file, local_dir=directory))
    except Exception as err:  # noqa: BLE001 - the hub raises many kinds; the user needs one line
        raise PullError(_explain(err, repo, file, directory)) from err


def _check_reachable(repo: str, file: str, directory: Path, timeout: float = 5.0) -> None:
    """Fail in seconds when the hub's host cannot be reached: the hub itself retries for ~30 s.

    Skipped behind a proxy, where only the proxy knows whether the hub is reachable.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise PullError(f"cannot download {repo}/{file}: {url.hostname} is not reachable ({err.strerror or err}) "
                        f"(fix: connect to the internet, or download the file on a connected machine and copy it "
                        f"into {directory}/)") from err


def _explain(err: Exception, repo: str, file: str, directory: Path) -> str:
    kind = type(err).__name__
    offline_kinds = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                     "ConnectTimeout", "Timeout", "ReadTimeout", "NameResolutionError")
    first = str(err).strip().splitlines()[0] if str(err).strip() else kind
    if kind in offline_kinds or "connect" in first.lower():
        return (f"cannot download {repo}/{file}: huggingface.co is not reachable ({kind}) (fix: connect to the "
                f"internet, or download the file on a connected machine and copy it into {directory}/)")
    if kind in ("RepositoryNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError", "GatedRepoError"):
        return f"cannot download {repo}/{file}: {kind} ({first}) (fix: check the name with `python -m rag.models list`)"
    return f"cannot download {repo}/{file}: {kind}: {first}"
