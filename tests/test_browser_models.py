"""The model manager in a real headless browser: switch between two tiny GGUFs and see the status
card follow. Same machinery as tests/test_browser.py (Debian's Chromium, selenium, a Streamlit server
on a free localhost port); the collection is one small document, the models are random-weight GGUFs
of ~0.2 MB (rag.testing.write_tiny_gguf), so no real model is loaded.

RAG_SCREENSHOT_MODELS=docs/model-manager.png saves the Models tab as the README shows it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_browser
from tests.test_browser import CHROMEDRIVER, CHROMIUM, click_tab, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
driver = test_browser.driver  # its `server` is this module's

DOC = ("# Quantization\n\nA 7B model quantized to Q4_K_M needs about 4.8 GB of memory. "
       "The same model in Q8_0 needs about 7.7 GB.\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Streamlit server over a one-document index, with models/alpha.gguf and models/beta.gguf."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium")
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from rag.testing import write_tiny_gguf

    tmp = tmp_path_factory.mktemp("browser-models")
    docs, index = tmp / "docs", tmp / "index"
    docs.mkdir()
    (docs / "quantization.md").write_text(DOC, encoding="utf-8")
    for seed, name in enumerate(("alpha.gguf", "beta.gguf")):
        write_tiny_gguf(tmp / "models" / name, seed=seed)
    env = test_browser.app_env(RAG_INDEX_DIR=str(index), RAG_DOCS_DIR=str(docs),
                               RAG_RERANKER_MODEL=str(tmp / "no-reranker"), RAG_MAX_ANSWER_TOKENS="40")
    subprocess.run([sys.executable, "-m", "rag.ingest", str(docs), "--index", str(index), "--quiet"],
                   cwd=tmp, env=env, check=True, timeout=600)
    app = test_browser.Server(tmp, env)
    app.start()
    try:
        yield app.url
    finally:
        app.stop()


def sidebar_text(d) -> str:
    from selenium.webdriver.common.by import By

    found = d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    return found[0].text if found else ""


def test_switch_models_in_the_model_manager(server, driver, tmp_path):
    from selenium.webdriver.common.by import By

    d = driver
    d.get(server)
    wait_for(d, lambda: "GGUF loaded: alpha.gguf" in sidebar_text(d), what="the status card naming alpha.gguf")
    click_tab(d, "Models")
    use = wait_for(d, lambda: [b for b in d.find_elements(By.TAG_NAME, "button")
                               if b.text.strip() == "Use" and b.is_displayed()], what="a Use button")
    assert len(use) == 1  # alpha.gguf is the active one: its button says so and is disabled
    page = d.find_element(By.TAG_NAME, "body").text
    assert "alpha.gguf" in page and "beta.gguf" in page and "MB on disk" in page
    heading = next(h for h in d.find_elements(By.TAG_NAME, "h3") if "Installed models" in h.text)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'});", heading)
    time.sleep(0.5)
    png = d.get_screenshot_as_png()
    (tmp_path / "model-manager.png").write_bytes(png)
    if os.environ.get("RAG_SCREENSHOT_MODELS"):
        target = Path(os.environ["RAG_SCREENSHOT_MODELS"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)
    use[0].click()
    wait_for(d, lambda: "GGUF loaded: beta.gguf" in sidebar_text(d), what="the status card naming beta.gguf")
    assert "alpha.gguf" not in sidebar_text(d)
    d.refresh()  # the choice is the collection's: a reload keeps it
    wait_for(d, lambda: "GGUF loaded: beta.gguf" in sidebar_text(d), what="beta.gguf after a reload")
