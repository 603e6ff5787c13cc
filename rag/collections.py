"""Several collections, each with its own documents folder and index: a registry of folders.

    cfg = config_for(load_config(), "contracts")      # index_dir and docs_dir of that collection
    create_collection(cfg, "contracts"); rename_collection(cfg, "contracts", "Legal")
    [c.name for c in list_collections(cfg)]           # ['default', 'Legal']

The collection that existed before (cfg.index_dir, cfg.docs_dir) is the built-in one named
"default", exactly where it was: nothing moves, nothing to migrate. Every other collection is a
folder of the app's data folder (cfg.data_dir):

    rag-data/collections/<id>/collection.json   {"schema_version", "id", "name", "created", "docs_dir"}
                             /documents/        uploads land here (unless docs_dir names another folder)
                             /index/            the index, exactly as rag.index.store writes it

The id (a slug of the first name plus a random suffix) names the folder and never changes, so a
rename is one JSON write and conversations keep pointing at their collection. Deleting removes that
folder — the index and the uploads saved into it — and never a documents folder outside it (one
given with `python -m rag.ingest FOLDER --collection NAME` stays where the user keeps it).

Deliberately skipped: renaming or deleting "default" (its folders are the user's own configuration),
and moving documents between collections (upload them again).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Config
from rag.errors import RagError

DEFAULT = "default"
SCHEMA_VERSION = 1
MAX_NAME = 60
META = "collection.json"


class CollectionError(RagError):
    """An unknown, duplicate or badly named collection, or one that cannot be changed."""


@dataclass(frozen=True)
class Collection:
    id: str  # the folder name; "default" for the built-in collection
    name: str  # what the user sees and types after --collection
    index_dir: Path
    docs_dir: Path | None  # None: the default collection's folder comes from its manifest
    created: float = 0.0
    builtin: bool = False  # the default collection: cannot be renamed or deleted

    @property
    def folder(self) -> Path | None:
        """The collection's own folder under the data folder (None for the default collection)."""
        return None if self.builtin else self.index_dir.parent


def collections_root(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "collections"


def slug(name: str) -> str:
    """A folder-safe lower-case form of a name.

    >>> slug("Legal / Contracts 2024"), slug("合同"), slug("..")
    ('legal-contracts-2024', 'collection', 'collection')
    """
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:30]
    return s or "collection"


def check_name(name: str) -> str:
    """The name stripped, or CollectionError saying what is wrong with it.

    >>> check_name("  Legal ")
    'Legal'
    """
    clean = " ".join(name.split())
    if not clean:
        raise CollectionError("a collection needs a name (fix: type one, e.g. 'Contracts')")
    if len(clean) > MAX_NAME:
        raise CollectionError(f"collection name {clean[:20]!r}… is {len(clean)} characters long "
                              f"(fix: at most {MAX_NAME})")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise CollectionError(f"collection name {clean!r} contains control characters (fix: letters, digits, "
                              "spaces and punctuation only)")
    return clean


def _default(cfg: Config) -> Collection:
    return Collection(DEFAULT, DEFAULT, Path(cfg.index_dir), cfg.docs_dir, builtin=True)


def _read(folder: Path) -> Collection | None:
    try:
        meta: dict[str, Any] = json.loads((folder / META).read_text(encoding="utf-8"))
        docs = meta.get("docs_dir")
        return Collection(str(meta["id"]), str(meta["name"]), folder / "index",
                          Path(docs) if docs else folder / "documents", float(meta.get("created", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a half-created or foreign folder is not a collection


def _write(folder: Path, coll: Collection) -> None:
    """collection.json, replaced atomically (a reader sees the old name or the new one)."""
    meta = {"schema_version": SCHEMA_VERSION, "id": coll.id, "name": coll.name, "created": coll.created}
    if coll.docs_dir is not None and coll.docs_dir != folder / "documents":
        meta["docs_dir"] = str(coll.docs_dir)
    tmp = folder / f".{META}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / META)


def list_collections(cfg: Config) -> list[Collection]:
    """"default" first, then the others by name (case-insensitive)."""
    root = collections_root(cfg)
    found = [c for c in (_read(p) for p in sorted(root.iterdir()) if p.is_dir()) if c] if root.is_dir() else []
    return [_default(cfg), *sorted(found, key=lambda c: (c.name.casefold(), c.id))]


def get_collection(cfg: Config, name: str) -> Collection:
    """The collection called `name` (or with that id); CollectionError listing the existing ones."""
    every = list_collections(cfg)
    for c in every:
        if c.name == name or c.id == name:
            return c
    folded = [c for c in every if c.name.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    names = ", ".join(repr(c.name) for c in every)
    raise CollectionError(f"there is no collection {name!r} (existing: {names}; fix: pick one of them, or "
                          f"create it: python -m rag.collections create {name!r})")


def create_collection(cfg: Config, name: str, *, docs_dir: str | Path | None = None) -> Collection:
    """A new, empty collection. `docs_dir`: keep its documents in that folder instead of its own."""
    clean = check_name(name)
    if any(c.name.casefold() == clean.casefold() for c in list_collections(cfg)):
        raise CollectionError(f"a collection named {clean!r} already exists (fix: choose another name)")
    root = collections_root(cfg)
    cid = f"{slug(clean)}-{secrets.token_hex(3)}"
    tmp = root / f".tmp-{cid}"
    final = root / cid
    docs = Path(docs_dir).expanduser().resolve() if docs_dir else final / "documents"
    coll = Collection(cid, clean, final / "index", docs, time.time())
    try:
        (tmp / "documents").mkdir(parents=True)
        _write(tmp, coll)
        os.rename(tmp, final)  # appears whole, or not at all
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CollectionError(f"cannot create collection {clean!r} in {root}: {err.strerror or err} (fix: make "
                              "the folder writable, or set RAG_DATA_DIR to one that is)") from err
    return coll


def rename_collection(cfg: Config, name: str, new_name: str) -> Collection:
    coll = get_collection(cfg, name)
    if coll.builtin:
        raise CollectionError("the default collection cannot be renamed (its folders are set by RAG_INDEX_DIR "
                              "and RAG_DOCS_DIR; fix: create a new collection with the name you want)")
    clean = check_name(new_name)
    if any(c.name.casefold() == clean.casefold() and c.id != coll.id for c in list_collections(cfg)):
        raise CollectionError(f"a collection named {clean!r} already exists (fix: choose another name)")
    renamed = Collection(coll.id, clean, coll.index_dir, coll.docs_dir, coll.created)
    assert coll.folder is not None
    _write(coll.folder, renamed)
    return renamed


def delete_collection(cfg: Config, name: str) -> Collection:
    """Remove a collection's folder: its index and the documents uploaded into it.

    A documents folder outside the collection's folder (given with `rag.ingest FOLDER --collection`)
    is left untouched, and so is every file a symlink in the folder points to.
    """
    coll = get_collection(cfg, name)
    if coll.builtin or coll.folder is None:
        raise CollectionError("the default collection cannot be deleted (fix: delete its documents in the "
                              "Documents tab, or its index folder yourself)")
    root = collections_root(cfg).resolve()
    folder = coll.folder.resolve()
    if folder.parent != root:
        raise CollectionError(f"collection folder {folder} is not inside {root}; not deleting it")
    aside = root / f".deleting-{coll.id}"
    os.rename(folder, aside)  # gone from the list at once, even if removing the files takes a while
    shutil.rmtree(aside)  # does not follow symlinks
    return coll


def set_documents_folder(cfg: Config, name: str, folder: str | Path) -> Config:
    """Make `folder` (anywhere) the documents folder of collection `name`; returns its config.
    The folder stays the user's: deleting the collection never touches it."""
    coll = get_collection(cfg, name)
    if coll.builtin or coll.folder is None:
        return cfg.with_overrides(docs_dir=str(folder))
    moved = Collection(coll.id, coll.name, coll.index_dir, Path(folder).expanduser().resolve(), coll.created)
    _write(coll.folder, moved)
    return collection_config(cfg, moved)


def collection_config(cfg: Config, coll: Collection) -> Config:
    """The configuration that points at `coll`'s index and documents folder."""
    if coll.builtin:
        return cfg
    return cfg.with_overrides(index_dir=str(coll.index_dir), docs_dir=str(coll.docs_dir))


def config_for(cfg: Config, name: str | None, *, index_given: bool = False) -> Config:
    """`--collection NAME` applied to a CLI's config (None: the config as it is)."""
    if name is None:
        return cfg
    if index_given:
        raise CollectionError("--collection and --index both say which index to use (fix: give only one)")
    return collection_config(cfg, get_collection(cfg, name))


if __name__ == "__main__":
    from rag.cli.collections import main

    raise SystemExit(main())
