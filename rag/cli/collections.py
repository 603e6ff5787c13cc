"""`python -m rag.collections list|create|rename|delete`: the collections the chat page switches between.

    python -m rag.collections create Contracts [--docs FOLDER]
    python -m rag.collections rename Contracts Legal
    python -m rag.collections delete Legal --yes      # its index and uploads; never a --docs FOLDER
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from rag import collections as colls
    from rag.config import load_config
    from rag.conversations import ConversationStore, store_path
    from rag.errors import RagError

    ap = argparse.ArgumentParser(prog="python -m rag.collections", description=__doc__.split("\n")[0])
    ap.add_argument("--config")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every collection, with its folders")
    create = sub.add_parser("create", help="a new, empty collection")
    create.add_argument("name")
    create.add_argument("--docs", help="keep its documents in this folder (default: its own folder)")
    rename = sub.add_parser("rename")
    rename.add_argument("name")
    rename.add_argument("new_name")
    delete = sub.add_parser("delete", help="remove its index and the documents uploaded into it")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.command == "list":
            for c in colls.list_collections(cfg):
                print(f"{c.name}\tindex: {c.index_dir}\tdocuments: {c.docs_dir or '(from the index)'}")
        elif args.command == "create":
            c = colls.create_collection(cfg, args.name, docs_dir=args.docs)
            print(f"created {c.name!r}: documents in {c.docs_dir} "
                  f"(index it: python -m rag.ingest --collection {c.name!r})")
        elif args.command == "rename":
            c = colls.rename_collection(cfg, args.name, args.new_name)
            print(f"renamed to {c.name!r}")
        else:
            c = colls.get_collection(cfg, args.name)
            if not args.yes:
                answer = input(f"Delete collection {c.name!r} (its index, and the documents uploaded into "
                               f"{c.folder})? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("not deleted")
                    return 1
            colls.delete_collection(cfg, args.name)
            chats = store_path(cfg)
            n = ConversationStore(chats).delete_collection(c.id) if chats.exists() else 0
            print(f"deleted {c.name!r} and its {n} conversation(s)")
    except RagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
