"""The chat page: ask questions over the index, see cited sources, manage the documents.

    streamlit run app/chat.py        (or: python -m app)

Configured like the CLIs (rag.toml, RAG_* environment variables: RAG_INDEX_DIR, RAG_DOCS_DIR,
RAG_LLM_MODEL, RAG_MAX_FILE_MB…). A thin layer: answering is `Pipeline.stream`, uploads and
deletions are `rag.collection` (which runs the same incremental ingest as `python -m rag.ingest`,
under its lock), and every text from a document or a model goes through `app.render`'s escapers
before it reaches the page. Pipelines and models are shared by all sessions (`app.resources`);
the sidebar's settings and the model belong to the collection (`app.settings_panel`, saved in its
settings.json); the Models tab is `app.models_panel`. Collections and saved conversations are
`app.library` (rag.collections, rag.conversations): a conversation is in the store, and in the
page's address.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/chat.py` puts app/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st

from app import library, models_panel, render, settings_panel, strings
from app.resources import pipeline_for
from rag import collection
from rag.answer.abstain import evidence_band, hit_evidence
from rag.collections import collection_config
from rag.config import Config, load_config
from rag.errors import IndexLockedError, IndexMissingError, ModelMismatchError, RagError
from rag.ingest.parse import SUFFIX_KINDS
from rag.question import EMPTY_MESSAGE, EmptyQuestionError, check_question
from rag.records import Answer, Retraction, Status

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in SUFFIX_KINDS]  # the loader's table: what the ingest reads


def safe_html(fragment: str) -> None:
    """Markup built by app.render, whose untrusted parts are already escaped."""
    st.markdown(fragment, unsafe_allow_html=True)


def progress_bar(label: str):
    bar = st.progress(0.0, text=label)
    names = {"parse": "Reading files", "ocr": "OCR of scanned pages", "embed": "Embedding chunks"}

    def update(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{names.get(stage, stage)}: {done}/{total}")

    return bar, update


def flash(kind: str, text: str) -> None:
    """A message shown once after the next rerun (uploads and deletions rerun the page)."""
    st.session_state.setdefault("flash", []).append((kind, text))


def show_flash() -> None:
    for kind, text in st.session_state.pop("flash", []):
        getattr(st, kind)(render.md_escape(text))


# --- sidebar -----------------------------------------------------------------------------------------


def sidebar(cfg0: Config, status: Status, *, problems: Sequence[str] = ()) -> Config:
    """Collection stats, model status and the collection's settings; returns the session's config."""
    sb = st.sidebar
    sb.subheader("This collection")
    if status.error is not None:
        sb.caption("No index yet." if isinstance(status.error, IndexMissingError) else "No usable index.")
    else:
        a, b = sb.columns(2)
        a.metric("Documents", status.documents)
        b.metric("Chunks", status.chunks)
        sb.caption(render.md_escape(f"Embedding model: {status.embed_model}"))
        sb.caption(render.md_escape(f"Last ingest: {render.when(status.created)} ({status.generation})"))

    gen = models_panel.status_card(sb, cfg0)
    settings_panel.show_problems(sb, list(problems))
    return settings_panel.retrieval_settings(sb, cfg0, model_loaded=gen is not None)


# --- answers -----------------------------------------------------------------------------------------


def evidence_of(score: float | None, ctx: dict) -> str:
    """A score's band ('strong', 'weak', 'none'), cut at the answering pipeline's refusal threshold;
    '' for an answer saved without one."""
    return "" if score is None else evidence_band(score, ctx["abstain_threshold"])


@st.cache_data(show_spinner=False, max_entries=1024)
def _hit_evidence(query: str, chunk_id: str, rerank: float | None, dense: float | None, _hit) -> float:
    """hit_evidence, once per passage and query (a few ms each, for every card of every rerun)."""
    return hit_evidence(query, _hit)


def source_card(hit, label: str, *, query: str, quote: str = "", quote_start: int = 0, key: str,
                ctx: dict) -> None:
    if hit.chunk.ocr_pages and hit.paginated:
        label += ", OCR"  # read from the page image: a misread is possible
    score = _hit_evidence(query, hit.chunk.id, hit.rerank_score, hit.dense_score, hit)
    band, lang = evidence_of(score, ctx), ctx.get("lang", "en")
    label += f" · {strings.text(lang, 'evidence').lower()}: {strings.text(lang, band)}"  # the score: under details
    with st.expander(render.md_escape(label)):
        heading = " › ".join(hit.chunk.heading_path)
        if heading:
            st.caption(render.md_escape(f"Section: {heading}"))
        safe_html(render.chunk_html(hit.chunk.text, quote_start, quote_start + len(quote)))
        with st.expander("details"):  # how the passage was ranked: for whoever tunes retrieval
            st.caption(render.md_escape(render.scores_text(hit)))
        record = ctx["files"].get(hit.chunk.source)
        is_pdf = record is not None and record.kind == "pdf" and hit.paginated
        if is_pdf and st.toggle("Open the cited PDF page", key=key):
            page_view(hit, quote, quote_start, record, ctx)


def page_view(hit, quote: str, quote_start: int, record, ctx: dict) -> None:
    """The cited PDF page: an image (pypdfium2), then its text with the quote highlighted."""
    if hit.chunk.ocr_pages:  # parsing again would mean OCR again: the page image and the chunk's text
        number = hit.chunk.ocr_pages[0]
        st.caption(render.md_escape(f"{record.source} · page {number} · text read by OCR"))
        try:
            st.image(_page_png(str(Path(ctx["docs_dir"]) / record.source), record.hash, number, ""), width="stretch")
        except Exception as err:
            st.caption(render.md_escape(f"(no page image: {type(err).__name__}: {err})"))
        return
    try:
        doc = _document(str(ctx["docs_dir"]), record.source, record.hash, ctx["max_bytes"])
        span = collection.cited_page(doc, hit.chunk, quote_start, len(quote))
    except RagError as err:
        st.warning(render.md_escape(str(err)))
        return
    printed = f"printed page {span.label} · PDF " if span.label and span.label != str(span.number) else ""
    st.caption(render.md_escape(f"{record.source} · {printed}page {span.number} of {len(doc.pages)}"))
    try:
        st.image(_page_png(str(Path(ctx["docs_dir"]) / record.source), record.hash, span.number,
                           span.text[span.start:span.end]), width="stretch")
    except Exception as err:  # the image is a bonus; the page text below is the viewer
        st.caption(render.md_escape(f"(no page image: {type(err).__name__}: {err})"))
    safe_html(render.chunk_html(span.text, span.start, span.end))


@st.cache_resource(show_spinner=False, max_entries=8)
def _document(docs_dir: str, source: str, sha256: str, max_bytes: int):
    return collection.load_document(docs_dir, source, max_bytes=max_bytes, sha256=sha256)


@st.cache_data(show_spinner=False, max_entries=32)
def _page_png(path: str, sha256: str, page: int, quote: str) -> bytes:
    from app.pdfpage import render_page_png

    return render_page_png(path, page, quote)


def show_answer(answer: Answer, turn: int, ctx: dict) -> None:
    if answer.refused:
        safe_html(render.refusal_html(answer, collection=ctx.get("collection", ""), passages=ctx.get("chunks", 0),
                                      evidence=evidence_of(answer.timings.get("evidence"), ctx),
                                      lang=ctx.get("lang", "en")))
        if answer.sources:
            st.caption(strings.text(ctx.get("lang", "en"), "nearest"))
            for i, hit in enumerate(answer.sources[:3]):
                source_card(hit, hit.label, query=answer.query, key=f"page-{turn}-near-{i}", ctx=ctx)
        return
    band = evidence_of(answer.timings.get("evidence"), ctx)
    if band == "none":  # answered all the same: the model's gate vouched for passages worded unlike the question
        band = "weak"
    if band:
        st.caption(f":material/fact_check: {render.md_escape(render.evidence_text(band, ctx.get('lang', 'en')))}")
    if answer.fallback == "unsupported":
        st.caption(":material/format_quote: Extractive answer: nothing the model wrote was supported by the "
                   "documents, so these are sentences quoted from them.")
    elif answer.fallback:
        st.caption(":material/format_quote: Extractive answer: the model's own answer was unusable "
                   f"({render.md_escape(answer.fallback)}), so these are sentences quoted from the documents.")
    elif answer.mode == "extractive":
        st.caption(":material/format_quote: Extractive answer: sentences quoted from the documents "
                   "(no language model loaded).")
    safe_html(render.answer_html(answer))
    if answer.query != answer.question:
        st.caption(render.md_escape(f"Searched for: {answer.query}"))
    bad = render.flagged(answer)
    if bad:
        plural = "s" if len(bad) > 1 else ""
        with st.expander(f":material/warning: {len(bad)} sentence{plural} flagged by the verifier"):
            for s in bad:
                st.markdown(render.md_escape(f"“{s.text}” — {s.reason} (support {s.support:.2f})"))
    if answer.invalid_markers:
        st.caption(f"{answer.invalid_markers} citation marker(s) pointing to no source were removed.")
    for c in answer.citations:
        hit = answer.sources[c.n - 1]
        source_card(hit, render.citation_label(c), query=answer.query, quote=c.quote, quote_start=c.quote_start,
                    key=f"page-{turn}-{c.n}", ctx=ctx)


def show_question(question: str, limit: int) -> None:
    """The user's message; one over `limit` characters is shown by its beginning, the rest folded."""
    with st.chat_message("user"):
        if len(question) <= limit:
            safe_html(render.user_html(question))
            return
        safe_html(render.user_html(question[:300].rstrip() + " …"))
        with st.expander(f"Whole question ({len(question):,} characters)"):
            safe_html(render.user_html(question))
        st.caption(f"Only the first {limit:,} characters were used to search and answer.")


def ask(pipe, question: str, ctx: dict, *, files: list[str] | None = None) -> Answer | None:
    """Stream the answer to `question` into the page and keep the turn in the session; returns it."""
    turns = st.session_state.turns
    history = []
    for t in turns:
        history += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"].text}]
    show_question(question, pipe.cfg.max_question_chars)
    with st.chat_message("assistant"):
        slot = answer_slot()
        slot.caption("Searching the documents…")
        answer, raw = None, ""
        try:
            for event in pipe.stream(question, history=history, files=files):
                if isinstance(event, Answer):
                    answer = event
                elif isinstance(event, Retraction):  # not an answer after all: never leave it on screen
                    raw = ""
                    slot.caption("Writing the answer again…")
                else:
                    raw += event
                    slot.markdown(render.streaming_html(raw), unsafe_allow_html=True)
        except RagError as err:
            slot.error(render.md_escape(str(err)))
            return None
        if answer is None:
            slot.error("No answer was produced.")
            return None
        turns.append({"question": question, "answer": answer})
        models_panel.refresh_status_card()  # the speed of this answer
        with slot.container():
            show_answer(answer, len(turns) - 1, ctx)
    return answer


def answer_slot():
    """Where an answer goes. Streamed and replayed answers use the same slot, so their cards keep
    their identity (an opened card stays open) when the page reruns."""
    return st.empty()


# --- documents ---------------------------------------------------------------------------------------


def documents_panel(pipe, ctx: dict, *, index_ok: bool, active: bool = True) -> None:
    """Upload, list and delete documents; `active`: the panel is on screen, so it shows the
    messages of the last upload or deletion (else they wait for the tab that is)."""
    docs_dir: Path = ctx["docs_dir"]
    st.caption(render.md_escape(f"Documents folder: {docs_dir}"))
    if index_ok and not docs_dir.is_dir():
        st.warning(render.md_escape(
            f"The documents folder {docs_dir} (where this index was ingested from) does not exist here, so "
            "uploads and deletions are off: ingesting another folder would drop every indexed document. "
            "Set RAG_DOCS_DIR to the folder that holds the documents."))
        return
    if active:
        show_flash()
    n = st.session_state.setdefault("uploader", 0)
    files = st.file_uploader(strings.text(ctx.get("lang", "en"), "upload"),
                             type=UPLOAD_TYPES,
                             accept_multiple_files=True, key=f"uploader-{n}",
                             max_upload_size=max(1, math.ceil(ctx["max_bytes"] / 2**20)))
    if files:
        bar, update = progress_bar(f"Adding {len(files)} file(s)…")
        try:
            result = collection.add_documents(pipe, docs_dir, [(f.name, f.getvalue()) for f in files],
                                              max_bytes=ctx["max_bytes"], progress=update)
        except IndexLockedError as err:
            flash("error", f"Not added: {err}. Try again when it has finished.")
        except RagError as err:
            flash("error", f"Not added: {err}")
        else:
            for s in result.saved:
                flash("success", f"Added {s.source}" + (f" (renamed: {s.renamed_from} was taken)" if s.renamed_from
                                                         else ""))
            for r in result.rejected:
                flash("error", f"Rejected {r.name}: {r.reason}" + (f" (fix: {r.fix})" if r.fix else ""))
            for f in result.failed:
                flash("error", f"Could not read {f.source}: {f.reason}" + (f" (fix: {f.fix})" if f.fix else ""))
            if result.report is not None:
                mine = {f.source for f in result.failed}
                others = [f"{f.source} ({f.reason})" for f in result.report.failed if f.source not in mine]
                if others:
                    flash("warning", f"Also in the folder but not indexed: {'; '.join(others)}")
                flash("caption", result.report.summary().splitlines()[0])
        bar.empty()
        st.session_state.uploader = n + 1  # a fresh, empty uploader
        st.rerun()

    if not index_ok:
        return
    records = list(ctx["files"].values())
    st.subheader(f"{len(records)} document{'s' if len(records) != 1 else ''}")
    confirm = st.session_state.get("confirm_delete")
    for r in records:
        name, meta, action = st.columns([5, 3, 2], vertical_alignment="center")
        name.markdown(render.md_escape(r.source) + (f"  \n{render.md_escape(r.title)}" if r.title else ""))
        meta.caption(render.md_escape(f"{r.kind.upper()} · {r.pages} page{'s' if r.pages != 1 else ''} · "
                                      f"{r.chunks} chunk{'s' if r.chunks != 1 else ''}"))
        if action.button("Delete", key=f"delete-{r.source}", icon=":material/delete:"):
            st.session_state.confirm_delete = r.source
            st.rerun()
        if confirm == r.source:
            st.warning(render.md_escape(f"Delete {r.source} from the documents folder and the index?"))
            yes, no = st.columns(2)
            if yes.button("Yes, delete", key="confirm-delete", type="primary"):
                st.session_state.confirm_delete = None
                bar, update = progress_bar(f"Removing {r.source}…")
                try:
                    collection.remove_document(pipe, docs_dir, r.source, progress=update)
                    flash("success", f"Deleted {r.source}")
                except RagError as err:
                    flash("error", f"Not deleted: {err}")
                bar.empty()
                st.rerun()
            if no.button("Cancel", key="cancel-delete"):
                st.session_state.confirm_delete = None
                st.rerun()


# --- empty states ------------------------------------------------------------------------------------


def missing_index(cfg: Config, ctx: dict) -> None:
    st.info(render.md_escape(
        f"No index yet at {cfg.index_dir}. Upload documents below: they are saved to {ctx['docs_dir']} and "
        "indexed. Or build the index from a folder of documents on the command line:"))
    st.code(f"python -m rag.ingest {ctx['docs_dir']} --index {cfg.index_dir}", language="bash")


def mismatched_index(pipe, cfg: Config, error: ModelMismatchError, ctx: dict) -> None:
    st.error(render.md_escape(str(error)))
    folder = ctx["docs_dir"]
    st.markdown("Rebuild the index with the configured embedding model "
                f"({render.md_escape(cfg.embed_model)}):")
    st.code(f"python -m rag.ingest {folder} --index {cfg.index_dir} --rebuild", language="bash")
    if Path(folder).is_dir() and st.button(f"Rebuild now from {render.md_escape(str(folder))}", type="primary"):
        bar, update = progress_bar("Rebuilding…")
        try:
            report = pipe.ingest(folder, rebuild=True, progress=update)
            flash("success", report.summary().splitlines()[0])
        except RagError as err:
            flash("error", f"Rebuild failed: {err}")
        bar.empty()
        st.rerun()
    show_flash()


def _manifest_of(cfg: Config) -> dict:
    from rag.index.store import current_generation, read_manifest

    try:
        gen = current_generation(Path(cfg.index_dir))
        return read_manifest(gen) if gen else {}
    except RagError:
        return {}


# --- the page ----------------------------------------------------------------------------------------


def page_tabs(n_files: int, lang: str = "en") -> tuple[str, dict]:
    """The Chat, Documents and Models tabs; returns the open one ('chat', 'docs', 'models') and
    the tab containers by those names.

    The open tab is the session's `page`, passed as the tabs' default: a rerun (an upload, a
    deletion) would otherwise reopen the first tab, and the Documents label changes with its count,
    which makes Streamlit draw new tabs. Every tab's content is still drawn (the chat's file filter
    keeps its state); only the chat input follows the open tab.
    """
    labels = {"chat": f":material/chat: {strings.text(lang, 'tab_chat')}",
              "docs": f":material/description: {strings.text(lang, 'tab_docs')} ({n_files})",
              "models": f":material/memory: {strings.text(lang, 'tab_models')}"}
    wanted = st.session_state.get("page", "chat")
    tabs = dict(zip(labels, st.tabs(list(labels.values()), default=labels.get(wanted, labels["chat"]),
                                    on_change="rerun")))
    page = next((name for name, tab in tabs.items() if tab.open), "chat")
    st.session_state.page = page
    return page, tabs


def main() -> None:
    st.set_page_config(page_title="Ask your documents", page_icon=":material/library_books:", layout="wide")
    try:
        app_cfg = load_config()
        store = library.store_for(app_cfg)
    except RagError as err:
        st.error(render.md_escape(str(err)))
        st.stop()
    st.session_state.setdefault("turns", [])
    st.sidebar.title(":material/library_books: Ask your documents")
    coll = library.collection_picker(app_cfg, store)
    library.restore_conversation(store, coll)
    cfg0 = collection_config(app_cfg, coll)
    cfg0, problems = settings_panel.saved_config(cfg0)  # the collection's own top-k, model…
    actions = st.sidebar.container()
    base = pipeline_for(cfg0)
    status = base.status()
    cfg = sidebar(cfg0, status, problems=problems)
    pipe = pipeline_for(cfg)
    error = status.error
    manifest, files = {}, {}
    if error is None:
        index = base.index
        manifest, files = index.manifest, {f.source: f for f in index.files()}
    elif isinstance(error, ModelMismatchError):
        manifest = _manifest_of(cfg0)  # still names the folder to rebuild from
    ctx = {"docs_dir": collection.documents_folder(cfg0.docs_dir, manifest), "files": files,
           "max_bytes": int(cfg0.max_file_mb * 1024 * 1024), "chunks": status.chunks,
           "abstain_threshold": cfg.abstain_threshold}
    ctx["collection"] = Path(ctx["docs_dir"]).name  # what a refusal says it searched
    ctx["lang"] = strings.language(st.context.locale)  # the main strings follow the browser's language

    if isinstance(error, IndexMissingError):
        st.title("Ask your documents")
        missing_index(cfg0, ctx)
        documents_panel(base, ctx, index_ok=False)
        return
    if error is not None:
        st.title("Ask your documents")
        if isinstance(error, ModelMismatchError):
            mismatched_index(base, cfg0, error, ctx)
        else:
            st.error(render.md_escape(str(error)))
        return

    lang = ctx["lang"]
    page, tabs = page_tabs(len(files), lang)
    # Only the Chat tab asks: pinned to the page's foot, the input would show on every tab.
    question = st.chat_input(strings.text(lang, "chat_input")) if page == "chat" else None
    with tabs["docs"]:
        documents_panel(base, ctx, index_ok=True, active=page == "docs")
    with tabs["models"]:
        models_panel.models_tab(cfg0)
    with tabs["chat"]:
        if page == "chat":
            show_flash()  # the first upload into an empty collection lands here
        chosen = st.multiselect(strings.text(lang, "filter"), sorted(files), key=f"files-{coll.id}",
                                placeholder=strings.text(lang, "filter_all"))
        if not st.session_state.turns and not question:
            st.caption(render.md_escape(strings.text(lang, "hint")))
        for i, turn in enumerate(st.session_state.turns):
            show_question(turn["question"], cfg.max_question_chars)
            with st.chat_message("assistant"), answer_slot().container():
                show_answer(turn["answer"], i, ctx)
        if question is not None:
            try:
                check_question(question)
            except EmptyQuestionError:
                st.warning(EMPTY_MESSAGE + ".")  # nothing to search for: the pipeline is not called
            else:
                answer = ask(pipe, question.strip(), ctx, files=[f for f in chosen if f in files] or None)
                if answer is not None:
                    library.save_turn(store, coll, question.strip(), answer)
    library.conversation_panel(actions, store, coll)


main()
