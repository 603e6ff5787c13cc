"""Take the README's screenshots again: the app over the sample collection (data/docs) in headless
Chromium, 1400 px wide.

    .venv/bin/python scripts/screenshots.py                       # extractive answers (no model)
    .venv/bin/python scripts/screenshots.py --model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

Writes to docs/ (or --out): answer-en.png (an English question, its first source card open),
answer-zh.png (a Chinese question), collection-switcher.png (the sidebar's switcher opened, with two
more collections) and models-tab.png (the Models tab, which has no chat input). Builds a fresh index
in a temporary folder; needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)
and selenium. The browser machinery is the browser tests' (tests/test_browser.py).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_browser import CHROMEDRIVER, CHROMIUM, Server, app_env, ask, click_tab, wait_for  # noqa: E402

QUESTIONS = {"answer-en.png": "How much memory does a 7B model need in Q4_K_M?",
             "answer-zh.png": "为什么需要 KV 缓存？"}
MORE_COLLECTIONS = ("Contracts", "Research papers")
WIDTH, HEIGHT = 1400, 1000


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1", "--lang=en-US",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    return d


def settle(d, seconds: float = 1.0) -> None:
    """Let the page finish its rerun and its animations before a picture."""
    time.sleep(seconds)
    wait_for(d, lambda: d.find_element("css selector", '[data-testid="stApp"]')
             .get_attribute("data-test-script-state") == "notRunning", what="the page's run to end")
    time.sleep(0.3)


def answer_shot(d, url: str, question: str, target: Path) -> None:
    from selenium.webdriver.common.by import By

    d.get(url)
    ask(d, question, 1)
    cards = wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"] '
                                                                 '[data-testid="stExpander"] summary'),
                     timeout=60, what="the answer's source cards")
    cards[0].click()
    settle(d)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'});",
                     d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')[0])
    settle(d, 0.5)
    target.write_bytes(d.get_screenshot_as_png())


def switcher_shot(d, url: str, target: Path) -> None:
    from selenium.webdriver.common.by import By

    d.get(url)
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '.st-key-collection-picker'), what="the collection switcher")
    settle(d)
    picker = '.st-key-collection-picker input, .st-key-collection-picker [role="combobox"]'
    d.find_element(By.CSS_SELECTOR, picker).click()
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '[role="option"]'), what="the switcher's list")
    settle(d, 0.5)
    target.write_bytes(d.get_screenshot_as_png())


def models_shot(d, url: str, target: Path) -> None:
    from selenium.webdriver.common.by import By

    d.get(url)
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '[role="tab"]'), what="the tabs")
    click_tab(d, "Models")
    assert not d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatInput"]'), "a chat input on the Models tab"
    settle(d)
    target.write_bytes(d.get_screenshot_as_png())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default: docs/)")
    ap.add_argument("--model", help="a GGUF to answer with (default: none, extractive answers)")
    ap.add_argument("--only", nargs="+", metavar="PNG", help="take only these (e.g. models-tab.png)")
    args = ap.parse_args(argv)
    if not (CHROMIUM and CHROMEDRIVER):
        sys.exit("screenshots: chromium and chromedriver are not installed "
                 "(fix: apt-get install -y chromium chromium-driver)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rag-shots-") as tmp_name:
        tmp = Path(tmp_name)
        index = tmp / "index"
        rag = {"RAG_INDEX_DIR": str(index), "RAG_DOCS_DIR": str(ROOT / "data" / "docs"), "RAG_RERANK": "false"}
        if args.model:
            model = Path(args.model).resolve()
            (tmp / "models").mkdir()  # the Models tab lists the GGUFs beside it; their speeds.json stays here
            for gguf in model.parent.glob("*.gguf"):
                (tmp / "models" / gguf.name).symlink_to(gguf)
            rag["RAG_LLM_MODEL"] = str(tmp / "models" / model.name)
        env = app_env(**rag)
        subprocess.run([sys.executable, "-m", "rag.ingest", rag["RAG_DOCS_DIR"], "--index", str(index), "--quiet"],
                       cwd=tmp, env=env, check=True, timeout=900)
        from rag import collections as colls
        from rag.config import load_config

        cfg = load_config(env=rag, overrides={"data_dir": tmp / "rag-data"})  # the app runs in tmp
        for name in MORE_COLLECTIONS:
            colls.create_collection(cfg, name)
        server = Server(tmp, env)
        server.start()
        d = browser(tmp / "chromium")
        try:
            shots = {file: (lambda target, q=question: answer_shot(d, server.url, q, target))
                     for file, question in QUESTIONS.items()}
            shots["collection-switcher.png"] = lambda target: switcher_shot(d, server.url, target)
            shots["models-tab.png"] = lambda target: models_shot(d, server.url, target)
            for file, take in shots.items():
                if not args.only or file in args.only:
                    take(args.out / file)
                    print(f"wrote {args.out / file}")
        finally:
            d.quit()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
