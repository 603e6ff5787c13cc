"""llama-cpp-python's OpenAI-compatible server with the product's weight-repack rule.

    python -m rag.models.llama_server --model models/M.gguf --port 8080 [any llama_cpp.server option]

The same as `python -m llama_cpp.server`, except that llama.cpp's weight repacking follows
the `weight_repack` setting (rag.toml or RAG_WEIGHT_REPACK; "auto" is off for an AMX build on a
CPU that reports AMX, whose kernels segfaulted on such a VM here), as the in-process generator does.
llama_cpp.server has no option for it, so the model-parameter defaults are wrapped for the
whole server process before it starts.
"""
from __future__ import annotations

import runpy
import sys

from rag.config import load_config
from rag.errors import ConfigError
from rag.models.llama import model_params, weight_repack_for


def main() -> None:
    try:
        setting = load_config().weight_repack
    except ConfigError as err:
        sys.exit(f"error: {err}")
    with model_params(weight_repack=weight_repack_for(setting)):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
