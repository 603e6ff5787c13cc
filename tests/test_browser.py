"""End to end in a real headless browser: the Streamlit server, Debian's Chromium, selenium.

Builds an index from data/docs plus one hostile document, starts `streamlit run app/chat.py` on a
free localhost port, asks a question, waits for the answer, opens its first citation card and
saves a screenshot (in the test's tmp folder, and at RAG_SCREENSHOT when set). Then asks about the
hostile document and checks that nothing in it ran or loaded: no alert, no script effects, no
<img> or link it planted, and no request reached the beacon server its Markdown points at.

Needs `chromium` and `chromium-driver` (apt-get install -y chromium chromium-driver); skipped
without them.
"""
from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists()),
                    None)
QUESTION = "How much memory does a 7B model need in Q4_K_M?"
EVIL_QUESTION = "What is the quokka telemetry note?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Beacon:
    """A local HTTP server standing in for http://evil/: counts every request it gets."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # the http.server API names it so
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hostile_markdown(beacon: str) -> str:
    """One sentence, so the payload sits in the chunk (and the extractive answer) the question finds."""
    return (
        "# Quokka telemetry note\n\n"
        "The quokka telemetry note <script>window.__pwned = 1; alert('script ran');</script> "
        f"![beacon]({beacon}/beacon.png) <img src=\"{beacon}/img.png\" onerror=\"window.__pwned = 2\"> "
        "[click me](javascript:window.__pwned=3) <a href=\"javascript:window.__pwned=4\">or me</a> "
        f"<iframe src=\"{beacon}/frame\"></iframe> :red[not red] $x^2$ is a rendering safety test.\n\n"
        "Quokkas are small marsupials that live on Rottnest Island near Perth.\n")


@pytest.fixture(scope="module")
def beacon():
    b = Beacon()
    yield b
    b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, beacon):
    """The Streamlit server over a fresh index of data/docs + the hostile note; yields its URL."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium")
    tmp = tmp_path_factory.mktemp("browser")
    docs, index = tmp / "docs", tmp / "index"
    shutil.copytree(ROOT / "data" / "docs", docs)
    (docs / "quokka-telemetry.md").write_text(hostile_markdown(beacon.url), encoding="utf-8")
    env = app_env(RAG_INDEX_DIR=str(index), RAG_DOCS_DIR=str(docs),
                  RAG_RERANKER_MODEL=str(tmp / "no-reranker"))  # reranker missing: the app must answer anyway
    subprocess.run([sys.executable, "-m", "rag.ingest", str(docs), "--index", str(index), "--quiet"],
                   cwd=tmp, env=env, check=True, timeout=600)
    app = Server(tmp, env)
    app.start()
    try:
        yield app.url
    finally:
        app.stop()


def app_env(**rag: str) -> dict[str, str]:
    """This process's environment without RAG_ settings, plus `rag` (RAG_INDEX_DIR=…): what the app
    and the ingest CLI of a browser test run under."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **rag)
    return env


class Server:
    """`streamlit run app/chat.py` in `cwd` (where rag-data/ lives) on a free localhost port;
    restartable on the same port."""

    def __init__(self, cwd: Path, env: dict[str, str], *, toolbar: str = "viewer") -> None:
        self.cwd, self.env, self.toolbar, self.port = cwd, env, toolbar, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.cwd / "streamlit.log", "ab")  # the server writes to it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "chat.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none", "--client.toolbarMode", self.toolbar],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while not healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_text = (self.cwd / "streamlit.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"streamlit did not start:\n{log_text}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@pytest.fixture(scope="module")
def driver(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1440,1000", "--force-device-scale-factor=1",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def wait_for(d, predicate, timeout: float = 120, what: str = "condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(d, timeout, poll_frequency=0.3).until(lambda _: predicate())
    except Exception as err:  # say what was awaited, with the page text
        body = d.find_element("tag name", "body").text[-2000:]
        raise AssertionError(f"timed out waiting for {what}; page ends with:\n{body}") from err


def click_tab(d, name: str) -> None:
    """Click the page's tab whose label holds `name` (again if a rerun redrew the tabs under the
    click), then wait for the rerun the click starts to end: it redraws the tab's elements."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def click() -> bool:
        try:
            tabs = [t for t in d.find_elements(By.CSS_SELECTOR, '[role="tab"]') if name in t.text]
            if tabs:
                tabs[0].click()
            return bool(tabs)
        except StaleElementReferenceException:
            return False

    wait_for(d, click, timeout=60, what=f"the {name} tab")
    time.sleep(0.5)  # the rerun starts

    def settled() -> bool:
        try:
            selected = d.find_element(By.CSS_SELECTOR, '[role="tab"][aria-selected="true"]').text
            state = d.find_element(By.CSS_SELECTOR, '[data-testid="stApp"]').get_attribute("data-test-script-state")
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return name in selected and state == "notRunning"

    wait_for(d, settled, timeout=120, what=f"the {name} tab open and the page's rerun done")


def ask(d, question: str, n_answers: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait_for(d, lambda: d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatInput"] textarea'),
                   what="the chat input")[0]
    box.click()
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait_for(d, lambda: len(d.find_elements(By.CSS_SELECTOR, ".rag-answer, .rag-refusal")) >= n_answers
             and not d.find_elements(By.CSS_SELECTOR, ".rag-streaming"), what=f"answer {n_answers}")


def open_card(d, prefix: str, nth_answer: int):
    """Click the first card whose label matches the regex `prefix` under answer `nth_answer` (0-based)."""
    from selenium.webdriver.common.by import By

    def matching():
        # The cards render just after the streamed text: on a loaded machine, a moment later.
        messages = d.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessage"]')
        answers = [m for m in messages if m.find_elements(By.CSS_SELECTOR, ".rag-answer, .rag-refusal")]
        if len(answers) <= nth_answer:
            return []
        summaries = answers[nth_answer].find_elements(By.CSS_SELECTOR, '[data-testid="stExpander"] summary')
        return [s for s in summaries if re.search(prefix, s.text)]

    found = wait_for(d, matching, timeout=60, what=f"a source card matching {prefix!r}")
    summary = found[0]
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", summary)
    summary.click()
    details = summary.find_element(By.XPATH, "./..")
    wait_for(d, lambda: details.find_elements(By.CSS_SELECTOR, "mark") and
             details.find_element(By.CSS_SELECTOR, "mark").is_displayed(), what="the highlighted quote")
    return details


def test_question_answer_and_citation_card_in_a_real_browser(server, driver, beacon, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    d = driver
    d.get(server)
    ask(d, QUESTION, 1)
    answer = d.find_element(By.CSS_SELECTOR, ".rag-answer")
    assert re.search(r"\[\d+\]", answer.text), answer.text  # an inline citation marker
    card = open_card(d, r"\[\d+\]", 0)
    assert card.find_element(By.CSS_SELECTOR, "mark").text.strip()
    assert "retrieval" not in card.text  # the scores are behind the card's own "details"
    details = next(s for s in card.find_elements(By.CSS_SELECTOR, "summary") if s.text.strip().endswith("details"))
    details.click()
    wait_for(d, lambda: "retrieval" in card.text, timeout=10, what="the scores under details")
    d.execute_script("arguments[0].scrollIntoView({block: 'end'});", card)
    time.sleep(0.5)  # let the expander animation settle
    png = d.get_screenshot_as_png()
    (tmp_path / "screenshot.png").write_bytes(png)
    if os.environ.get("RAG_SCREENSHOT"):  # RAG_SCREENSHOT=docs/screenshot.png refreshes the README's picture
        target = Path(os.environ["RAG_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)

    # A document full of HTML, scripts, an image beacon and javascript: links renders as text.
    ask(d, EVIL_QUESTION, 2)
    card = open_card(d, r"\[\d+\]", 1)
    assert "quokka-telemetry.md" in card.text
    page_text = d.find_element(By.TAG_NAME, "body").text
    assert f"![beacon]({beacon.url}/beacon.png)" in page_text  # shown, literally
    assert "<script>" in page_text
    time.sleep(1.0)  # give any stray request time to arrive
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018 - the property raises when no alert is open
    assert d.execute_script("return window.__pwned === undefined")
    srcs = d.execute_script("return [...document.querySelectorAll('img, iframe')].map(e => e.src)")
    assert not [s for s in srcs if s and not s.startswith((server, "data:", "blob:"))], srcs
    hrefs = d.execute_script("return [...document.querySelectorAll('a')].map(e => e.getAttribute('href') || '')")
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:") or beacon.url in h], hrefs
    assert beacon.hits == []
