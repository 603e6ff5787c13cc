#!/usr/bin/env bash
# Lint and type-check: ruff (style, import order, unused code) over the tree, then mypy (strict on rag/).
# Both read their settings from pyproject.toml; CI runs this before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# mypy checks against the installed libraries' own types, so it needs the project's venv.
if [ ! -x .venv/bin/ruff ] || [ ! -x .venv/bin/mypy ]; then
    scripts/setup.sh
fi
.venv/bin/ruff check rag eval app tests data
.venv/bin/mypy
