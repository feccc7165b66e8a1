"""OpenAIBackend over real HTTP: a small OpenAI-compatible completions server, started in this module
on 127.0.0.1 with uvicorn, answers with log-probabilities computed by the real SmolLM2 model.

The server below is test scaffolding (a minimal stand-in for vLLM's legacy completions endpoint:
``echo``, ``logprobs``, ``max_tokens`` <= 1, greedy); the client under test is not mocked. Token
``text_offset`` values are computed the way vLLM does, from cumulative detokenised lengths.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from distilir.teachers.llm_common import LoadedCausalLM, cached_copy, load_causal_lm, resolve_llm
from distilir.teachers.llm_listwise import LLMListwiseTeacher
from distilir.teachers.llm_pointwise import LLMPointwiseTeacher
from distilir.teachers.openai_backend import OpenAIBackend, OpenAIBackendError

ALIAS = "smollm2-135m-instruct"
MODEL_NAME = "smollm2-test"

QUERY = "Which organ produces insulin?"
DOCS = [
    "Insulin is a hormone produced by the beta cells of the pancreas; it lowers blood sugar.",
    "The football match ended in a draw after both teams scored twice.",
    "Bread is baked from flour, water and yeast.",
    "The liver stores glycogen and releases glucose into the blood.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> LoadedCausalLM:
    """Loaded from the user's cache if it holds the dequantised model (read only), else built in tmp;
    one torch thread (two collapse on a shared 2-core machine)."""
    cache = None if cached_copy(resolve_llm(ALIAS)) else str(tmp_path_factory.getbasetemp() / "llm-cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_causal_lm(ALIAS, cache_dir=cache)
    finally:
        torch.set_num_threads(threads)


class CompletionRequest(BaseModel):
    """The subset of the legacy completions request that the test server understands."""

    model: str
    prompt: str | list[str]
    max_tokens: int = 16
    logprobs: int | None = None
    echo: bool = False
    temperature: float = 1.0


def _make_app(lm: LoadedCausalLM, calls: dict[str, int]):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse

    tok, model = lm.tokenizer, lm.model
    lock = threading.Lock()

    def complete(text: str, req: CompletionRequest) -> dict:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with lock, torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        k = req.logprobs or 0
        offsets = [len(tok.decode(ids[:j])) for j in range(len(ids))]
        tokens, token_lps, tops, text_offset = [], [], [], []
        if req.echo:
            for j, i in enumerate(ids):
                end = offsets[j + 1] if j + 1 < len(ids) else len(text)
                tokens.append(text[offsets[j] : end])
                text_offset.append(offsets[j])
                token_lps.append(None if j == 0 else logp[j - 1, i].item())
                tops.append(None if j == 0 else _top(logp[j - 1], k))
        generated = ""
        if req.max_tokens >= 1:
            nxt = int(logp[-1].argmax())
            generated = tok.decode([nxt])
            tokens.append(generated)
            text_offset.append(len(text))
            token_lps.append(logp[-1, nxt].item())
            tops.append(_top(logp[-1], k))
        return {
            "text": (text if req.echo else "") + generated,
            "finish_reason": "length",
            "logprobs": {
                "tokens": tokens,
                "token_logprobs": token_lps,
                "top_logprobs": tops,
                "text_offset": text_offset,
            },
        }

    def _top(row: torch.Tensor, k: int) -> dict[str, float]:
        if k <= 0:
            return {}
        values, indices = row.topk(k)
        out: dict[str, float] = {}
        for v, i in zip(values.tolist(), indices.tolist(), strict=True):
            out.setdefault(tok.decode([i]), v)
        return out

    app = FastAPI()

    @app.post("/v1/completions")
    def completions(req: CompletionRequest):
        calls["ok"] = calls.get("ok", 0) + 1
        if req.model != MODEL_NAME:
            raise HTTPException(404, detail=f"model {req.model!r} not found")
        if req.max_tokens > 1:
            raise HTTPException(400, detail="this test server generates at most one token")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        choices = [{"index": i, **complete(p, req)} for i, p in enumerate(prompts)]
        return {"id": "cmpl-test", "object": "text_completion", "model": req.model, "choices": choices[::-1]}

    @app.post("/fail500/v1/completions")
    def fail500():
        calls["fail500"] = calls.get("fail500", 0) + 1
        return JSONResponse({"error": {"message": "the GPU caught fire"}}, status_code=500)

    @app.post("/slow/v1/completions")
    def slow():
        calls["slow"] = calls.get("slow", 0) + 1
        time.sleep(1.0)
        return {"choices": []}

    @app.post("/nologprobs/v1/completions")
    def nologprobs():
        return {"choices": [{"index": 0, "text": "x"}]}

    return app


@pytest.fixture(scope="module")
def server(smollm2):
    """(base_url, call counter) of a uvicorn server in a thread, on a free port of 127.0.0.1."""
    import uvicorn

    calls: dict[str, int] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(_make_app(smollm2, calls), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test completions server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", calls
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _backend(url: str, smollm2: LoadedCausalLM, **kw) -> OpenAIBackend:
    return OpenAIBackend(url, MODEL_NAME, tokenizer=smollm2.tokenizer, timeout=30, **kw)


def test_query_likelihood_over_http_equals_the_local_model(server, smollm2):
    url, _ = server
    local = LLMPointwiseTeacher(smollm2, mode="query_likelihood").score(QUERY, DOCS[:3])
    with _backend(url, smollm2, batch_size=2) as backend:
        remote_teacher = LLMPointwiseTeacher(backend, mode="query_likelihood")
        remote = remote_teacher.score(QUERY, DOCS[:3])
        assert backend.requests_sent == 2  # 3 prompts in batches of 2
    np.testing.assert_allclose(remote, local, atol=1e-4)
    assert remote[0] > remote[1]
    assert remote_teacher.get_config_dict()["model"] == {
        "backend": "openai-completions",
        "base_url": url,
        "model": MODEL_NAME,
    }


@pytest.mark.parametrize("top_logprobs", [20, 0])
def test_yes_no_over_http_equals_the_local_logit_difference(server, smollm2, top_logprobs):
    """top_logprobs=20 reads both answers from the top list; 0 forces the exact echo fallback."""
    url, _ = server
    local = LLMPointwiseTeacher(smollm2, mode="yes_no").score(QUERY, DOCS[:2])
    with _backend(url, smollm2, top_logprobs=top_logprobs) as backend:
        remote = LLMPointwiseTeacher(backend, mode="yes_no").score(QUERY, DOCS[:2])
    np.testing.assert_allclose(remote, local, atol=1e-4)


def test_next_token_scores_fall_back_to_echo_for_candidates_outside_the_top_list(server, smollm2):
    url, _ = server
    prompt = "The capital of France is"
    cands = [" Paris", " banana"]  # " banana" is far outside the top 2
    with _backend(url, smollm2, top_logprobs=2) as top2, _backend(url, smollm2, top_logprobs=0) as echo:
        a = top2.next_token_scores([prompt], [cands])[0]
        b = echo.next_token_scores([prompt], [cands])[0]
    np.testing.assert_allclose(a, b, atol=1e-4)
    ids = torch.tensor([smollm2.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        logp = torch.log_softmax(smollm2.model(input_ids=ids).logits[0, -1].float(), -1)
    banana = smollm2.tokenizer(" banana", add_special_tokens=False)["input_ids"]
    assert len(banana) == 1 and a[1] == pytest.approx(logp[banana[0]].item(), abs=1e-4)


def test_listwise_over_http_differs_from_local_by_one_constant(server, smollm2):
    """Log-probs are logits minus log-sum-exp per prompt; the window chaining absorbs that, leaving
    a single constant per query (the top window's log-sum-exp)."""
    url, _ = server
    kwargs = {"window": 3, "stride": 2, "max_passage_tokens": 24}
    local = LLMListwiseTeacher(smollm2, **kwargs).score(QUERY, DOCS)
    with _backend(url, smollm2, top_logprobs=20) as backend:
        remote = LLMListwiseTeacher(backend, **kwargs).score(QUERY, DOCS)
    diff = np.asarray(remote) - np.asarray(local)
    assert np.ptp(diff) < 1e-4
    assert diff[0] < 0  # log-probs are below the logits
    assert np.argsort(remote).tolist() == np.argsort(local).tolist()


def test_server_errors_are_retried_then_reported(server):
    url, calls = server
    backend = OpenAIBackend(url + "/fail500", MODEL_NAME, max_retries=2, backoff=0.01)
    with pytest.raises(OpenAIBackendError, match=r"after 3 attempt\(s\).*HTTP 500.*GPU caught fire"):
        backend.continuation_logprobs(["a"], [" b"])
    assert calls["fail500"] == 3


def test_client_errors_fail_at_once_with_the_server_message(server):
    url, calls = server
    before = calls.get("ok", 0)
    with OpenAIBackend(url, "no-such-model", max_retries=3) as backend:
        with pytest.raises(OpenAIBackendError, match="HTTP 404.*no-such-model.*not found"):
            backend.continuation_logprobs(["a"], [" b"])
    assert calls["ok"] == before + 1


def test_timeout_and_unreachable_server_give_clear_errors(server):
    url, _ = server
    with OpenAIBackend(url + "/slow", MODEL_NAME, timeout=0.2, max_retries=0) as backend:
        with pytest.raises(OpenAIBackendError, match="timeout=0.2"):
            backend.next_token_scores(["a"], [["b"]])
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    with OpenAIBackend(f"http://127.0.0.1:{free}", MODEL_NAME, max_retries=1, backoff=0.01) as backend:
        with pytest.raises(OpenAIBackendError, match="could not connect.*server is running"):
            backend.continuation_logprobs(["a"], [" b"])
    with OpenAIBackend(url + "/nologprobs", MODEL_NAME) as backend:
        with pytest.raises(OpenAIBackendError, match="no logprobs"):
            backend.continuation_logprobs(["a"], [" b"])


def test_constructor_validation():
    with pytest.raises(OpenAIBackendError, match="http"):
        OpenAIBackend("localhost:8000", "m")
    with pytest.raises(OpenAIBackendError, match="timeout"):
        OpenAIBackend("http://127.0.0.1:1", "m", timeout=0)
    with pytest.raises(OpenAIBackendError, match="top_logprobs"):
        OpenAIBackend("http://127.0.0.1:1", "m", top_logprobs=-1)
    b = OpenAIBackend("http://127.0.0.1:1/v1/", "m", api_key="secret")
    assert b.url == "http://127.0.0.1:1/v1/completions"
    assert "secret" not in str(b.describe())
    # Without a tokenizer, truncation is by words (0.75 words per token).
    assert b.truncate("one two three four five six seven eight", 4) == "one two three"
