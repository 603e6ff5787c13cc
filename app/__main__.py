"""`python -m app [streamlit options]`: the same as `streamlit run app/chat.py [options]`.

The toolbar is "minimal" (no Deploy button: this app runs on the user's machine), as in
.streamlit/config.toml, which Streamlit only reads when started from the project folder.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("chat.py")), "--client.toolbarMode", "minimal",
                *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
