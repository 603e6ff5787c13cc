"""`python -m rag.models list | pull NAME`: the recommended local models and how to install them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from rag.models.registry import DEFAULT_DIR, PullError, format_table, pull


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.models", description="Recommended local LLMs (GGUF).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the recommended models and which are downloaded")
    p_list.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_pull = sub.add_parser("pull", help="download a model into --dir (needs the internet)")
    p_pull.add_argument("name", help="a name from `list`, or owner/repo/file.gguf")
    p_pull.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.command == "list":
        print(format_table(args.dir))
        return 0
    try:
        path = pull(args.name, args.dir)
    except PullError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}  (use it with: llm_model = \"{path}\", or leave llm_model empty to pick it up from {args.dir}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
