"""`ChatModel` over any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, hosted APIs).

Plain httpx rather than the openai package: the proxy needs exact control of retries, timeouts
and error text (which must never leak the key), and one less heavy dependency.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from pluralism._json import dumps, loads
from pluralism._redact import cut, redact
from pluralism.errors import UpstreamError
from pluralism.models._choices import LETTERS, check_options, choice_conversation, shifts, unshift
from pluralism.models._http import LeanTransport, post_head
from pluralism.models._protocol import Conversation
from pluralism.types import GenerationParams

T = TypeVar("T")
R = TypeVar("R")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_MAX_SLEEP_S = 60.0


class OpenAIChatModel:
    """Async core with sync wrappers; a batch goes out as concurrent requests.

    An `httpx.AsyncClient` belongs to the event loop it first ran on, so the model keeps one
    client per loop; a passed-in `client` is used as is by the async methods (the caller keeps
    it on one loop), while the sync wrappers run a private loop with a short-lived client.
    `repetition_penalty` is not sent: it is not part of the OpenAI API and strict servers
    reject unknown fields.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        client: httpx.AsyncClient | None = None,
        backoff_s: float = 0.5,
        max_concurrency: int = 16,
        lean: LeanTransport | None = None,
        lora: str | int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._url = f"{self.base_url}/chat/completions"
        self._upstream = _redact_url(self._url)
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._max_concurrency = max_concurrency
        # With `client`'s own lean transport, JSON calls on `client` skip httpx's objects.
        self._lean = lean
        self._lean_url = httpx.URL(self._url)
        self._lean_head = post_head(self._lean_url, self._headers) if lean is not None else b""
        # A llama.cpp server's adapter, applied per request (`lora` in the body); resolved from
        # its `GET /lora-adapters` list on first use. vLLM names adapters as models instead.
        self.lora = lora
        self._lora_body: dict[str, Any] | None = None if lora is not None else {}

    # -- plumbing ---------------------------------------------------------------------------

    def _loop_client(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = httpx.AsyncClient()
        return client

    async def aclose(self) -> None:
        """Close the client this loop uses (a passed-in client stays the caller's to close)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def _run_sync(self, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        async def main() -> T:
            async with httpx.AsyncClient() as client:
                return await work(client)

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        # Called from inside a running loop: blocking it is the caller's choice, but nesting a
        # second loop in this thread is impossible, so the request runs on a helper thread.
        with ThreadPoolExecutor(1, thread_name_prefix="pluralism-openai") as pool:
            return pool.submit(asyncio.run, main()).result()

    def _error(self, what: str, status_code: int = 502) -> UpstreamError:
        text = redact(f"Upstream {self._upstream} {what}", self._secrets())
        return UpstreamError(text, status_code=status_code, upstream=self._upstream)

    def _secrets(self) -> list[str]:
        return [self._api_key] if self._api_key else []

    def _cut(self, text: str) -> str:
        """A quote of the server's text: its secrets masked first, then cut to 200 characters
        (cut first, and a key straddling the cut would survive all but its tail)."""
        return cut(text, 200, self._secrets())

    def _quote(self, body: bytes) -> str:
        """` (the server's own error message)`, if it sent one."""
        message = _error_message(body)
        return f" ({self._cut(message)})" if message else ""

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = self.backoff_s * 2.0**attempt
        jittered = base / 2 + random.uniform(0, base / 2)  # spread retries of concurrent requests
        return min(max(jittered, retry_after or 0.0), _MAX_SLEEP_S)

    async def _retrying(self, once: Callable[[], Awaitable[_Reply[R]]]) -> R:
        """Call `once` with retries on 429/5xx and dropped connections; a 2xx reply's result.

        `timeout_s` is one deadline for the whole call, retries and waits included: httpx's
        own timeout is per read, so an upstream trickling a byte a second would never hit it.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                return await self._attempts(once, deadline)
        except TimeoutError:
            raise self._error(
                f"did not answer within {self.timeout_s:g} s; raise timeout_s or check the server.",
                504,
            ) from None

    async def _attempts(self, once: Callable[[], Awaitable[_Reply[R]]], deadline: float) -> R:
        attempts = self.max_retries + 1
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            try:
                reply = await once()
            except httpx.TimeoutException as exc:
                raise self._error(
                    f"did not answer within {self.timeout_s:g} s; raise timeout_s or check the "
                    f"server.",
                    504,
                ) from exc
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(self._delay(attempt, None))
                    continue
                raise self._error(
                    f"could not be reached after {attempts} attempt(s) ({type(exc).__name__}); "
                    f"check base_url and that the server is running."
                ) from exc
            if reply.status < 400:
                return reply.result
            if reply.status in _RETRY_STATUS and attempt + 1 < attempts:
                await reply.close()
                wait = self._delay(attempt, reply.retry_after)
                if loop.time() + wait >= deadline:
                    # Waiting would only end in a timeout: say what the server asked for now.
                    raise self._error(
                        f"answered HTTP {reply.status} and asked to wait {wait:g} s before "
                        f"retrying, past the {self.timeout_s:g} s deadline; try again later.",
                        503 if reply.status in (429, 503) else 502,
                    )
                await asyncio.sleep(wait)
                continue
            detail = self._quote(await reply.body())
            await reply.close()
            raise self._error(
                f"answered HTTP {reply.status}{detail} after {attempt + 1} attempt(s); "
                f"check the model name, API key and server logs."
            )
        raise AssertionError("unreachable: the loop returns or raises")

    async def _send(
        self, client: httpx.AsyncClient, payload: dict[str, Any], *, stream: bool = False
    ) -> httpx.Response:
        """POST with retries; the response is 2xx."""

        async def once() -> _Reply[httpx.Response]:
            request = client.build_request(
                "POST", self._url, json=payload, headers=self._headers, timeout=self.timeout_s
            )
            resp = await client.send(request, stream=stream)
            return _Reply(resp.status_code, _retry_after(resp), resp, resp.aread, resp.aclose)

        return await self._retrying(once)

    async def _send_lean(self, lean: LeanTransport, payload: dict[str, Any]) -> bytes:
        """`_send` over the lean transport: the same retries and errors, the 2xx body back."""
        body = dumps(payload)

        async def once() -> _Reply[bytes]:
            status, headers, content = await lean.post(
                self._lean_url, self._lean_head, body, self.timeout_s
            )
            wait = _parse_retry_after(headers.get(b"retry-after", b"").decode("latin-1"))

            async def read() -> bytes:
                return content

            return _Reply(status, wait, content, read, _nothing)

        return await self._retrying(once)

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
        if self._lean is not None and client is self._client:
            content = await self._send_lean(self._lean, payload)
        else:
            content = (await self._send(client, payload)).content
        try:
            data = loads(content)
        except ValueError as exc:
            raise self._error(
                "answered with invalid JSON; check that base_url points at an OpenAI-compatible "
                "API."
            ) from exc
        if not isinstance(data, dict):
            raise self._error("answered JSON that is not an object; check base_url.")
        return data

    def _first_choice(self, data: dict[str, Any]) -> dict[str, Any]:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._error("answered without any choices; check the model name and server.")
        return choices[0]

    async def _resolve_lora(self, client: httpx.AsyncClient) -> None:
        """The request field that applies this model's adapter and no other.

        llama.cpp applies every adapter it loaded at its default scale unless a request says
        otherwise, so all of them are listed: this one at 1, the rest at 0.
        """
        if self._lora_body is not None:
            return
        root = self.base_url.removesuffix("/v1")
        try:
            resp = await client.get(
                f"{root}/lora-adapters", headers=self._headers, timeout=self.timeout_s
            )
            listed = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise self._error(
                f"did not list its LoRA adapters ({type(exc).__name__}); `lora:` needs a "
                f"llama.cpp server started with --lora."
            ) from exc
        if not isinstance(listed, list):
            raise self._error(
                "has no LoRA adapter list (GET /lora-adapters); `lora:` needs a llama.cpp server "
                "started with --lora (for vLLM, name the adapter as the model instead)."
            )
        ids = {int(a["id"]): Path(str(a.get("path", ""))).stem for a in listed if "id" in a}
        wanted = self.lora
        found = [i for i, stem in ids.items() if wanted in (i, stem, str(i))]
        if not found and isinstance(wanted, str):
            # Converted adapters are cached as <name>-<key>.gguf.
            found = [i for i, stem in ids.items() if stem.rsplit("-", 1)[0] == wanted]
        if len(found) != 1:
            names = ", ".join(f"{i} ({stem})" for i, stem in sorted(ids.items())) or "none"
            raise self._error(
                f"has no single LoRA adapter {wanted!r}; it serves: {names}. Set `lora:` to one "
                f"of their ids or file names.",
                400,
            )
        self._lora_body = {
            "lora": [{"id": i, "scale": 1.0 if i == found[0] else 0.0} for i in sorted(ids)]
        }

    def _payload(self, conversation: Conversation, p: GenerationParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            **(self._lora_body or {}),
            "model": self.model_id,
            "messages": [{"role": m["role"], "content": m["content"]} for m in conversation],
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.seed is not None:
            payload["seed"] = p.seed
        if p.stop:
            payload["stop"] = list(p.stop)
        return payload

    async def _gather(self, jobs: Sequence[Awaitable[T]]) -> list[T]:
        # Coroutines do nothing until awaited, so the gate bounds requests in flight.
        gate = asyncio.Semaphore(self._max_concurrency)

        async def one(job: Awaitable[T]) -> T:
            async with gate:
                return await job

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    # -- generation -------------------------------------------------------------------------

    async def achat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one chat-completion request body as given (with this model's name) and return
        the reply as the server sent it, once checked to have a choice.

        For pass-through use: fields this class does not model (tools, response_format, n,
        logprobs...) reach the server, and usage, finish_reason and tool calls come back.
        """
        data = await self._post(self._loop_client(), {**body, "model": self.model_id})
        self._first_choice(data)
        return data

    async def _complete(
        self, client: httpx.AsyncClient, conversation: Conversation, p: GenerationParams
    ) -> str:
        await self._resolve_lora(client)
        choice = self._first_choice(await self._post(client, self._payload(conversation, p)))
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            refusal = message.get("refusal") if isinstance(message, dict) else None
            if refusal:
                raise self._error(
                    f"refused to answer ({self._cut(str(refusal))}); rephrase the prompt."
                )
            raise self._error("answered a choice without text content; check the model name.")
        return content.strip()

    async def _agenerate_with(
        self, client: httpx.AsyncClient, batch: Sequence[Conversation], p: GenerationParams
    ) -> list[str]:
        return await self._gather([self._complete(client, c, p) for c in batch])

    async def agenerate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        return await self._agenerate_with(self._loop_client(), batch, params or GenerationParams())

    def generate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        p = params or GenerationParams()
        return self._run_sync(lambda client: self._agenerate_with(client, batch, p))

    async def astream(
        self, conversation: Conversation, params: GenerationParams | None = None
    ) -> AsyncIterator[str]:
        """Server-sent events (`stream: true`): one piece per `data:` chunk until `[DONE]`."""
        await self._resolve_lora(self._loop_client())
        payload = {**self._payload(conversation, params or GenerationParams()), "stream": True}
        started = False
        async for chunk in self._events(payload):
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                piece = delta.get("content") if isinstance(delta, dict) else None
                if not isinstance(piece, str):
                    continue
                if not started:
                    piece = piece.lstrip()
                    started = bool(piece)
                if piece:
                    yield piece

    async def achat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """`achat` with `stream: true`: each chunk as the server sent it, until `[DONE]`."""
        async for chunk in self._events({**body, "model": self.model_id, "stream": True}):
            yield chunk

    async def _events(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON chunks of a streamed reply; errors in or of the stream raise."""
        resp = await self._send(self._loop_client(), payload, stream=True)
        events = 0
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments and `event:` lines
                events += 1
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield self._chunk(data)
            if not events:  # e.g. an HTML error page served with status 200
                raise self._error(
                    "answered a stream without any server-sent events; check base_url."
                )
        except httpx.TimeoutException as exc:
            raise self._error(
                f"stalled for over {self.timeout_s:g} s while streaming.", 504
            ) from exc
        except httpx.TransportError as exc:
            raise self._error(f"dropped the stream ({type(exc).__name__}); try again.") from exc
        finally:
            await resp.aclose()

    def _chunk(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise self._error("streamed a chunk that is not JSON; check base_url.") from exc
        if not isinstance(chunk, dict) or "error" in chunk:
            detail = self._quote(data.encode())
            raise self._error(f"reported an error while streaming{detail}; try again.")
        return chunk

    # -- scoring ----------------------------------------------------------------------------

    async def _letter_probs(
        self, client: httpx.AsyncClient, conversation: Conversation, n: int
    ) -> list[float]:
        """Letter probabilities from `top_logprobs` of a one-token answer.

        Servers that return no logprobs (or none on a letter) get a one-hot vote on the letter
        their text answer starts with, uniform if there is none: a coarse but honest estimate.
        """
        await self._resolve_lora(client)
        payload = {
            **self._payload(conversation, GenerationParams(max_tokens=1, temperature=0.0)),
            "logprobs": True,
            "top_logprobs": 20,
        }
        choice = self._first_choice(await self._post(client, payload))
        letters = LETTERS[:n]
        probs = [0.0] * n
        logprobs = choice.get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if isinstance(content, list) and content and isinstance(content[0], dict):
            for entry in content[0].get("top_logprobs") or []:
                token = str(entry.get("token", "")).strip()
                if token in letters and len(token) == 1:
                    probs[letters.index(token)] += math.exp(float(entry.get("logprob", -math.inf)))
        if sum(probs) > 0:
            return probs
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        first = next((ch for ch in str(text or "").strip() if ch.isalpha()), "")
        if first.upper() in letters and first:
            probs[letters.index(first.upper())] = 1.0
            return probs
        return [1.0 / n] * n

    async def _score_with(
        self,
        client: httpx.AsyncClient,
        prompts: Sequence[str | Conversation],
        options: Sequence[str],
    ) -> list[list[float]]:
        check_options(options)
        orders = shifts(len(options))
        convs = [choice_conversation(p, options, o) for p in prompts for o in orders]
        n = len(options)
        probs = await self._gather([self._letter_probs(client, c, n) for c in convs])
        k = len(orders)
        return [unshift(probs[i * k : (i + 1) * k], orders) for i in range(len(prompts))]

    async def ascore_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        return await self._score_with(self._loop_client(), prompts, options)

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        check_options(options)  # fail before starting a loop and a client
        return self._run_sync(lambda client: self._score_with(client, prompts, options))

    async def ascore(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return (await self.ascore_batch([prompt], options))[0]

    def score(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return self.score_batch([prompt], options)[0]


def _redact_url(url: str) -> str:
    """The URL without user:password, so it can appear in messages and logs."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


@dataclass
class _Reply(Generic[R]):
    """One attempt's answer, as `_retrying` needs it."""

    status: int
    retry_after: float | None
    result: R  # what a 2xx attempt returns
    body: Callable[[], Awaitable[bytes]]  # the body of an error reply, for its message
    close: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def _retry_after(resp: httpx.Response) -> float | None:
    return _parse_retry_after(resp.headers.get("retry-after"))


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _error_message(body: bytes) -> str:
    """The server's own error message, if it sent one."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    return str(message) if message else ""
