#!/usr/bin/env bash
# Set up, then run the whole test suite (slow end-to-end and real-browser tests included).
#   scripts/test.sh -m "not slow"    # the fast subset, for a quick edit-test loop
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The real-browser test drives Debian's Chromium; install it when we can (root + apt), else it skips.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "warning: could not install chromium; the browser test will be skipped"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
