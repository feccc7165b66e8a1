"""The search playground page in a real headless browser: uvicorn on 127.0.0.1, Chromium headless
(``--dump-dom`` for the DOM after the page's script ran, ``--screenshot`` for the pixels).

References: the service's own ``/v1/search`` answers, fetched here with httpx (ids, ranks, scores, the
rank of each document in the other list). Skipped only when no Chromium binary is found
(``apt-get install chromium``, or ``DISTILIR_BROWSER=/path/to/chrome``; ``make test`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from distilir_index.service import ServiceSettings, create_app

API_KEY = "playground-key-42"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUERY = "vitamin D and bone density"
#: Only in the left index, and matching QUERY: shown there, "—" as its rank on the right.
EVIL = {
    "id": "evil-doc",
    "title": "<img src=x onerror=\"document.title='pwned-title'\">",
    "text": "<script>document.title='pwned-script'</script> vitamin D bone density <b>bold?</b>",
}
WINDOW = (1280, 900)


# -- a browser, a tiny DOM ---------------------------------------------------------------------------


def find_browser() -> str | None:
    """``$DISTILIR_BROWSER``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    named = os.environ.get("DISTILIR_BROWSER")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Runs headless Chromium on a URL with extra flags; returns its stdout. A fresh profile each time
    (so sessionStorage starts empty)."""
    binary = find_browser()
    if binary is None:
        named = os.environ.get("DISTILIR_BROWSER")
        pytest.skip(
            (f"DISTILIR_BROWSER={named!r} is not a program here; " if named else "")
            + "no Chromium found for the playground test: install Debian's `chromium` (apt-get install "
            "chromium; `make test` does) or set DISTILIR_BROWSER to a Chrome/Chromium binary"
        )
    profiles = tmp_path_factory.mktemp("chromium")
    runs = iter(range(1_000_000))

    def run(url: str, *flags: str) -> str:
        profile = profiles / f"profile-{next(runs)}"
        command = [
            binary,
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",  # root in containers; the page is ours and local
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",  # virtual time waits for the fetches to finish
            *flags,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{binary} exited with {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    return run


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in (n.attrs.get("class") or "").split())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert len(found) == 1, f"expected one <{tag} class={cls} {attrs}>, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def page_url(base: str, **params: str) -> str:
    return f"{base}/playground#{urlencode(params)}" if params else f"{base}/playground"


# -- the server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_paths(tmp_path_factory, docs) -> dict[str, Path]:
    """Two BM25 indexes over the test SciFact documents that rank differently: ``bm25`` (Lucene's
    defaults, plus EVIL) and ``bm25-long`` (k1=1.5, b=0.9: long documents pay more; without EVIL)."""
    from distilir_index.bm25 import BM25Index

    root = tmp_path_factory.mktemp("playground")
    left = BM25Index()
    left.add(
        [d["id"] for d in docs] + [EVIL["id"]],
        [d["text"] for d in docs] + [f"{EVIL['title']} {EVIL['text']}"],
        metadata=[d["metadata"] for d in docs] + [{"title": EVIL["title"]}],
    )
    right = BM25Index(k1=1.5, b=0.9)
    right.add([d["id"] for d in docs], [d["text"] for d in docs], metadata=[d["metadata"] for d in docs])
    return {"bm25": left.save(root / "bm25"), "bm25-long": right.save(root / "bm25-long")}


@pytest.fixture(scope="module")
def server(serve, index_paths):
    settings = ServiceSettings(indexes=index_paths, api_key=API_KEY, batch_wait_ms=0)
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def expected(server) -> dict[str, list[dict]]:
    """The service's own answers to QUERY, k=10: the page must show exactly these."""
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as client:
        answers = {}
        for name in ("bm25", "bm25-long"):
            r = client.post("/v1/search", json={"query": QUERY, "k": 10, "index": name})
            assert r.status_code == 200, r.text
            answers[name] = r.json()["hits"]
    return answers


@pytest.fixture(scope="module")
def searched_dom(browser, server) -> Node:
    html = browser(page_url(server, q=QUERY, a="bm25", b="bm25-long", k="10", key=API_KEY), "--dump-dom")
    return parse(html)


# -- tests --------------------------------------------------------------------------------------------


def test_the_page_is_static_and_open_its_data_calls_need_the_key(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        page = client.get("/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "bm25" not in page.text and API_KEY not in page.text  # no index names, no key
        script = client.get("/playground/playground.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/playground/playground.css").status_code == 200
        assert client.get("/v1/indexes").status_code == 401
        refused = client.post("/v1/search", json={"query": QUERY, "k": 10, "index": "bm25"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        wrong = client.get("/v1/indexes", headers={"X-API-Key": "not-the-key"})
        assert wrong.status_code == 401
        assert client.get("/v1/indexes", headers=AUTH).status_code == 200


def test_both_columns_show_each_index_hits_scores_and_cross_ranks(searched_dom, expected):
    body = searched_dom.one("body")
    assert body.attrs["data-state"] == "done", searched_dom.one(id="message").text
    assert searched_dom.one("title").text == "distilir-index playground"
    shared = absent = 0
    for column, name, other in (("col-a", "bm25", "bm25-long"), ("col-b", "bm25-long", "bm25")):
        section = searched_dom.one("section", id=column)
        assert section.attrs["data-index"] == name
        assert section.one("h2").text.startswith(name)
        hits = section.find_all("li", cls="hit")
        assert [h.attrs["data-id"] for h in hits] == [h["id"] for h in expected[name]]
        assert len(hits) >= 3
        other_rank = {h["id"]: r for r, h in enumerate(expected[other], start=1)}
        for rank, (item, want) in enumerate(zip(hits, expected[name], strict=True), start=1):
            assert item.one(cls="rank").text == f"#{rank}"
            assert float(item.one(cls="score").text) == pytest.approx(want["score"], abs=5e-5)
            assert item.one(cls="doc-id").text == want["id"]
            cross = item.one(cls="other-rank").text
            assert item.one(cls="other-label").text == f"in {other}: "
            if want["id"] in other_rank:
                assert cross == str(other_rank[want["id"]])
                shared += 1
            else:
                assert cross == "—" and "only-here" in item.attrs["class"]
                absent += 1
            title = want["metadata"].get("title")
            if title and want["id"] != EVIL["id"]:
                assert item.one(cls="title").text == title
                assert item.one(cls="text").text.rstrip("…") in want["text"]
    assert shared >= 2 and absent >= 1  # both cases of the cross-rank column were checked
    assert EVIL["id"] in {h["id"] for h in expected["bm25"]}  # the escaping case below is on the page


def test_document_text_is_shown_as_text_never_as_html(searched_dom):
    evil = searched_dom.one("li", cls="hit", data_id=EVIL["id"])
    assert evil.one(cls="title").text == EVIL["title"]
    assert evil.one(cls="text").text == EVIL["text"]
    assert evil.one(cls="other-rank").text == "—"  # not in the other index at all
    assert not searched_dom.find_all("img") and not searched_dom.find_all("b")
    scripts = searched_dom.find_all("script")
    assert [s.attrs.get("src") for s in scripts] == ["playground/playground.js"]
    assert not [n for n in searched_dom.iter() if any(a.startswith("on") for a in n.attrs)]
    assert searched_dom.one("title").text == "distilir-index playground"  # nothing ran


def test_without_the_key_the_page_says_a_key_is_needed(browser, server):
    dom = parse(browser(page_url(server, q=QUERY, a="bm25", b="bm25-long"), "--dump-dom"))
    assert dom.one("body").attrs["data-state"] == "unauthorized"
    message = dom.one(id="message")
    assert "needs an API key" in message.text and "error" in message.attrs["class"]
    assert not dom.find_all("li", cls="hit") and not dom.find_all("option")  # nothing leaked

    dom = parse(browser(page_url(server, q=QUERY, key="not-the-key"), "--dump-dom"))
    assert dom.one("body").attrs["data-state"] == "unauthorized"
    assert "API key was refused" in dom.one(id="message").text
    assert not dom.find_all("li", cls="hit")


def test_the_screenshot_shows_two_filled_columns(browser, server, tmp_path):
    import numpy as np
    from PIL import Image

    shot = tmp_path / "playground.png"
    url = page_url(server, q=QUERY, a="bm25", b="bm25-long", key=API_KEY)
    browser(url, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == WINDOW
        rgb = image.convert("RGB")
    width, height = WINDOW
    for left, right in ((0, width // 2), (width // 2, width)):  # each column, below the form
        pixels = np.asarray(rgb.crop((left, 250, right, height))).reshape(-1, 3)
        inked = float((pixels.min(axis=1) < 200).mean())  # text and the cards' borders
        assert inked > 0.02, f"the column at x={left}..{right} looks blank ({inked:.1%} inked)"
        colours = len(np.unique(pixels, axis=0))
        assert colours > 50, f"{colours} colours: no rendered text in the results"


def test_the_playground_setting_turns_the_page_off(serve, index_paths):
    assert ServiceSettings().playground is True
    settings = ServiceSettings(indexes={"bm25": index_paths["bm25"]}, playground=False, batch_wait_ms=0)
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/playground", "/playground/playground.js", "/playground/playground.css"):
            assert client.get(path).status_code == 404
        assert client.post("/v1/search", json={"query": QUERY, "k": 3}).status_code == 200
