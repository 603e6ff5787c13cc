"""Collections and saved conversations in a real headless browser (Chromium + selenium, as
tests/test_browser.py): create a second collection, upload into it, ask with a file filter, reload
the page and see the conversation again, restart the server and see it again.

Extractive mode (no GGUF), the bundled MiniLM embedder. Skipped without chromium/chromedriver.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.test_browser import CHROMEDRIVER, CHROMIUM, Server, app_env, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How do sea otters sleep?"
DOCS = {
    "zebras.md": "# Zebras\n\nThe plains zebra sleeps standing up for about seven hours a day.\n",
    "otters.md": "# Otters\n\nSea otters sleep floating on their backs, holding paws so they do not drift apart.\n",
}


@pytest.fixture
def server(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium")
    env = app_env(RAG_INDEX_DIR=str(tmp_path / "index"), RAG_DOCS_DIR=str(tmp_path / "docs"), RAG_RERANK="false")
    (tmp_path / "docs").mkdir()
    s = Server(tmp_path, env, toolbar="minimal")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1440,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def body(d) -> str:
    return d.find_element("tag name", "body").text


def sources_of_answer(d) -> list[str]:
    from selenium.webdriver.common.by import By

    summaries = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"] [data-testid="stExpander"] summary')
    return [t for s in summaries if (t := s.text.strip()) and t != "details"]  # not a card's nested scores


def test_second_collection_upload_filter_reload_and_restart(server, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = driver
    d.get(server.url)
    assert not d.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')  # toolbarMode minimal

    manage = wait_for(d, lambda: [s for s in d.find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] summary')
                                  if "Manage collections" in s.text], what="Manage collections")[0]
    manage.click()
    field = wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="New collection"]'),
                     what="the new collection field")[0]
    field.send_keys("Animals", Keys.ENTER)
    time.sleep(1.0)  # the field's value reaches the server before the click
    d.find_element(By.CSS_SELECTOR, ".st-key-create-collection button").click()  # keyed widgets get st-key-*
    wait_for(d, lambda: "No index yet" in body(d) and "collection=" in d.current_url, what="the new collection")

    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    upload = wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, 'input[type="file"]'), what="the uploader")[0]
    upload.send_keys("\n".join(str(tmp_path / n) for n in DOCS))
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatInput"] textarea'), timeout=300,
             what="the index of the uploads")  # the server loads the embedder first: slow on a busy machine
    assert not (tmp_path / "docs" / "otters.md").exists()  # into the new collection, not the default one

    picker = d.find_element(By.CSS_SELECTOR, '[data-testid="stMultiSelect"] input')
    picker.click()
    picker.send_keys("zebras.md", Keys.ENTER)
    picker.send_keys(Keys.ESCAPE)
    wait_for(d, lambda: "zebras.md" in d.find_element(By.CSS_SELECTOR, '[data-testid="stMultiSelect"]').text,
             what="zebras.md chosen in the file filter")
    time.sleep(1.0)  # the choice reaches the server before the question
    box = d.find_element(By.CSS_SELECTOR, '[data-testid="stChatInput"] textarea')
    box.click()
    box.send_keys(QUESTION, Keys.ENTER)
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, ".rag-answer, .rag-refusal")
             and not d.find_elements(By.CSS_SELECTOR, ".rag-streaming") and "chat=" in d.current_url,
             what="the answer")
    time.sleep(1.0)
    first = sources_of_answer(d)
    assert first and all("zebras.md" in s for s in first), first  # the filter kept otters.md out

    d.refresh()  # a reload: the address names the collection and the conversation
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, ".rag-answer, .rag-refusal") and QUESTION in body(d),
             what="the conversation after a reload")
    wait_for(d, lambda: "Animals" in d.find_element(By.CSS_SELECTOR, ".st-key-collection-picker")
             .get_attribute("outerHTML"), what="the collection switcher on Animals")  # drawn after a skeleton

    server.stop()
    server.start()
    d.refresh()
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, ".rag-answer, .rag-refusal") and QUESTION in body(d),
             what="the conversation after a server restart")
    assert sources_of_answer(d) == first
    (tmp_path / "after-restart.png").write_bytes(d.get_screenshot_as_png())
    if os.environ.get("RAG_SCREENSHOT_CHATS"):  # e.g. docs/collections.png
        Path(os.environ["RAG_SCREENSHOT_CHATS"]).write_bytes(d.get_screenshot_as_png())
