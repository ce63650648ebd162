"""The openai backend against real HTTP servers on 127.0.0.1 (no mocked transport)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from pluralism.errors import UpstreamError
from pluralism.models import OpenAIChatModel
from pluralism.types import GenerationParams

from .conformance import ChatModelConformance, conv
from .openai_server import FakeUpstream, closed_port

KEY = "sk-test-very-secret-0123456789"
HELLO = [conv("You are terse.", "Say hello.")]


def make(upstream: FakeUpstream, **kw: object) -> OpenAIChatModel:
    options: dict[str, object] = {"api_key": KEY, "backoff_s": 0.01, "timeout_s": 5.0}
    options.update(kw)
    return OpenAIChatModel(upstream.base_url, "scripted-upstream", **options)  # type: ignore[arg-type]


class TestOpenAIConformance(ChatModelConformance):
    @pytest.fixture
    def model(self, upstream: FakeUpstream) -> OpenAIChatModel:
        return make(upstream)


def test_sends_model_key_and_sampling_params(upstream: FakeUpstream) -> None:
    p = GenerationParams(max_tokens=7, temperature=0.5, top_p=0.9, seed=3, stop=["\n"])
    make(upstream).generate(HELLO, p)
    (req,) = upstream.requests
    assert req["auth"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "scripted-upstream"
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (7, 0.5, 0.9)
    assert (body["seed"], body["stop"]) == (3, ["\n"])
    assert body["messages"] == HELLO[0]


def test_score_reads_letter_logprobs_across_shifts(upstream: FakeUpstream) -> None:
    # The server favours the *option* "yes" wherever it is shown, so unshifting recovers 3:1.
    assert make(upstream).score("Agree?", ["yes", "no"]) == pytest.approx([0.75, 0.25])
    assert all(r["body"]["max_tokens"] == 1 for r in upstream.requests)
    assert len(upstream.requests) == 2  # one request per ordering


def test_score_falls_back_to_the_text_answer_without_logprobs(upstream: FakeUpstream) -> None:
    upstream.logprobs = False
    assert make(upstream).score("Agree?", ["yes", "no"]) == pytest.approx([1.0, 0.0])


def test_batch_goes_out_concurrently(upstream: FakeUpstream) -> None:
    upstream.plan = ["slow"] * 5
    started = time.perf_counter()
    out = make(upstream).generate(HELLO * 5)
    assert len(out) == 5
    assert time.perf_counter() - started < 1.2  # five 0.3 s requests, not 1.5 s in a row


async def test_sync_generate_works_inside_a_running_loop(upstream: FakeUpstream) -> None:
    model = make(upstream)
    assert model.generate(HELLO)[0]
    assert (await asyncio.to_thread(model.generate, HELLO))[0]


async def test_stream_retries_before_the_first_byte(upstream: FakeUpstream) -> None:
    upstream.plan = ["500"]
    pieces = [p async for p in make(upstream).astream(HELLO[0])]
    assert "".join(pieces) == make(upstream).generate(HELLO)[0]


def test_500_then_success_is_retried(upstream: FakeUpstream) -> None:
    upstream.plan = ["500"]
    assert make(upstream).generate(HELLO)[0]
    assert len(upstream.requests) == 2


def test_persistent_500_becomes_502_after_retries(upstream: FakeUpstream) -> None:
    upstream.plan = ["500"] * 3
    with pytest.raises(UpstreamError) as info:
        make(upstream, max_retries=2).generate(HELLO)
    assert info.value.status_code == 502
    assert "HTTP 500" in str(info.value) and upstream.base_url in str(info.value)
    assert len(upstream.requests) == 3


def test_429_honours_retry_after(upstream: FakeUpstream) -> None:
    upstream.plan = ["429"]
    started = time.perf_counter()
    assert make(upstream).generate(HELLO)[0]
    assert time.perf_counter() - started >= 0.95  # Retry-After: 1 beats the 0.01 s backoff
    assert len(upstream.requests) == 2


def test_hang_times_out_as_504(upstream: FakeUpstream) -> None:
    upstream.plan = ["hang"]
    started = time.perf_counter()
    with pytest.raises(UpstreamError) as info:
        make(upstream, timeout_s=0.3).generate(HELLO)
    assert info.value.status_code == 504
    assert info.value.code == "upstream_timeout"
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("fault", "words"), [("garbage", "invalid JSON"), ("nochoices", "choices")]
)
def test_malformed_answers_are_502(upstream: FakeUpstream, fault: str, words: str) -> None:
    upstream.plan = [fault]
    with pytest.raises(UpstreamError, match=words) as info:
        make(upstream).generate(HELLO)
    assert info.value.status_code == 502


def test_connection_refused_is_502_naming_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    model = OpenAIChatModel(url, "m", api_key=KEY, max_retries=1, backoff_s=0.01)
    with pytest.raises(UpstreamError) as info:
        model.generate(HELLO)
    assert info.value.status_code == 502
    assert url in str(info.value) and "could not be reached" in str(info.value)
    assert KEY not in str(info.value)


def test_api_key_never_appears_in_errors(upstream: FakeUpstream) -> None:
    upstream.plan = ["echo-key"]  # the server quotes the Authorization header back
    with pytest.raises(UpstreamError) as info:
        make(upstream).generate(HELLO)
    assert "HTTP 401" in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)
    for fault in ["garbage", "hang", "500"]:
        upstream.plan = [fault] * 4
        with pytest.raises(UpstreamError) as info:
            make(upstream, timeout_s=0.3, max_retries=1).generate(HELLO)
        assert KEY not in str(info.value)


def test_a_key_quoted_near_the_cut_is_masked_before_the_cut(upstream: FakeUpstream) -> None:
    upstream.plan = ["quote-key-late"]
    with pytest.raises(UpstreamError) as info:
        make(upstream).generate(HELLO)
    assert "HTTP 401" in str(info.value)
    assert KEY[:10] not in str(info.value), "a prefix of the key survived the quote's cut"


def test_the_timeout_is_one_deadline_not_a_per_read_one(upstream: FakeUpstream) -> None:
    upstream.plan = ["trickle"]  # a byte every 0.2 s: each read is quick, the whole is not
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        make(upstream, timeout_s=1.0, max_retries=0).generate(HELLO)
    assert info.value.status_code == 504 and "within 1 s" in str(info.value)
    assert time.monotonic() - started < 3.0


def test_a_retry_after_past_the_deadline_fails_at_once(upstream: FakeUpstream) -> None:
    upstream.plan = ["retry-after-30"]
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        make(upstream, timeout_s=3.0, max_retries=2).generate(HELLO)
    assert info.value.status_code == 503 and "asked to wait 30 s" in str(info.value)
    assert time.monotonic() - started < 1.5
    assert len(upstream.requests) == 1


def test_lora_against_a_server_without_adapters_says_it_needs_llama_cpp(
    upstream: FakeUpstream,
) -> None:
    with pytest.raises(UpstreamError, match=r"has no LoRA adapter list.*llama\.cpp server"):
        make(upstream, lora="europe").generate(HELLO)


def test_credentials_in_the_url_are_not_quoted(upstream: FakeUpstream) -> None:
    url = upstream.base_url.replace("http://", "http://user:hunter2@")
    upstream.plan = ["garbage"]
    with pytest.raises(UpstreamError) as info:
        OpenAIChatModel(url, "m").generate(HELLO)
    assert "hunter2" not in str(info.value)


async def test_a_passed_in_client_is_used(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient(headers={"x-trace": "abc"}) as client:
        model = OpenAIChatModel(upstream.base_url, "m", client=client)
        assert (await model.agenerate(HELLO))[0]
        await model.aclose()  # must leave the caller's client alone
        assert not client.is_closed
    assert upstream.requests[0]["headers"]["x-trace"] == "abc"


async def test_aclose_releases_the_loop_client(upstream: FakeUpstream) -> None:
    model = make(upstream)
    await model.agenerate(HELLO)
    await model.aclose()
    assert (await model.agenerate(HELLO))[0]  # a fresh client is made on demand
    await model.aclose()
