"""Ingest: files on disk → documents → chunks → embedded, indexed generations.

discover and read (`load`), parse PDF / text / HTML (`load`), chunk (`chunk`), build and commit a
generation (`build`), accept uploads (`upload`). `python -m rag.ingest FOLDER` is the command line.
"""
from __future__ import annotations
