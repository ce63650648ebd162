"""The proxy through the official openai client: sync, async and streaming, in every mode."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from .proxy import ProxyServer
from .upstream import Upstream

QUESTION = "Should I tip at restaurants?"
MODES: list[tuple[str, dict[str, Any]]] = [
    ("pluralism/overton", {}),
    ("pluralism/steerable", {"pluralism": {"steer": "europe"}}),
    ("pluralism/distributional", {"pluralism": {"population": "Japan"}}),
    ("pluralism/rules", {}),
]


def info(completion: Any) -> dict[str, Any]:
    extra: dict[str, Any] = completion.model_extra["pluralism"]
    return extra


@pytest.mark.parametrize(("model", "extra"), MODES)
def test_sync_client_in_every_mode(
    client: openai.OpenAI, upstream: Upstream, model: str, extra: dict[str, Any]
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], extra_body=extra
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == model
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    p = info(completion)
    assert p["mode"] == model.split("/")[1]
    assert {"request", "overhead", "models"} <= set(p["timings"])
    assert float(raw.headers["x-pluralism-overhead-ms"]) >= 0
    assert p["rules"] == ["tipping-local-custom"] and p["rules_version"]
    if p["mode"] == "rules":
        assert p["perspectives"] == []
        assert completion.choices[0].message.content == f"echo: {QUESTION}"
    else:
        assert p["perspectives"] and p["routing"]
    if p["mode"] == "steerable":
        assert p["steered_to"] == "europe"


@pytest.mark.parametrize("stream", [False, True])
def test_overton_list_style_per_request(client: openai.OpenAI, stream: bool) -> None:
    extra = {"pluralism": {"overton_style": "list"}}
    messages = [{"role": "user", "content": QUESTION}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="pluralism/overton", messages=messages, extra_body=extra, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        p = chunks[-1].model_extra["pluralism"]
    else:
        completion = client.chat.completions.create(
            model="pluralism/overton", messages=messages, extra_body=extra
        )
        text = completion.choices[0].message.content or ""
        p = info(completion)
    # The answer is the community drafts under their names; no meta model wrote it. The values
    # it touches (from the shipped catalogue) follow, and the reply says which they were.
    views, values = text.split("\n\nValues that may be at stake:\n")
    assert views.startswith("Views differ on this:\n- ")
    assert views.count("\n- ") == len(p["perspectives"])
    assert values.count("- ") == len(p["values"]) >= 1 and p["values_version"]
    assert "answer" not in p["timings"]


@pytest.mark.parametrize(("model", "extra"), MODES)
async def test_async_client_in_every_mode(
    aclient: openai.AsyncOpenAI, model: str, extra: dict[str, Any]
) -> None:
    completion = await aclient.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], extra_body=extra
    )
    assert completion.choices[0].message.content
    assert info(completion)["mode"] == model.split("/")[1]


@pytest.mark.parametrize(("model", "extra"), MODES)
def test_streaming_in_every_mode(client: openai.OpenAI, model: str, extra: dict[str, Any]) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body=extra,
        stream=True,
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason == "stop"
    final = chunks[-1].model_extra["pluralism"]
    assert final["mode"] == model.split("/")[1]
    assert {"request", "overhead"} <= set(final["timings"])
    if model != "pluralism/distributional":  # distributional has no final generation
        assert len(chunks) > 3  # the meta-agent's pieces arrived one by one
        assert final["timings"]["first_token"] > 0


async def test_async_streaming(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="pluralism/overton",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream]
    assert "".join(pieces).startswith("echo:")


def test_stream_is_sse_ending_in_done(proxy: ProxyServer) -> None:
    body = {
        "model": "pluralism/rules",
        "stream": True,
        "messages": [{"role": "user", "content": QUESTION}],
    }
    with httpx.stream("POST", f"{proxy.base_url}/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert float(r.headers["x-pluralism-overhead-ms"]) >= 0
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"


def test_system_prompt_history_and_sampling_reach_the_upstream(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    client.chat.completions.create(
        model="pluralism/rules",
        messages=[
            {"role": "system", "content": "You are TravelBot."},
            {"role": "user", "content": "Tipping in the US?"},
            {"role": "assistant", "content": "Usually 20%."},
            {"role": "user", "content": "And in Japan, should I tip at restaurants?"},
        ],
        temperature=0.7,
        top_p=0.9,
        max_tokens=33,
        seed=7,
        stop=["\n\n"],
    )
    sent = upstream.requests[-1]["body"]
    messages = sent["messages"]
    assert messages[0]["role"] == "system"
    # The recalled rule comes first, then the client's own system prompt.
    assert "customs differ by country" in messages[0]["content"]
    assert messages[0]["content"].endswith("You are TravelBot.")
    assert [m["content"] for m in messages[1:]] == [
        "Tipping in the US?",
        "Usually 20%.",
        "And in Japan, should I tip at restaurants?",
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (
        0.7,
        0.9,
        33,
        7,
    )
    assert sent["stop"] == ["\n\n"]
    assert sent["model"] == "chatbot"


def test_rules_mode_forwards_the_request_and_reply_whole(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    # Fields the proxy does not model (tools, user) reach the chatbot, and its reply comes
    # back with usage and fingerprint, as a policy layer should leave them.
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    completion = client.chat.completions.create(
        model="pluralism/rules",
        messages=[{"role": "user", "content": "Is it rude not to tip in Japan?"}],
        tools=tools,
        user="u-42",
    )
    sent = upstream.requests[-1]["body"]
    assert sent["tools"] == tools and sent["user"] == "u-42"
    assert "pluralism" not in sent
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    assert completion.system_fingerprint == "fp-upstream"
    assert completion.model == "pluralism/rules"
    assert completion.choices[0].finish_reason == "tool_calls"
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert info(completion)["rules"] == ["tipping-local-custom"]


def test_rules_mode_streams_the_upstream_chunks_through(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    tools: Any = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    chunks = list(
        client.chat.completions.create(
            model="pluralism/rules",
            messages=[{"role": "user", "content": "Is it rude not to tip in Japan?"}],
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta]
    names = [t.function.name for group in calls if group for t in group if t.function]
    assert names == ["weather"]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "tool_calls" and finish.count("tool_calls") == 1
    # The usage chunk comes last, as OpenAI sends it, and carries the proxy's object.
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    final: Any = chunks[-1].model_extra
    assert final["pluralism"]["rules"] == ["tipping-local-custom"]
    assert all(c.model == "pluralism/rules" for c in chunks)
    assert upstream.requests[-1]["body"]["stream"] is True


@pytest.mark.parametrize("model", ["pluralism/rules", "pluralism/overton"])
def test_tags_from_the_body_reach_tag_scoped_rules(client: openai.OpenAI, model: str) -> None:
    def rules(extra: dict[str, Any]) -> list[str]:
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}], extra_body=extra
        )
        found: list[str] = info(completion)["rules"]
        return found

    assert rules({}) == ["tipping-local-custom"]
    assert set(rules({"pluralism": {"tags": ["business"]}})) == {
        "tipping-local-custom",
        "tipping-business-travel",
    }


def test_overton_meta_prompt_carries_system_and_history(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    client.chat.completions.create(
        model="pluralism/overton",
        messages=[
            {"role": "system", "content": "You are TravelBot."},
            {"role": "user", "content": "Tipping in the US?"},
            {"role": "assistant", "content": "Usually 20%."},
            {"role": "user", "content": [{"type": "text", "text": "And in Japan?"}]},
        ],
        max_completion_tokens=20,
    )
    (meta,) = upstream.requests  # drafts are scripted; only the meta-agent is the upstream
    messages = meta["body"]["messages"]
    assert messages[0]["content"].startswith("You are TravelBot.")
    assert [m["content"] for m in messages[1:3]] == ["Tipping in the US?", "Usually 20%."]
    assert "And in Japan?" in messages[-1]["content"]
    assert meta["body"]["max_tokens"] == 20


def test_mode_from_body_field_and_default(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    by_body = client.chat.completions.create(
        model="pluralism", messages=messages, extra_body={"pluralism": {"mode": "rules"}}
    )
    assert info(by_body)["mode"] == "rules"
    # The upstream's own model name keeps unchanged clients working, in the default mode.
    default = client.chat.completions.create(model="chatbot", messages=messages)
    assert info(default)["mode"] == "overton"


def test_distributional_with_options(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="pluralism/distributional",
        messages=[{"role": "user", "content": "Is it fine to eat with your hands?"}],
        extra_body={"pluralism": {"population": "Japan", "options": ["yes", "no"]}},
    )
    dist = info(completion)["distribution"]
    assert set(dist) == {"yes", "no"} and sum(dist.values()) == pytest.approx(1.0)


def test_models_lists_the_four_modes(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [
        "pluralism/overton",
        "pluralism/steerable",
        "pluralism/distributional",
        "pluralism/rules",
    ]


def test_a_client_leaving_mid_stream_is_counted_and_cleaned_up(
    proxy: ProxyServer, upstream: Upstream
) -> None:
    upstream.plan.append("slow-stream")
    body = {
        "model": "pluralism/rules",
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six seven"}],
    }
    with httpx.stream("POST", f"{proxy.base_url}/chat/completions", json=body) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"{proxy.url}/metrics").text
        if 'status="disconnected"' in text and "pluralism_requests_in_flight 0.0" in text:
            break
        assert time.monotonic() < deadline, "the abandoned stream was never cleaned up"
        time.sleep(0.1)
    assert (
        httpx.post(f"{proxy.base_url}/chat/completions", json={**body, "stream": False}).status_code
        == 200
    )
