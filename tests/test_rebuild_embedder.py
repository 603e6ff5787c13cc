"""Changing the embedder (issue 13, item 6): the old index answers until `--rebuild` commits the new one.

`rag.ingest --rebuild` writes the new generation beside the live one (rag.index.store) and only then
switches CURRENT, so searches during the rebuild still read the old model's vectors, and a reader
opened before the switch keeps working after it.
"""
from __future__ import annotations

import pytest

from rag.answer.retrieve import Retriever
from rag.errors import ModelMismatchError
from rag.index.store import Index
from rag.ingest.build import ingest
from rag.models.embed import HashEmbedder

DOCS = {"rivers.md": "The Yangtze is the longest river in China and flows into the East China Sea.",
        "pandas.md": "Giant pandas live in the bamboo forests of Sichuan and eat bamboo."}


class SpyEmbedder(HashEmbedder):
    """A hash embedder that, on its first batch, runs `during()`: the moment a rebuild is under way."""

    def __init__(self, name: str, during) -> None:
        super().__init__(dim=32, name=name)
        self.during, self.seen = during, None

    def embed_batch(self, texts):
        if self.seen is None:
            self.seen = self.during()
        return super().embed_batch(texts)


def test_old_index_serves_searches_until_the_rebuild_with_a_new_embedder_commits(tmp_path, make_cfg):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    old_cfg = make_cfg(embed_model="model-a")
    old = HashEmbedder(dim=64, name="model-a")
    first = ingest(folder, old_cfg, embedder=old)
    reader = Index.open(old_cfg.index_dir, embed_model="model-a")  # e.g. the UI, open before the change

    def search_old_index():
        idx = Index.open(old_cfg.index_dir, embed_model="model-a")
        hits = Retriever(idx, old).search("longest river in China", k=1)
        return idx.embed_model, hits[0].chunk.source

    new_cfg = make_cfg(embed_model="model-b")
    with pytest.raises(ModelMismatchError, match="rebuild"):  # without --rebuild the change is refused
        ingest(folder, new_cfg, embedder=HashEmbedder(dim=32, name="model-b"))
    new = SpyEmbedder("model-b", search_old_index)
    second = ingest(folder, new_cfg, embedder=new, rebuild=True)

    assert new.seen == ("model-a", "rivers.md")  # mid-rebuild: the old generation still answered
    assert second.generation != first.generation
    assert Index.open(new_cfg.index_dir, embed_model="model-b").embed_model == "model-b"
    assert Retriever(reader, old).search("pandas bamboo", k=1)[0].chunk.source == "pandas.md"  # still readable
    with pytest.raises(ModelMismatchError):
        Index.open(old_cfg.index_dir, embed_model="model-a")  # after the switch the old model is refused
