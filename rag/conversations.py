"""Conversations that outlive the page: a SQLite file of conversations and their messages.

    store = ConversationStore(store_path(cfg))      # rag-data/conversations.sqlite
    cid = store.create("default", "How much memory…")
    store.add_turn(cid, question, answer)              # the question and the whole Answer, one transaction
    [t.answer.citations for t in store.turns(cid)]     # as they were, after a reload or a restart

The Markdown export is app.render.chat_to_markdown over `turns` (it escapes document text).

Tables: `schema_version(version)`, `conversations(id, collection, title, created, updated)`,
`messages(conversation, seq, role, content, answer, created)`. A user message holds the question;
the assistant message after it holds the answer text and, in `answer`, the Answer as JSON
(rag.records.answer_to_record: citations, sentence checks and the cited chunks), so a saved answer
is shown with its cards exactly as when it was asked.

Concurrency: the file is in WAL mode (readers never wait for the writer), every call opens its own
connection, and every write is one short `BEGIN IMMEDIATE` transaction that takes the write lock
up front and waits for it up to `timeout` seconds: Streamlit's sessions (threads) and several
server processes can share one file. A message's `seq` is computed inside that transaction, so two
writers never take the same one. Deleting a conversation deletes its messages (foreign key cascade).

Deliberately skipped: full-text search over old conversations, and branching (editing a question
and answering again starts a new turn, it does not fork the conversation).
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.config import Config
from rag.errors import RagError
from rag.records import Answer, answer_from_record, answer_to_record

CONVERSATIONS_FILE = "conversations.sqlite"
SCHEMA_VERSION = 1
MAX_TITLE = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, title TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_by_collection ON conversations (collection, updated);
CREATE TABLE IF NOT EXISTS messages (
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL, answer TEXT, created REAL NOT NULL,
    PRIMARY KEY (conversation, seq));
"""


def store_path(cfg: Config) -> Path:
    """Where the conversations live: the app's data folder, beside the collections."""
    return Path(cfg.data_dir) / CONVERSATIONS_FILE


class ConversationError(RagError):
    """The store cannot be opened (newer schema, not a database) or names no such conversation."""


@dataclass(frozen=True)
class Conversation:
    id: str
    collection: str  # rag.collections id ("default" for the built-in collection)
    title: str
    created: float
    updated: float
    messages: int = 0


@dataclass(frozen=True)
class Turn:
    question: str
    answer: Answer

    def as_dict(self) -> dict[str, object]:
        """The {'question', 'answer'} form app.render.chat_to_markdown and the chat page use."""
        return {"question": self.question, "answer": self.answer}


def title_for(question: str) -> str:
    """A conversation's first title: its first question on one line, cut at a word.

    >>> title_for("  How much memory\\ndoes a 7B model need?  ")
    'How much memory does a 7B model need?'
    """
    flat = " ".join(question.split())
    if len(flat) <= MAX_TITLE:
        return flat or "New chat"
    return flat[:MAX_TITLE - 1].rsplit(" ", 1)[0] + "…"


class ConversationStore:
    """One SQLite file. Cheap to create: holds no connection, only the path."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path).resolve()
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConversationError(f"cannot create the folder of the conversation store {self.path.parent}: "
                                    f"{err.strerror or err} (fix: set RAG_DATA_DIR to a writable folder)") from err
        with self._connect() as con:
            self._migrate(con)

    # --- plumbing

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as err:
            raise ConversationError(f"cannot open the conversation store {self.path}: {err}") from err
        with closing(con):
            try:
                con.execute("PRAGMA foreign_keys = ON")
                con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                # In WAL mode NORMAL still never corrupts the file; a power cut can lose the last
                # turns. It skips an fsync per write: with 8 writing threads on 2 busy cores the p95 write
                # went from 598 to 260 ms (python -m eval.concurrency --conversations).
                con.execute("PRAGMA synchronous = NORMAL")
                yield con
            except sqlite3.DatabaseError as err:
                raise ConversationError(f"conversation store {self.path}: {err} (fix: move the file aside; "
                                        "a new one is created)") from err

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short transaction holding the write lock from its start (no upgrade deadlocks)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate(self, con: sqlite3.Connection) -> None:
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # a network file system: still correct, only slower
            con.execute("PRAGMA journal_mode = DELETE")
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                con.execute(statement)
            row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise ConversationError(f"conversation store {self.path} has schema version {version}, newer than "
                                        f"this program's {SCHEMA_VERSION} (fix: update the program, or move the "
                                        "file aside)")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def schema_version(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # --- conversations

    def create(self, collection: str, title: str) -> str:
        cid = f"{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
        now = time.time()
        with self._write() as con:
            con.execute("INSERT INTO conversations (id, collection, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                        (cid, collection, title_for(title), now, now))
        return cid

    def conversations(self, collection: str) -> list[Conversation]:
        """The collection's conversations, the most recently updated first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT c.id, c.collection, c.title, c.created, c.updated, "
                "(SELECT COUNT(*) FROM messages m WHERE m.conversation = c.id) "
                "FROM conversations c WHERE c.collection = ? ORDER BY c.updated DESC, c.id DESC",
                (collection,)).fetchall()
        return [Conversation(*r) for r in rows]

    def get(self, cid: str) -> Conversation:
        with self._connect() as con:
            r = con.execute("SELECT c.id, c.collection, c.title, c.created, c.updated, "
                            "(SELECT COUNT(*) FROM messages m WHERE m.conversation = c.id) "
                            "FROM conversations c WHERE c.id = ?", (cid,)).fetchone()
        if r is None:
            raise ConversationError(f"no conversation {cid!r} in {self.path} (deleted in another window?)")
        return Conversation(*r)

    def rename(self, cid: str, title: str) -> None:
        clean = " ".join(title.split())
        if not clean:
            raise ConversationError("a conversation needs a title (fix: type one)")
        with self._write() as con:
            if con.execute("UPDATE conversations SET title = ? WHERE id = ?", (clean[:200], cid)).rowcount == 0:
                raise ConversationError(f"no conversation {cid!r} to rename (deleted in another window?)")

    def delete(self, cid: str) -> None:
        with self._write() as con:
            con.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def delete_collection(self, collection: str) -> int:
        """Delete every conversation of a collection (when the collection is deleted); returns how many."""
        with self._write() as con:
            return int(con.execute("DELETE FROM conversations WHERE collection = ?", (collection,)).rowcount)

    # --- messages

    def add_turn(self, cid: str, question: str, answer: Answer) -> int:
        """Append the question and its answer; returns the question's seq (1, 3, 5…)."""
        record = json.dumps(answer_to_record(answer), ensure_ascii=False)
        now = time.time()
        with self._write() as con:
            if con.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone() is None:
                raise ConversationError(f"no conversation {cid!r} to add to (deleted in another window?)")
            seq = int(con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation = ?",
                                  (cid,)).fetchone()[0])
            con.executemany("INSERT INTO messages (conversation, seq, role, content, answer, created) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [(cid, seq, "user", question, None, now),
                             (cid, seq + 1, "assistant", answer.text, record, now)])
            con.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, cid))
        return seq

    def turns(self, cid: str) -> list[Turn]:
        """The conversation's question/answer pairs, oldest first."""
        with self._connect() as con:
            rows = con.execute("SELECT role, content, answer FROM messages WHERE conversation = ? ORDER BY seq",
                               (cid,)).fetchall()
        out: list[Turn] = []
        question: str | None = None
        for role, content, record in rows:
            if role == "user":
                question = content
            elif question is not None and record:
                out.append(Turn(question, answer_from_record(json.loads(record))))
                question = None
        return out

    def count_messages(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

