"""The web page at / (quanta/serve/static: index.html, app.js, style.css), end to end: a real `quanta serve`
subprocess with the real Qwen model, driven through Debian's chromium in headless mode with selenium.

The server runs with --api-key, so every test also goes through the page's key handling (the page is open,
/props and the model routes are not). Each test starts from empty browser storage. Replies are greedy
(temperature 0) and short, except the one that is stopped mid-stream.
"""

import time

import pytest

from conftest import require_tool
from serving import metric, quanta_server

httpx = pytest.importorskip("httpx")
pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

KEY = "page-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SYSTEM = "You are a helpful assistant. Answer briefly, in plain text."


class Served:
    def __init__(self, url, model):
        self.url, self.model = url, model
        self.http = httpx.Client(base_url=url, headers=AUTH, timeout=120)

    def metric(self, name):
        return metric(self.url, name, AUTH)


@pytest.fixture(scope="module")
def server(qwen_path, sd_gguf):
    sd = str(sd_gguf("sd1"))
    with quanta_server(qwen_path, "-np", "2", "--ctx-size", "4096", "--api-key", KEY, "--sd-model", sd) as (url, _):
        served = Served(url, httpx.get(url + "/v1/models", headers=AUTH).json()["data"][0]["id"])
        served.sd_path = sd
        yield served
        served.http.close()


@pytest.fixture(scope="module")
def driver():
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"):
        options.add_argument(arg)
    options.binary_location = require_tool("chromium")
    d = webdriver.Chrome(options=options, service=Service(require_tool("chromedriver")))
    yield d
    d.quit()


def wait(d, condition, timeout=60, message=""):
    return WebDriverWait(d, timeout, poll_frequency=0.05).until(lambda d: condition(), message)


def fresh_page(d, server, key=True):
    """The page with empty storage (and the API key for this tab unless key=False), once /props answered."""
    d.get(server.url + "/")
    d.execute_script("localStorage.clear(); sessionStorage.clear();"
                     + (f"sessionStorage.setItem('quanta.apiKey', {KEY!r});" if key else ""))
    d.refresh()
    if key:
        wait(d, lambda: d.find_element(By.ID, "model-name").text == server.model, 30, "the page never got /props")


def settings(d, **values):
    """Types sampler settings into the settings panel (opening it first)."""
    if "settings-open" not in d.find_element(By.TAG_NAME, "body").get_attribute("class"):
        d.find_element(By.ID, "settings-toggle").click()
    for name, value in values.items():
        field = d.find_element(By.ID, {"system": "system-prompt"}.get(name, name))
        field.clear()
        field.send_keys(str(value))


def ask(d, text):
    prompt = d.find_element(By.ID, "prompt")
    prompt.send_keys(text)
    d.find_element(By.ID, "send").click()


def last_reply(d):
    """(status, text) of the last assistant bubble, or None."""
    return d.execute_script("""
        const a = Array.from(document.querySelectorAll('[data-testid=message-assistant]')).pop();
        return a ? [a.dataset.status, a.querySelector('[data-testid=message-content]').textContent] : null;""")


def stored_chats(d):
    return d.execute_script("return JSON.parse(localStorage.getItem('quanta.chats.v1'))")


def test_page_asks_for_the_api_key(driver, server):
    d = driver
    fresh_page(d, server, key=False)
    wait(d, lambda: d.find_element(By.ID, "api-key-row").is_displayed(), 30, "no API key field")
    assert "API key" in d.find_element(By.ID, "error-text").text
    d.find_element(By.ID, "api-key").send_keys(KEY)
    wait(d, lambda: d.find_element(By.ID, "model-name").text == server.model, 30, "the key did not unlock /props")
    assert not d.find_element(By.ID, "error").is_displayed()
    assert d.execute_script("return sessionStorage.getItem('quanta.apiKey')") == KEY
    assert d.execute_script("return localStorage.getItem('quanta.apiKey')") is None  # "remember" is unchecked


def test_streamed_reply_matches_the_api(driver, server):
    d = driver
    fresh_page(d, server)
    settings(d, system=SYSTEM, temperature=0, max_tokens=48)
    question = "Name five fruits, one per line."
    body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "temperature": 0, "max_tokens": 48}
    # Cache the prompt first, so the page's request and the reference below both evaluate only its last token
    # over the same cached prefix: a whole prompt of 16 or more tokens runs the GEMM, which rounds a little
    # differently from the row kernels a cached prefix plus one token runs, and greedy text can then differ.
    server.http.post("/v1/chat/completions", json=dict(body, max_tokens=1))
    ask(d, question)
    lengths = set()
    while True:
        status, text = last_reply(d) or ("streaming", "")
        if status != "streaming":
            break
        if text:
            lengths.add(len(text))
        time.sleep(0.02)
    assert status in ("done", "length"), d.find_element(By.ID, "error-text").text
    assert len(lengths) >= 2, f"the reply did not grow while streaming (lengths seen: {sorted(lengths)})"
    assert text.strip()

    reply = stored_chats(d)["chats"][0]["messages"][-1]["content"]
    expected = server.http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert reply == expected
    assert d.find_element(By.CSS_SELECTOR, "[data-testid=message-user] [data-testid=message-content]").text \
        == question
    assert not d.find_element(By.ID, "regenerate").get_attribute("disabled")


def test_stop_mid_stream_frees_the_slot(driver, server):
    d = driver
    fresh_page(d, server)
    settings(d, temperature=0, max_tokens=400)
    tokens_before = server.metric("completion_tokens_total")
    ask(d, "Write a long, detailed essay on the history of computing, from the abacus to today.")
    wait(d, lambda: len((last_reply(d) or ("", ""))[1]) > 20, 60, "no text streamed")
    assert d.find_element(By.ID, "stop").is_displayed() and not d.find_element(By.ID, "send").is_displayed()
    d.find_element(By.ID, "stop").click()
    wait(d, lambda: last_reply(d)[0] == "stopped", 10, "the reply was not marked stopped")
    stopped = last_reply(d)[1]
    time.sleep(1.0)
    assert last_reply(d) == ["stopped", stopped], "the reply kept growing after Stop"
    wait(d, lambda: server.metric("busy_slots") == 0, 10, "the server kept the slot busy after Stop")
    assert server.metric("completion_tokens_total") - tokens_before < 400  # cut short, not run to max_tokens
    assert d.find_element(By.ID, "send").is_displayed()
    assert "stopped" in d.find_element(By.CSS_SELECTOR, "[data-testid=message-assistant] .meta").text
    assert stored_chats(d)["chats"][0]["messages"][-1] == {
        "role": "assistant", "content": stopped, "status": "stopped", "model": server.model}

    # Regenerate replaces the stopped reply with a new one.
    settings(d, max_tokens=6)
    d.find_element(By.ID, "regenerate").click()
    wait(d, lambda: last_reply(d)[0] in ("done", "length"), 60, "the regenerated reply did not finish")
    messages = stored_chats(d)["chats"][0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["status"] in ("done", "length") and messages[1]["content"]
    assert len(d.find_elements(By.CSS_SELECTOR, "[data-testid=message-assistant]")) == 1


def test_conversations_survive_a_reload(driver, server):
    d = driver
    fresh_page(d, server)
    settings(d, temperature=0, max_tokens=6)
    ask(d, "Say hello.")
    wait(d, lambda: last_reply(d)[0] in ("done", "length"), 60, "the first reply did not finish")
    first_reply = last_reply(d)[1]
    d.find_element(By.ID, "new-chat").click()
    assert not d.find_elements(By.CSS_SELECTOR, "[data-testid=message-assistant]")
    d.find_element(By.ID, "prompt").send_keys("Say goodbye.", Keys.ENTER)  # Enter sends too
    wait(d, lambda: last_reply(d)[0] in ("done", "length"), 60, "the second reply did not finish")

    d.refresh()
    wait(d, lambda: d.find_element(By.ID, "model-name").text == server.model, 30)
    titles = [b.text for b in d.find_elements(By.CSS_SELECTOR, "[data-testid=conversation-open]")]
    assert titles == ["Say goodbye.", "Say hello."]  # the latest first, and it is the one open
    assert d.find_element(By.CSS_SELECTOR, "[data-testid=message-user]").text.endswith("Say goodbye.")

    d.find_elements(By.CSS_SELECTOR, "[data-testid=conversation-open]")[1].click()
    assert d.find_element(By.CSS_SELECTOR, "[data-testid=message-user] .content").text == "Say hello."
    assert last_reply(d) == ["done", first_reply] or last_reply(d) == ["length", first_reply]

    d.find_elements(By.CSS_SELECTOR, "[data-testid=conversation-delete]")[0].click()
    d.refresh()
    wait(d, lambda: d.find_element(By.ID, "model-name").text == server.model, 30)
    titles = [b.text for b in d.find_elements(By.CSS_SELECTOR, "[data-testid=conversation-open]")]
    assert titles == ["Say hello."]


MARKDOWN = """\
Here is **bold**, *italic* and `inline <code>`.

```python
print("<b>hi</b>")
```

- one
- [two](https://example.com/?a=1&b=2)
- [three](javascript:alert(1))

<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">
"""


def test_markdown_renderer_is_safe(driver, server):
    d = driver
    d.get(server.url + "/")
    wait(d, lambda: d.execute_script("return !!window.quanta"), 10)
    html = d.execute_script("""
        const html = quanta.renderMarkdown(arguments[0]);
        const box = document.createElement('div');
        box.id = 'md-test';
        box.innerHTML = html;
        document.body.append(box);
        return html;""", MARKDOWN)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    box = d.find_element(By.ID, "md-test")
    code = box.find_element(By.CSS_SELECTOR, "pre > code")
    assert code.get_attribute("class") == "language-python"
    assert code.get_attribute("textContent") == 'print("<b>hi</b>")'
    assert box.find_element(By.CSS_SELECTOR, "p > strong").text == "bold"
    assert box.find_element(By.CSS_SELECTOR, "p > em").text == "italic"
    assert box.find_element(By.CSS_SELECTOR, "p > code").text == "inline <code>"
    items = box.find_elements(By.CSS_SELECTOR, "ul > li")
    assert [li.text for li in items] == ["one", "two", "[three](javascript:alert(1))"]
    links = box.find_elements(By.TAG_NAME, "a")
    assert [a.get_attribute("href") for a in links] == ["https://example.com/?a=1&b=2"]
    assert links[0].get_attribute("rel") == "noopener noreferrer"
    assert not box.find_elements(By.CSS_SELECTOR, "script, img, b")
    time.sleep(0.2)
    assert d.execute_script("return window.__xss") is None


def test_image_tab_shows_the_generated_png(driver, server):
    """The Images tab appears with an image model; Generate shows the PNG the API makes, which holds
    quanta.Diffusion's pixels for the same settings."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    import quanta

    d = driver
    fresh_page(d, server)
    tab = d.find_element(By.ID, "tab-images")
    wait(d, tab.is_displayed, 10, "no Images tab")
    tab.click()
    wait(d, lambda: d.find_element(By.ID, "panel-images").is_displayed(), 10)
    assert not d.find_element(By.ID, "panel-chat").is_displayed()
    for field, value in (("image-prompt", "a red cube"), ("image-size", "48x32"), ("image-steps", "2"),
                         ("image-seed", "9")):
        box = d.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    d.find_element(By.ID, "image-generate").click()
    img = wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "[data-testid=image]"), 120, "no image appeared")[0]
    wait(d, lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 48, 10)
    src = img.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    ref = quanta.Diffusion(server.sd_path, n_threads=1).sample("a red cube", width=48, height=32, steps=2, seed=9)
    assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(ref))
    # A bad size is the API's message in the page's error bar, and the button works again.
    box = d.find_element(By.ID, "image-size")
    box.clear()
    box.send_keys("50x32")
    d.find_element(By.ID, "image-generate").click()
    wait(d, lambda: "multiples of 8" in d.find_element(By.ID, "error-text").text, 30, "no error shown")
    assert d.find_element(By.ID, "image-generate").is_enabled()
