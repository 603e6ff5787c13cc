"""The page's tabs in a real headless browser (Chromium + selenium, as tests/test_browser.py): an
upload on the Documents tab reruns the page, and the tab, with its "Added …" message, stays open;
the chat input shows on the Chat tab only.

Extractive mode (no GGUF), the bundled MiniLM embedder. Skipped without chromium/chromedriver.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests import test_browser
from tests.test_browser import CHROMEDRIVER, CHROMIUM, click_tab, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
driver = test_browser.driver  # its `server` is this module's

DOC = "# Otters\n\nSea otters sleep floating on their backs, holding paws so they do not drift apart.\n"
UPLOAD = "# Zebras\n\nThe plains zebra sleeps standing up for about seven hours a day.\n"
CHAT_INPUT = '[data-testid="stChatInput"] textarea'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Streamlit server over a one-document index; yields its URL."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium")
    tmp = tmp_path_factory.mktemp("browser-tabs")
    docs, index = tmp / "docs", tmp / "index"
    docs.mkdir()
    (docs / "otters.md").write_text(DOC, encoding="utf-8")
    env = test_browser.app_env(RAG_INDEX_DIR=str(index), RAG_DOCS_DIR=str(docs), RAG_RERANK="false")
    subprocess.run([sys.executable, "-m", "rag.ingest", str(docs), "--index", str(index), "--quiet"],
                   cwd=tmp, env=env, check=True, timeout=600)
    app = test_browser.Server(tmp, env)
    app.start()
    try:
        yield app.url
    finally:
        app.stop()


def shown_alerts(d) -> list[str]:
    """The texts of the alerts (st.success, st.error…) on screen, not those in a hidden tab."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return [a.text for a in d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]') if a.is_displayed()]
    except StaleElementReferenceException:  # redrawn while read: read again on the next poll
        return []


def test_the_documents_tab_stays_open_after_an_upload_and_says_added(server, driver, tmp_path):
    from selenium.webdriver.common.by import By

    d = driver
    d.get(server)
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, CHAT_INPUT), what="the chat input on the Chat tab")
    click_tab(d, "Documents")
    wait_for(d, lambda: not d.find_elements(By.CSS_SELECTOR, CHAT_INPUT), timeout=30,
             what="the chat input to leave with the Chat tab")  # the rerun the click asked for has run
    upload = wait_for(d, lambda: [u for u in d.find_elements(By.CSS_SELECTOR, '[data-testid="stFileUploader"]')
                                  if u.is_displayed()], what="the uploader on the Documents tab")[0]
    (tmp_path / "zebras.md").write_text(UPLOAD, encoding="utf-8")
    upload.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(tmp_path / "zebras.md"))
    wait_for(d, lambda: any("Added zebras.md" in t for t in shown_alerts(d)), timeout=300,
             what="“Added zebras.md” on screen")  # the server loads the embedder first: slow on a busy machine
    time.sleep(2.0)  # a late rerun, had the tabs been reset, would have moved by now
    assert any("Added zebras.md" in t for t in shown_alerts(d)), shown_alerts(d)
    selected = d.find_element(By.CSS_SELECTOR, '[role="tab"][aria-selected="true"]').text
    assert "Documents (2)" in selected, selected
    assert not d.find_elements(By.CSS_SELECTOR, CHAT_INPUT)
    (tmp_path / "after-upload.png").write_bytes(d.get_screenshot_as_png())

    click_tab(d, "Chat")
    wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, CHAT_INPUT), timeout=30, what="the chat input back")
