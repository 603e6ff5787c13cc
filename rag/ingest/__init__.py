"""Ingest: files on disk → documents → chunks → embedded, indexed generations.

discover and read files (`discover`), parse them by kind (`parse`: the table of formats, dispatching
to `pdf`, `html` and `decode` for charsets, plain text and Markdown), chunk (`chunk`), build and commit
a generation (`build`), accept uploads (`upload`; the collection operations are `rag.collection`).
`python -m rag.ingest FOLDER` is the command line.
"""
from __future__ import annotations
