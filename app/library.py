"""The sidebar's library: the collection switcher and the saved conversations of the collection.

A thin layer over `rag.collections` (create, rename, delete, switch) and `rag.conversations` (the
SQLite store in the app's data folder). The open collection and conversation are also written to
the page's address (`?collection=…&chat=…`), so a reload, a bookmark or a server restart opens
the same conversation again; the session only caches what the store holds.
"""
from __future__ import annotations

import streamlit as st

from app import render
from rag import collections as colls
from rag.config import Config
from rag.conversations import ConversationStore, store_path
from rag.errors import RagError
from rag.records import Answer

MAX_LISTED = 30  # conversations shown in the sidebar; older ones stay in the store


@st.cache_resource(show_spinner=False)
def _store(path: str) -> ConversationStore:
    return ConversationStore(path)


def store_for(cfg: Config) -> ConversationStore:
    return _store(str(store_path(cfg).resolve()))  # one store per file, whatever the working directory


def _set_param(name: str, value: str | None) -> None:
    if value:
        st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]


def open_conversation(store: ConversationStore, cid: str | None) -> None:
    """Make `cid` the session's conversation (None: a new, empty chat) and load its turns."""
    st.session_state.conversation = cid
    st.session_state.turns = [t.as_dict() for t in store.turns(cid)] if cid else []
    _set_param("chat", cid)


def _switch_collection(store: ConversationStore, cid: str) -> None:
    st.session_state.collection = cid
    _set_param("collection", None if cid == colls.DEFAULT else cid)
    open_conversation(store, None)


# --- collections -------------------------------------------------------------------------------------


def collection_picker(cfg: Config, store: ConversationStore) -> colls.Collection:
    """The switcher and the 'Manage collections' box; returns the session's collection."""
    sb = st.sidebar
    every = colls.list_collections(cfg)
    by_id = {c.id: c for c in every}
    if "collection" not in st.session_state:  # a new session: the address says which, else default
        wanted = st.query_params.get("collection", colls.DEFAULT)
        st.session_state.collection = wanted if wanted in by_id else colls.DEFAULT
    if st.session_state.collection not in by_id:  # deleted in another window
        _switch_collection(store, colls.DEFAULT)
    ids = [c.id for c in every]
    # The widget mirrors the session's choice (set before it is drawn; a pick goes through the
    # callback), so creating or deleting a collection can switch it too.
    st.session_state["collection-picker"] = st.session_state.collection
    sb.selectbox("Collection", ids, format_func=lambda i: by_id[i].name, key="collection-picker",
                 on_change=lambda: _switch_collection(store, st.session_state["collection-picker"]))
    coll = by_id[st.session_state.collection]
    with sb.expander("Manage collections", icon=":material/folder_managed:"):
        _manage(cfg, store, coll)
    return coll


def _manage(cfg: Config, store: ConversationStore, coll: colls.Collection) -> None:
    n = st.session_state.setdefault("new-collection-n", 0)  # a fresh, empty field after each creation
    name = st.text_input("New collection", key=f"new-collection-{n}", placeholder="e.g. Contracts")
    if st.button("Create", key="create-collection", icon=":material/create_new_folder:"):
        try:
            made = colls.create_collection(cfg, name)
        except RagError as err:
            st.error(render.md_escape(str(err)))
        else:
            _switch_collection(store, made.id)
            st.session_state["new-collection-n"] = n + 1
            st.rerun()
    if coll.builtin:
        st.caption("The default collection is the index set by RAG_INDEX_DIR; it cannot be renamed or deleted.")
        return
    st.divider()
    new = st.text_input("Rename this collection", value=coll.name, key=f"rename-collection-{coll.id}")
    if st.button("Rename", key="rename-collection") and new != coll.name:
        try:
            colls.rename_collection(cfg, coll.id, new)
            st.rerun()
        except RagError as err:
            st.error(render.md_escape(str(err)))
    if st.session_state.get("confirm_delete_collection") != coll.id:
        if st.button("Delete this collection", key="delete-collection", icon=":material/delete:"):
            st.session_state.confirm_delete_collection = coll.id
            st.rerun()
        return
    inside = coll.docs_dir is not None and coll.folder is not None and coll.docs_dir.is_relative_to(coll.folder)
    st.warning(render.md_escape(
        f"Delete collection “{coll.name}”: its index, its saved conversations"
        + (", and the documents uploaded into it" if inside else "")
        + f" ({coll.folder})? "
        + ("Files outside the app's folder are never touched." if inside else
           f"Its documents folder {coll.docs_dir} is yours and stays as it is.")))
    yes, no = st.columns(2)
    if yes.button("Yes, delete", key="confirm-delete-collection", type="primary"):
        st.session_state.confirm_delete_collection = None
        try:
            colls.delete_collection(cfg, coll.id)
            store.delete_collection(coll.id)
        except RagError as err:
            st.error(render.md_escape(str(err)))
            return
        _switch_collection(store, colls.DEFAULT)
        st.rerun()
    if no.button("Cancel", key="cancel-delete-collection"):
        st.session_state.confirm_delete_collection = None
        st.rerun()


# --- conversations -----------------------------------------------------------------------------------


def restore_conversation(store: ConversationStore, coll: colls.Collection) -> None:
    """In a new session, open the conversation the address names (when it belongs to `coll`)."""
    if "conversation" in st.session_state:
        return
    cid = st.query_params.get("chat")
    try:
        ok = bool(cid) and store.get(cid).collection == coll.id
    except RagError:
        ok = False
    open_conversation(store, cid if ok else None)


def save_turn(store: ConversationStore, coll: colls.Collection, question: str, answer: Answer) -> None:
    """Store the turn just answered, starting a conversation with its first question."""
    cid = st.session_state.get("conversation")
    try:
        if not cid:
            cid = store.create(coll.id, question)
            st.session_state.conversation = cid
            _set_param("chat", cid)
        store.add_turn(cid, question, answer)
    except RagError as err:
        st.warning(render.md_escape(f"This answer was not saved: {err}"))


def conversation_panel(where, store: ConversationStore, coll: colls.Collection) -> None:
    """New chat, the list of saved conversations, and rename / export / delete for the open one."""
    current = st.session_state.get("conversation")
    if where.button("New chat", icon=":material/add_comment:", width="stretch", key="new-chat",
                    disabled=not current and not st.session_state.turns):
        open_conversation(store, None)
        st.rerun()
    saved = store.conversations(coll.id)
    if not saved:
        where.caption("No saved conversations in this collection yet.")
        return
    where.caption(f"Conversations ({len(saved)})")
    for conv in saved[:MAX_LISTED]:
        if where.button(conv.title, key=f"conv-{conv.id}", width="stretch",
                        type="primary" if conv.id == current else "secondary",
                        help=f"{conv.messages // 2} question(s) · {render.when(conv.updated)}"):
            open_conversation(store, conv.id)
            st.rerun()
    if current is None:
        return
    title = next((c.title for c in saved if c.id == current), "chat")
    box = where.expander("This conversation", icon=":material/edit_note:")
    new = box.text_input("Title", value=title, key=f"conv-title-{current}")
    if box.button("Rename", key="rename-conversation") and new.strip() and new != title:
        try:
            store.rename(current, new)
            st.rerun()
        except RagError as err:
            box.error(render.md_escape(str(err)))
    box.download_button("Export (Markdown)", render.chat_to_markdown(st.session_state.turns, title=title),
                        file_name=f"{colls.slug(title)}.md", mime="text/markdown", icon=":material/download:",
                        key="export-conversation")
    if st.session_state.get("confirm_delete_conversation") != current:
        if box.button("Delete", key="delete-conversation", icon=":material/delete:"):
            st.session_state.confirm_delete_conversation = current
            st.rerun()
        return
    box.warning("Delete this conversation? It cannot be undone.")
    if box.button("Yes, delete", key="confirm-delete-conversation", type="primary"):
        st.session_state.confirm_delete_conversation = None
        store.delete(current)
        open_conversation(store, None)
        st.rerun()
    if box.button("Cancel", key="cancel-delete-conversation"):
        st.session_state.confirm_delete_conversation = None
        st.rerun()
