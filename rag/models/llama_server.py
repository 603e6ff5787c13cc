"""llama-cpp-python's OpenAI-compatible server with the product's weight-repack rule.

    python -m rag.models.llama_server --model models/M.gguf --port 8080 [any llama_cpp.server option]

The same as `python -m llama_cpp.server`, except that llama.cpp's weight repacking follows
`rag.models.llama.weight_repack_default` (off where the CPU reports AMX, whose kernels segfaulted
on such a VM here), as the in-process generator does; RAG_WEIGHT_REPACK=on|off overrides it.
llama_cpp.server has no option for it, so the model-parameter defaults are wrapped for the
whole server process before it starts.
"""
from __future__ import annotations

import os
import runpy
import sys

from rag.models.llama import model_params, weight_repack_default


def main() -> None:
    choice = os.environ.get("RAG_WEIGHT_REPACK", "auto").strip().lower()
    if choice not in ("auto", "on", "off"):
        sys.exit(f"RAG_WEIGHT_REPACK={choice!r} is not one of auto, on, off")
    repack = weight_repack_default() if choice == "auto" else choice == "on"
    with model_params(weight_repack=repack):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
