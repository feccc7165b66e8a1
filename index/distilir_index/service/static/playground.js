// distilir-index search playground. Vanilla JS, no dependencies.
//
// Parameters in the URL fragment (never sent to the server), all optional:
//   #q=<query>&a=<left index>&b=<right index>&k=<hits per list>&key=<API key>
// With `q` the page searches at once (shareable links). `key` is moved into sessionStorage (this tab
// only) and removed from the address bar, so a copied link never carries it.
//
// Document text reaches the page only through textContent: nothing from the server is parsed as HTML.
"use strict";

(function () {
  const KEY_STORE = "distilir-playground-key";
  const TEXT_CHARS = 320;
  const $ = (id) => document.getElementById(id);
  let indexes = [];

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setState(value) {
    document.body.dataset.state = value;
  }

  function say(text, isError) {
    const box = $("message");
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
  }

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch (e) {
      return "";
    }
  }

  function storeKey(value) {
    try {
      if (value) sessionStorage.setItem(KEY_STORE, value);
      else sessionStorage.removeItem(KEY_STORE);
    } catch (e) {
      /* storage disabled: the key lives in the field only */
    }
  }

  function currentKey() {
    return $("key").value.trim() || storedKey();
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    const key = currentKey();
    if (key) headers["Authorization"] = "Bearer " + key;
    const init = { headers: headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(new URL(path, document.baseURI), init);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && data.error && data.error.message;
      throw new ApiError(response.status, detail || response.status + " " + response.statusText);
    }
    return data;
  }

  function explain(error) {
    if (error instanceof ApiError && error.status === 401) {
      return currentKey()
        ? "The API key was refused (401): " + error.message + ". Check the key field."
        : "This server needs an API key (401): enter it in the API key field, then search.";
    }
    if (error instanceof ApiError) return "The server answered " + error.status + ": " + error.message;
    return "The request failed: " + error.message;
  }

  function fail(error) {
    say(explain(error), true);
    setState(error instanceof ApiError && error.status === 401 ? "unauthorized" : "error");
  }

  function fillSelect(select, wanted, fallback) {
    select.replaceChildren();
    for (const info of indexes) {
      const option = el("option", "", info.name + " \u00b7 " + info.kind + " \u00b7 " + info.count + " docs");
      option.value = info.name;
      select.appendChild(option);
    }
    const names = indexes.map((i) => i.name);
    select.value = names.includes(wanted) ? wanted : fallback;
    return !wanted || names.includes(wanted);
  }

  async function loadIndexes(wantA, wantB) {
    const body = await api("v1/indexes");
    indexes = body.indexes;
    if (!indexes.length) throw new Error("the server has no index loaded");
    const first = indexes[0].name;
    const second = (indexes[1] || indexes[0]).name;
    const okA = fillSelect($("index-a"), wantA, first);
    const okB = fillSelect($("index-b"), wantB, second);
    if (!okA || !okB) {
      const missing = [okA ? null : wantA, okB ? null : wantB].filter(Boolean).join(", ");
      say("Not served here: " + missing + "; showing " + $("index-a").value + " and " + $("index-b").value + ".");
    }
  }

  function titleAndText(hit) {
    const meta = hit.metadata || {};
    const title = typeof meta.title === "string" ? meta.title.trim() : "";
    let text = hit.text == null ? "" : String(hit.text);
    if (title && text.startsWith(title)) text = text.slice(title.length).trim();
    if (text.length > TEXT_CHARS) text = text.slice(0, TEXT_CHARS).trimEnd() + "\u2026";
    return [title, text || (hit.text == null ? "(no text stored in this index)" : "")];
  }

  function renderColumn(which, answer, other) {
    const column = $("col-" + which);
    const info = indexes.find((i) => i.name === answer.index);
    column.dataset.index = answer.index;
    column.querySelector("h2").textContent = answer.index + (info ? " (" + info.kind + ")" : "");
    column.querySelector(".took").textContent =
      answer.hits.length + " hits in " + answer.took_ms.toFixed(1) + " ms";
    const rankInOther = new Map(other.hits.map((hit, i) => [hit.id, i + 1]));
    const list = column.querySelector("ol");
    list.replaceChildren();
    answer.hits.forEach((hit, i) => {
      const otherRank = rankInOther.get(hit.id);
      const item = el("li", "hit" + (otherRank === undefined ? " only-here" : ""));
      item.dataset.id = hit.id;
      item.dataset.rank = String(i + 1);
      const meta = el("div", "meta");
      meta.appendChild(el("span", "rank", "#" + (i + 1)));
      const score = el("span", "score", hit.score.toFixed(4));
      score.title = "score " + hit.score;
      meta.appendChild(score);
      const cross = el("span", "cross");
      cross.appendChild(el("span", "other-label", "in " + other.index + ": "));
      cross.appendChild(el("span", "other-rank", otherRank === undefined ? "\u2014" : String(otherRank)));
      meta.appendChild(cross);
      meta.appendChild(el("span", "doc-id", hit.id));
      item.appendChild(meta);
      const [title, text] = titleAndText(hit);
      if (title) item.appendChild(el("span", "title", title));
      item.appendChild(el("p", "text", text));
      list.appendChild(item);
    });
  }

  function shareFragment(query, a, b, k) {
    const p = new URLSearchParams({ q: query, a: a, b: b, k: String(k) });
    history.replaceState(null, "", location.pathname + location.search + "#" + p.toString());
  }

  async function search() {
    const query = $("query").value.trim();
    const a = $("index-a").value;
    const b = $("index-b").value;
    const k = Math.max(1, parseInt($("k").value, 10) || 10);
    if (!query) {
      say("Type a query.", true);
      return;
    }
    setState("searching");
    say("Searching\u2026");
    const [left, right] = await Promise.all([
      api("v1/search", { query: query, k: k, index: a }),
      api("v1/search", { query: query, k: k, index: b }),
    ]);
    renderColumn("a", left, right);
    renderColumn("b", right, left);
    const shared = left.hits.filter((h) => right.hits.some((o) => o.id === h.id)).length;
    $("summary").textContent =
      shared + " documents in both lists (" + left.hits.length + " hits left, " + right.hits.length +
      " right); yellow: only in that list.";
    say("");
    shareFragment(query, a, b, k);
    setState("done");
  }

  async function run(wantA, wantB) {
    try {
      if (!indexes.length) await loadIndexes(wantA, wantB);
      await search();
    } catch (error) {
      fail(error);
    }
  }

  async function start() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (params.has("key")) {
      storeKey(params.get("key"));
      params.delete("key");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    $("key").value = storedKey();
    $("query").value = params.get("q") || "";
    if (params.get("k")) $("k").value = params.get("k");
    $("key").addEventListener("change", () => storeKey($("key").value.trim()));
    $("forget-key").addEventListener("click", () => {
      $("key").value = "";
      storeKey("");
      say("Key forgotten.");
    });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      storeKey($("key").value.trim());
      run(params.get("a"), params.get("b"));
    });
    try {
      await loadIndexes(params.get("a"), params.get("b"));
      setState("ready");
      if (params.get("q")) await search();
    } catch (error) {
      fail(error);
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
