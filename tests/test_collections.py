"""Collections (rag.collections), the file filter inside retrieval, the question rule (rag.question)
and the CLIs' --collection: fast, with the deterministic fake embedder."""
from __future__ import annotations

import pytest

from rag import collections as colls
from rag.cli.ask import main as ask_main
from rag.cli.collections import main as collections_main
from rag.cli.ingest import main as ingest_main
from rag.cli.search import main as search_main
from rag.errors import ConfigError
from rag.pipeline import Pipeline
from rag.question import EMPTY_MESSAGE, EmptyQuestionError, check_question
from tests.conftest import write_docs

DOCS = {
    "zebras.md": "# Zebras\n\nThe plains zebra sleeps standing up for about seven hours a day.\n",
    "otters.md": "# Otters\n\nSea otters sleep floating on their backs, holding paws so they do not drift apart.\n",
    "owls.md": "# Owls\n\nBarn owls sleep in hollow trees during the day and hunt mice at night.\n",
}


@pytest.fixture
def cfg(make_cfg, tmp_path):
    return make_cfg(data_dir=str(tmp_path / "data"), docs_dir=str(tmp_path / "docs"))


# --- the registry ------------------------------------------------------------------------------------


def test_default_collection_is_the_configured_index_and_always_first(cfg):
    [only] = colls.list_collections(cfg)
    assert only.name == "default" and only.builtin and only.index_dir == cfg.index_dir
    assert colls.collection_config(cfg, only) == cfg  # nothing moves: the old single collection as it was


def test_create_rename_delete_round_trip(cfg, tmp_path):
    made = colls.create_collection(cfg, "  Legal   Contracts ")
    assert made.name == "Legal Contracts" and made.docs_dir.is_dir()
    assert made.folder.parent == tmp_path / "data" / "collections"
    assert [c.name for c in colls.list_collections(cfg)] == ["default", "Legal Contracts"]
    renamed = colls.rename_collection(cfg, "legal contracts", "Legal")  # names match case-insensitively
    assert renamed.id == made.id and colls.get_collection(cfg, "Legal").index_dir == made.index_dir
    sub = colls.collection_config(cfg, renamed)
    assert sub.index_dir == made.index_dir and sub.docs_dir == made.docs_dir
    colls.delete_collection(cfg, "Legal")
    assert not made.folder.exists() and [c.name for c in colls.list_collections(cfg)] == ["default"]


@pytest.mark.parametrize("name, why", [("", "needs a name"), ("x" * 61, "at most 60"), ("a\x00b", "control")])
def test_bad_names_are_refused_with_the_reason(cfg, name, why):
    with pytest.raises(colls.CollectionError, match=why):
        colls.create_collection(cfg, name)


def test_duplicates_and_the_default_collection_are_protected(cfg):
    colls.create_collection(cfg, "Notes")
    with pytest.raises(colls.CollectionError, match="already exists"):
        colls.create_collection(cfg, "NOTES")
    with pytest.raises(colls.CollectionError, match="cannot be renamed"):
        colls.rename_collection(cfg, "default", "Other")
    with pytest.raises(colls.CollectionError, match="cannot be deleted"):
        colls.delete_collection(cfg, "default")


def test_unknown_collection_error_lists_the_existing_ones(cfg):
    colls.create_collection(cfg, "Notes")
    with pytest.raises(colls.CollectionError) as err:
        colls.get_collection(cfg, "Nope")
    assert "'Nope'" in str(err.value) and "'default', 'Notes'" in str(err.value)


def test_delete_never_touches_a_documents_folder_outside_the_app(cfg, tmp_path):
    mine = write_docs(tmp_path / "my-own-docs", DOCS)
    made = colls.create_collection(cfg, "Mine", docs_dir=mine)
    (made.folder / "documents" / "link.md").symlink_to(mine / "zebras.md")  # a link out: the file stays
    colls.delete_collection(cfg, "Mine")
    assert sorted(p.name for p in mine.iterdir()) == sorted(DOCS) and not made.folder.exists()


# --- the file filter ---------------------------------------------------------------------------------


@pytest.fixture
def pipe(cfg, tmp_path, fake_embedder):
    docs = write_docs(tmp_path / "docs", DOCS)
    p = Pipeline(cfg, embedder=fake_embedder, generator=None, reranker=None)
    p.ingest(docs)
    return p


def test_file_filter_restricts_both_retrievers_before_fusion(pipe):
    everything = pipe.search("sleep", k=3)
    assert {h.chunk.source for h in everything} == set(DOCS)
    only = pipe.search("zebra sleeps standing", k=3, files=["owls.md", "otters.md"])
    assert only and {h.chunk.source for h in only} <= {"owls.md", "otters.md"}
    assert len(only) == 2  # top-k is filled from the allowed files, not wasted on zebras.md
    for mode in ("bm25", "dense"):
        assert {h.chunk.source for h in pipe.search("zebra", k=3, mode=mode, files=["owls.md"])} == {"owls.md"}


def test_file_filter_in_the_answer_and_unknown_files(pipe):
    answer = pipe.ask("How do otters sleep?", files=["otters.md"])
    assert {h.chunk.source for h in answer.sources} == {"otters.md"}
    with pytest.raises(ConfigError, match="'nope.md' not in this collection"):
        pipe.search("otters", files=["nope.md"])


# --- questions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "?", "?!…", " — ... ¿¡ "])
def test_empty_and_punctuation_only_questions_are_refused(text, pipe):
    with pytest.raises(EmptyQuestionError, match=EMPTY_MESSAGE):
        check_question(text)
    with pytest.raises(EmptyQuestionError):
        pipe.ask(text)


def test_long_question_is_cut_for_retrieval_and_says_so(pipe):
    question = "How do otters sleep? " + "filler words " * 500
    answer = pipe.ask(question)
    assert answer.question == question.strip()  # the whole question is kept for display
    assert any("only its first" in n and "characters" in n for n in answer.notices)
    assert len(answer.query) <= pipe.cfg.max_question_chars
    assert check_question("为什么" * 600, max_chars=1000).text == ("为什么" * 600)[:1000]  # no spaces: a hard cut


# --- the CLIs ----------------------------------------------------------------------------------------


def test_ask_an_empty_question_exits_2_before_loading_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no index here: the question is checked first
    assert ask_main([""]) == 2
    assert "Please ask a question" in capsys.readouterr().err
    assert ask_main(["?!"]) == 2 and search_main(["..."]) == 2


def test_collection_flag_in_every_cli(cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setenv("RAG_RERANK", "false")
    assert collections_main(["create", "Animals"]) == 0
    assert ask_main(["How do otters sleep?", "--collection", "Zoo"]) == 2
    err = capsys.readouterr().err
    assert "no collection 'Zoo'" in err and "'default', 'Animals'" in err
    assert search_main(["otters", "--collection", "Zoo"]) == 2 and ingest_main(["--collection", "Zoo"]) == 2
    assert ask_main(["otters", "--collection", "Animals", "--index", "x"]) == 2
    assert "give only one" in capsys.readouterr().err
    assert collections_main(["delete", "Zoo", "--yes"]) == 2


def test_ingest_and_search_a_named_collection(cfg, tmp_path, monkeypatch, capsys):
    """A folder given to rag.ingest --collection becomes that collection's documents folder."""
    from rag.models.embed import HashEmbedder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_RERANK", "false")
    docs = write_docs(tmp_path / "animals", DOCS)
    colls.create_collection(cfg, "Animals")
    monkeypatch.setattr("rag.models.factory.load_embedder", lambda _cfg: HashEmbedder())
    monkeypatch.setenv("RAG_EMBED_MODEL", "hash-embedder")
    assert ingest_main([str(docs), "--collection", "Animals", "--quiet"]) == 0
    animals = colls.get_collection(cfg, "Animals")
    assert animals.docs_dir == docs.resolve() and (animals.index_dir / "CURRENT").exists()
    capsys.readouterr()
    assert search_main(["otters", "--collection", "Animals", "--file", "owls.md", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "owls.md" in out and "otters.md" not in out and "zebras.md" not in out
    assert ask_main(["How do otters sleep?", "--collection", "Animals", "--extractive"]) == 0
    assert "otters.md" in capsys.readouterr().out
    assert collections_main(["delete", "Animals", "--yes"]) == 0
    assert sorted(p.name for p in docs.iterdir()) == sorted(DOCS)  # the user's folder is untouched


def test_the_api_names_a_collection_by_its_id(cfg):
    pytest.importorskip("fastapi")
    from rag.serve.app import collection_name

    made = colls.create_collection(cfg, "Contracts")
    assert collection_name(Pipeline(colls.collection_config(cfg, made))) == made.id
    assert collection_name(Pipeline(cfg)) == "index"  # the default collection: its index folder's name


def test_an_unwritable_data_folder_is_named_with_the_fix(make_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = make_cfg(data_dir=str(blocker / "data"))
    with pytest.raises(colls.CollectionError, match="RAG_DATA_DIR"):
        colls.create_collection(cfg, "Notes")
