"""`Pluralism`: the community pool, models, rules and the graph, behind one object."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pluralism._flow import Runtime, State
from pluralism.config import default_dir, load_communities
from pluralism.embedding import Embedder, default_embedder
from pluralism.errors import InputError, UnknownModeError
from pluralism.graph import build_graph
from pluralism.models._protocol import ChatModel
from pluralism.router import Router, RouterSettings
from pluralism.settings import Settings
from pluralism.types import (
    Community,
    GenerationParams,
    Mode,
    PluralRequest,
    PluralResponse,
    clean_tags,
    parse_overton_style,
)

T = TypeVar("T")

MAX_PROMPT_CHARS = 100_000


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, even when the caller already has a running loop
    (a notebook, an ASGI handler): then it runs on a private loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="pluralism-sync")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def parse_mode(mode: str | Mode) -> Mode:
    try:
        return Mode(str(mode).strip().lower())
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise UnknownModeError(f"Unknown mode {mode!r}; use one of: {names}.") from None


class Pluralism:
    """Answers prompts in the three pluralism modes from a pool of community LMs.

    `rules` is the rule memory (`RuleMemory`) recalled into every prompt; `values` is the values
    catalogue, a `RuleMemory` of value statements whose entries an Overton answer names at its
    end (`Settings.values_k`). Either may be None.

    >>> p = Pluralism.default()
    >>> p.respond("Is it rude to arrive late to a dinner party?", mode="overton").text
    """

    def __init__(
        self,
        communities: Sequence[Community],
        *,
        embedder: Embedder | None = None,
        models: Any = None,
        meta: ChatModel | None = None,
        rules: Any = None,
        values: Any = None,
        settings: Settings | None = None,
    ) -> None:
        if not communities:
            raise InputError("Pluralism needs at least one community; add a community file")
        from pluralism._calls import prepare_adapters
        from pluralism.models import ModelPool

        self.settings = settings or Settings()
        self.embedder = embedder or default_embedder()
        self.models: ModelPool = (
            models if models is not None else ModelPool(threads=self.settings.threads)
        )
        self.meta = meta if meta is not None else self.models.get(self.settings.meta_model)
        self.rules = rules
        self.values = values
        st = self.settings
        self.router = Router(
            communities,
            self.embedder,
            RouterSettings(
                temperature=st.temperature,
                top_k=st.top_k,
                min_weight=st.min_weight,
                steer_threshold=st.steer_threshold,
            ),
        )
        self.runtime = Runtime(
            router=self.router,
            embedder=self.embedder,
            settings=st,
            community_model=self._community_model,
            meta=self.meta,
            rules=rules,
            values=values,
            communities={c.id: c for c in communities},
            principle_cache=_principle_cache(),
        )
        self.graph = build_graph(self.runtime)
        # llama.cpp takes its adapters when it starts: give it every community's now.
        prepare_adapters(self.models, communities)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> Pluralism:
        """A pool from a directory of community files, or a project directory holding
        `communities/` (and optionally `policies/`, loaded as the rule memory, and `values/`,
        the values catalogue Overton answers name)."""
        root = Path(path)
        communities_dir = root / "communities" if (root / "communities").is_dir() else root
        for key, name in (("rules", "policies"), ("values", "values")):
            if key not in kwargs and (root / name).is_dir():
                kwargs[key] = _rule_memory(root / name, kwargs.get("embedder"))
        return cls(load_communities(communities_dir), **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> Pluralism:
        """The shipped pool (five continents, three political perspectives, the US public, each
        with its adapter), the bundled MiniLM and SmolLM2 models, the default policies and the
        default values catalogue."""
        embedder = kwargs.setdefault("embedder", default_embedder())
        for key, name in (("rules", "policies"), ("values", "values")):
            if key not in kwargs:
                kwargs[key] = _rule_memory(default_dir(name), embedder)
        return cls(load_communities(default_dir("communities")), **kwargs)

    @property
    def communities(self) -> list[Community]:
        return list(self.router.communities)

    def _community_model(self, community: Community) -> ChatModel:
        model: ChatModel = self.models.get(community.model)
        return model

    # -- requests -------------------------------------------------------------------------------
    def request(
        self,
        prompt: str,
        *,
        mode: str | Mode | None = None,
        steer: str | None = None,
        population: str | None = None,
        options: Sequence[str] | None = None,
        principles: bool | None = None,
        tags: Sequence[str] | None = None,
        system: str | None = None,
        history: Sequence[dict[str, Any]] | None = None,
        params: GenerationParams | None = None,
        overton_style: str | None = None,
    ) -> PluralRequest:
        """Validate the arguments of one request; every bad input is an `InputError`.

        `tags` say what the request is about: rules whose scope names tags apply only to
        requests sharing one of them. `overton_style` overrides `Settings.overton_style` for
        this request. `params` are the final answer's sampling settings (default
        `Settings.meta`); where the drafts are the answer (Overton's list style, distributional
        without options) its `max_tokens` is shared among them.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("The prompt is empty; pass the question to answer.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(
                f"The prompt has {len(prompt):,} characters; shorten it to at most "
                f"{MAX_PROMPT_CHARS:,}."
            )
        resolved = parse_mode(mode if mode is not None else self.settings.default_mode)
        opts = None
        if options is not None:
            opts = [str(o).strip() for o in options]
            if len(opts) < 2 or any(not o for o in opts):
                raise InputError(
                    "Give at least two non-empty options, e.g. --option yes --option no."
                )
            if len(set(opts)) != len(opts):
                raise InputError("The options repeat one another; give each option once.")
            if len(opts) > 26:
                raise InputError("At most 26 options are supported (one letter each).")
        if resolved is Mode.STEERABLE and not (steer and steer.strip()):
            raise InputError(
                "Steerable mode needs a steer target: a community id such as 'europe' or a "
                "description such as 'a devout Catholic farmer in Poland'."
            )
        if isinstance(tags, str):
            raise InputError("Pass tags as a list of names, e.g. tags=['medical'].")
        style = None if overton_style is None else parse_overton_style(overton_style)
        return PluralRequest(
            prompt=prompt.strip(),
            mode=resolved,
            steer=steer,
            population=population,
            options=opts,
            principles=principles,
            tags=clean_tags(tags or []),
            system=system,
            history=list(history or []),
            params=params,
            overton_style=style,
        )

    async def arespond(self, prompt: str, **kwargs: Any) -> PluralResponse:
        """Answer one prompt; see `request` for the keyword arguments."""
        req = self.request(prompt, **kwargs)
        t0 = time.perf_counter()
        state: State = await self.graph.ainvoke({"request": req, "stream": False})
        return self._finish(state, t0)

    def respond(self, prompt: str, **kwargs: Any) -> PluralResponse:
        """Sync twin of `arespond`."""
        return run_sync(self.arespond(prompt, **kwargs))

    async def astream(self, prompt: str, **kwargs: Any) -> AsyncIterator[str | PluralResponse]:
        """Yield the meta-agent's text as it is produced, then the full `PluralResponse`.

        Community drafts are gathered first; only the final answer streams. Modes that need no
        final generation (distributional, steering over options, Overton in the "list" style)
        yield just the response.
        """
        req = self.request(prompt, **kwargs)
        t0 = time.perf_counter()
        final: State | None = None
        first_token_ms: float | None = None
        async for kind, chunk in self.graph.astream(
            {"request": req, "stream": True}, stream_mode=["custom", "values"]
        ):
            if kind == "custom" and isinstance(chunk, dict) and "token" in chunk:
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - t0) * 1000
                yield str(chunk["token"])
            elif kind == "values":
                final = chunk
        assert final is not None
        response = self._finish(final, t0)
        if first_token_ms is not None:
            response.trace.timings["first_token"] = round(first_token_ms, 3)
        yield response

    def _finish(self, state: State, t0: float) -> PluralResponse:
        response = state["response"]
        total = (time.perf_counter() - t0) * 1000
        timings = dict(state.get("timings", {}))
        model_ms = state.get("model_ms", 0.0)
        timings["models"] = round(model_ms, 3)
        timings["total"] = round(total, 3)
        # Time not spent waiting for models: what pluralism itself adds.
        timings["overhead"] = round(max(total - model_ms, 0.0), 3)
        trace = response.trace.model_copy(
            update={"timings": timings, "models": dict(state.get("models", {}))}
        )
        return response.model_copy(update={"trace": trace})

    def mermaid(self) -> str:
        """The flow as a Mermaid diagram (what `pluralism graph` prints)."""
        from pluralism.graph import mermaid

        return mermaid()


def _rule_memory(directory: Path, embedder: Embedder | None) -> Any:
    """The rule memory for a policies (or values) directory; None when the directory holds no
    YAML file or the rules package is absent."""
    try:
        from pluralism.rules import RuleMemory
    except ImportError:
        return None
    if not directory.is_dir() or not any(directory.glob("*.y*ml")):
        return None
    return RuleMemory.from_path(directory, embedder=embedder)


def _principle_cache() -> Any:
    try:
        from pluralism.rules import PrincipleCache
    except ImportError:
        return None
    return PrincipleCache()
