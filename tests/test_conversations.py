"""The conversation store (rag.conversations): round trips, concurrent writers, the schema version."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from rag.conversations import SCHEMA_VERSION, ConversationError, ConversationStore, title_for
from rag.records import Answer, Chunk, Citation, Hit, SentenceCheck


def answer(n: int = 0) -> Answer:
    chunk = Chunk(f"c{n}", "report.pdf", "A 7B model in Q4_K_M needs 4.8 GB.", 10, 44, (3, 4),
                  heading_path=("Memory",), page_labels=("iii", "iv"), ocr_pages=(4,))
    return Answer(question=f"q{n}", query=f"q{n}", mode="extractive", text=f"It needs 4.8 GB [1]. #{n}",
                  raw_text="raw", citations=(Citation(1, f"c{n}", "report.pdf", (3, 4), "4.8 GB", 28, True,
                                                      ("iii", "iv")),),
                  sentences=(SentenceCheck("It needs 4.8 GB.", (1,), 0.9, True, "", 0, 20),),
                  sources=(Hit(chunk, 0.8, bm25_score=3.2, bm25_rank=1, dense_score=0.5, dense_rank=2,
                               fused_score=0.8, paginated=True),),
                  notices=("reranker unavailable",), timings={"retrieve": 0.01}, fallback="", realigned=1,
                  unmentioned=("Q5_K_S",) if n == 2 else ())


def test_a_turn_comes_back_exactly_from_a_new_store_object(tmp_path):
    path = tmp_path / "data" / "chats.sqlite"
    store = ConversationStore(path)
    cid = store.create("default", "How much memory does a 7B model need?")
    store.add_turn(cid, "How much memory does a 7B model need?", answer(1))
    store.add_turn(cid, "And in Q8_0?", answer(2))
    again = ConversationStore(path)  # a reload or a server restart: only the file is shared
    turns = again.turns(cid)
    assert [t.question for t in turns] == ["How much memory does a 7B model need?", "And in Q8_0?"]
    assert turns[0].answer == answer(1) and turns[1].answer == answer(2)  # citations, checks, chunks, scores
    [conv] = again.conversations("default")
    assert conv.title == "How much memory does a 7B model need?" and conv.messages == 4
    assert again.conversations("other") == []


def test_rename_delete_and_delete_collection(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite")
    a, b = store.create("default", "first"), store.create("notes-1a2b3c", "second")
    store.add_turn(a, "q", answer())
    store.rename(a, "  Memory   questions ")
    assert store.get(a).title == "Memory questions"
    with pytest.raises(ConversationError, match="needs a title"):
        store.rename(a, "   ")
    store.delete(a)
    assert store.conversations("default") == [] and store.count_messages() == 0  # messages cascade
    with pytest.raises(ConversationError, match="no conversation"):
        store.add_turn(a, "q", answer())
    assert store.delete_collection("notes-1a2b3c") == 1 and store.conversations("notes-1a2b3c") == []
    assert b not in [c.id for c in store.conversations("default")]


def test_concurrent_writers_lose_nothing(tmp_path):
    """Eight threads, each with its own store object (as sessions and processes are), write at once."""
    path = tmp_path / "c.sqlite"
    ConversationStore(path)
    writers, turns = 8, 15
    errors: list[BaseException] = []
    ids: list[str] = []
    shared = ConversationStore(path).create("default", "shared")
    start = threading.Barrier(writers)

    def write(i: int) -> None:
        store = ConversationStore(path)
        try:
            start.wait()
            own = store.create("default", f"writer {i}")
            ids.append(own)
            for n in range(turns):
                store.add_turn(own, f"w{i} q{n}", answer(n))
                store.add_turn(shared, f"w{i} shared {n}", answer(n))
        except BaseException as err:  # every failure is the test's result
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = ConversationStore(path)
    for i, own in enumerate(sorted(ids, key=lambda c: store.get(c).title)):
        assert [t.question for t in store.turns(own)] == [f"w{i} q{n}" for n in range(turns)]
    shared_turns = store.turns(shared)
    assert len(shared_turns) == writers * turns  # no seq taken twice, no turn overwritten
    assert all(t.answer.text.startswith("It needs") for t in shared_turns)
    assert store.count_messages() == 2 * 2 * writers * turns
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_version_is_recorded_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    assert ConversationStore(path).schema_version() == SCHEMA_VERSION
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConversationError, match="newer than this program"):
        ConversationStore(path)


def test_a_file_that_is_not_a_database_is_named_with_the_fix(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConversationError, match=r"c\.sqlite.*move the file aside"):
        ConversationStore(path)


def test_title_is_one_line_and_short():
    assert title_for("a\nb") == "a b" and title_for("   ") == "New chat"
    long = title_for("word " * 100)
    assert len(long) <= 80 and long.endswith("…")


def test_an_unwritable_store_folder_is_named_with_the_fix(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConversationError, match="RAG_DATA_DIR"):
        ConversationStore(tmp_path / "file" / "data" / "c.sqlite")
