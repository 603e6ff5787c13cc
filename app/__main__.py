"""`python -m app [streamlit options]`: the same as `streamlit run app/chat.py [options]`."""
from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("chat.py")), *sys.argv[1:]]
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
