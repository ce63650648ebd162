"""The request flow as a LangGraph `StateGraph`, built once per `Pluralism` and reused.

route → recall → [situate] → drafts (fan-out, one batch per model) → aggregate → [answer]

Nodes are closures over a `Runtime` (router, models, rules, settings) rather than globals, so two
instances with different pools never share state.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from pluralism._calls import generate_for, recall_rules, score_for, with_answers
from pluralism._flow import DraftTask, Runtime, State
from pluralism.errors import InputError
from pluralism.models._protocol import ChatModel
from pluralism.modes import distributional, overton, steerable
from pluralism.modes._prompts import context_block, draft_messages
from pluralism.population import population_weights
from pluralism.router import SteerMatch
from pluralism.types import (
    Community,
    Message,
    Mode,
    Perspective,
    PluralRequest,
    PluralResponse,
    RuleScope,
    Trace,
)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def build_graph(rt: Runtime) -> Any:
    """Compile the flow; the result is reused for every request."""

    async def route(state: State) -> dict[str, Any]:
        t0 = time.perf_counter()
        req = state["request"]
        routing = rt.router.route(req.prompt)
        notes: list[str] = []
        steer: SteerMatch | None = None
        population: dict[str, float] = {}
        if req.mode is Mode.STEERABLE:
            if not req.steer:
                raise InputError("steerable mode needs a steer target; pass steer='<community>'")
            if rt.settings.steer_method == "model":
                steer = await rt.router.select_with_model(req.steer, rt.meta)
            else:
                steer = rt.router.match(req.steer)
            active = {steer.community.id: 1.0}
        elif req.mode is Mode.DISTRIBUTIONAL:
            match = population_weights(
                req.population, rt.router.communities, strict=rt.settings.strict_population
            )
            if match.note:
                notes.append(match.note)
            population = match.weights
            # With no population to weigh by, the prompt decides who speaks (as in Overton).
            active = routing if match.uniform and not req.options else match.weights
        else:
            active = routing
        return {
            "routing": routing,
            "active": active,
            "steer": steer,
            "population": population,
            "notes": notes,
            "timings": {"route": _ms(t0)},
        }

    async def recall(state: State) -> dict[str, Any]:
        t0 = time.perf_counter()
        req = state["request"]
        scope = RuleScope(
            communities=sorted(state["active"]),
            populations=[req.population] if req.population else [],
            tags=req.tags,
        )
        out: dict[str, Any] = {"hits": [], "rules_version": None, "context": "", "values": []}
        if req.mode is Mode.OVERTON and rt.values is not None and rt.settings.values_k > 0:
            out["values"] = await recall_rules(rt.values, req.prompt, rt.settings.values_k, scope)
            # Read with the recall, as the rules' version is: an edit may land before the answer.
            out["values_version"] = rt.values.version
        if rt.rules is not None and rt.settings.rules_k > 0:
            from pluralism.rules import format_rules

            hits = await recall_rules(rt.rules, req.prompt, rt.settings.rules_k, scope)
            out.update(
                hits=hits,
                rules_version=rt.rules.version,
                context=context_block(format_rules(hits), []),
            )
        return {**out, "timings": {"recall": _ms(t0)}}

    async def situate(state: State) -> dict[str, Any]:
        t0 = time.perf_counter()
        from pluralism.rules import format_rules, situate_principles

        req, hits = state["request"], state.get("hits", [])
        st = rt.settings
        principles, rounds = await asyncio.to_thread(
            situate_principles,
            req.prompt,
            hits,
            rt.meta,
            max_principles=st.max_principles,
            threshold=st.principle_threshold,
            max_rounds=st.principle_rounds,
            cache=rt.principle_cache,
            rules_version=state.get("rules_version"),
        )
        ms = _ms(t0)
        return {
            "principles": principles,
            "principle_rounds": rounds,
            "context": context_block(format_rules(hits), principles),
            "timings": {"situate": ms},
            "model_ms": ms,
        }

    def fan_out(state: State) -> list[Send]:
        req = state["request"]
        groups: dict[str, dict[str, float]] = defaultdict(dict)
        for cid, w in state["active"].items():
            model = rt.community_model(rt.communities[cid])
            groups[model.model_id][cid] = w
        node = "score" if req.options else "draft"
        ctx, n = state.get("context", ""), len(state["active"])
        return [
            Send(node, DraftTask(request=req, context=ctx, members=m, drafts=n))
            for m in groups.values()
        ]

    def after_recall(state: State) -> str | list[Send]:
        wants = state["request"].principles
        if wants if wants is not None else rt.settings.principles:
            return "situate"
        return fan_out(state)

    def batch_for(task: DraftTask) -> tuple[list[Community], ChatModel, list[list[Message]]]:
        """The task's communities, the model they share, and one conversation each."""
        req = task["request"]
        members = [rt.communities[cid] for cid in task["members"]]
        convs = [
            draft_messages(
                c,
                req.prompt,
                context=task["context"],
                history=req.history,
                operator_system=req.system if drafts_answer(req) else None,
            )
            for c in members
        ]
        return members, rt.community_model(members[0]), convs

    def style_of(req: PluralRequest) -> str:
        return req.overton_style or rt.settings.overton_style

    def drafts_answer(req: PluralRequest) -> bool:
        """Whether the drafts themselves are the answer (no meta model rewrites them)."""
        return (req.mode is Mode.OVERTON and style_of(req) == "list") or (
            req.mode is Mode.DISTRIBUTIONAL and not req.options
        )

    def batch_result(
        step: str, model: ChatModel, drafts: list[Perspective], t0: float
    ) -> dict[str, Any]:
        ms = _ms(t0)
        return {
            "drafts": drafts,
            "timings": {f"{step}[{model.model_id}]": ms},
            "model_ms": ms,
            "models": {p.community: model.model_id for p in drafts},
        }

    async def draft(task: DraftTask) -> dict[str, Any]:
        t0 = time.perf_counter()
        members, model, convs = batch_for(task)
        # A client's sampling parameters shape the final answer; drafts keep the pool's own,
        # except that where the drafts are the answer they share its token budget.
        params = rt.settings.draft
        req = task["request"]
        if req.params is not None and drafts_answer(req):
            share = max(1, req.params.max_tokens // max(1, task["drafts"]))
            params = params.model_copy(update={"max_tokens": min(params.max_tokens, share)})
        texts = await generate_for(model, convs, members, params)
        drafts = [
            Perspective(community=c.id, name=c.name, weight=task["members"][c.id], text=t.strip())
            for c, t in zip(members, texts, strict=True)
        ]
        return batch_result("drafts", model, drafts, t0)

    async def score(task: DraftTask) -> dict[str, Any]:
        t0 = time.perf_counter()
        members, model, convs = batch_for(task)
        req = task["request"]
        options = req.options or []
        dists = await score_for(model, convs, options, members)
        notes: list[str] = []
        recall: dict[str, float] = {}
        recall_s = 0.0
        if rt.settings.answers_weight > 0 and any(c.answers for c in members):
            t1 = time.perf_counter()
            dists, notes = await asyncio.to_thread(
                with_answers,
                members,
                req.prompt,
                options,
                dists,
                rt.embedder,
                k=rt.settings.answers_k,
                weight=rt.settings.answers_weight,
            )
            # Recall is not model time: its own timing, out of the score step's model_ms.
            recall_s = time.perf_counter() - t1
            recall = {f"answers[{model.model_id}]": round(recall_s * 1000, 3)}
        drafts = [
            Perspective(
                community=c.id,
                name=c.name,
                weight=task["members"][c.id],
                text=options[max(range(len(d)), key=d.__getitem__)],
                distribution=dict(zip(options, d, strict=True)),
            )
            for c, d in zip(members, dists, strict=True)
        ]
        result = batch_result("score", model, drafts, t0 + recall_s)
        return {**result, "timings": {**result["timings"], **recall}, "notes": notes}

    async def aggregate(state: State) -> dict[str, Any]:
        t0 = time.perf_counter()
        req = state["request"]
        drafts = sorted(state.get("drafts", []), key=lambda p: (-p.weight, p.community))
        ctx = state.get("context", "")
        out: dict[str, Any] = {"meta_messages": None}
        trace_extra: dict[str, Any] = {}
        distribution: dict[str, float] | None = None
        text = ""
        steered_to = None
        if req.mode is Mode.OVERTON:
            kept, merged = overton.merge_near_duplicates(
                drafts, rt.embedder, threshold=rt.settings.merge_threshold
            )
            drafts, trace_extra["merged"] = kept, merged
            values = overton.render_values(state.get("values", []))
            if style_of(req) == "list":
                text = overton.with_values(overton.render_list(kept), values)
            else:
                out["meta_messages"] = overton.meta_messages(
                    req.prompt,
                    kept,
                    values=values,
                    context=ctx,
                    system=req.system,
                    history=req.history,
                )
        elif req.mode is Mode.STEERABLE:
            match = state["steer"]
            assert match is not None
            steered_to = match.community.id
            if req.options:
                distribution = drafts[0].distribution
                text = f"As {match.community.name}: {drafts[0].text}"
            else:
                out["meta_messages"] = steerable.meta_messages(
                    req.prompt,
                    match.community,
                    drafts[0].text,
                    context=ctx,
                    system=req.system,
                    history=req.history,
                )
        else:
            weights = state["population"]
            if req.options:
                per = {p.community: list((p.distribution or {}).values()) for p in drafts}
                mix = distributional.mixture(per, weights)
                distribution = dict(zip(req.options, mix, strict=True))
                text = distributional.render_options(req.options, mix, req.population)
            else:
                # The share of each view: the population's weights when there is a population,
                # otherwise the prompt's routing weights.
                total = sum(p.weight for p in drafts) or 1.0
                drafts = [p.model_copy(update={"weight": p.weight / total}) for p in drafts]
                text = distributional.render_perspectives(drafts, req.population)
        out["response"] = PluralResponse(
            text=text,
            mode=req.mode,
            perspectives=drafts,
            distribution=distribution,
            steered_to=steered_to,
            trace=Trace(
                routing=state.get("routing", {}),
                rules=[h.rule.id for h in state.get("hits", [])],
                rules_version=state.get("rules_version"),
                values=[h.rule.id for h in state.get("values", [])],
                values_version=state.get("values_version") if state.get("values") else None,
                principles=state.get("principles", []),
                principle_rounds=state.get("principle_rounds", 0),
                population_weights=state.get("population", {}),
                steer_score=steer.score if (steer := state.get("steer")) else None,
                notes=state.get("notes", []),
                **trace_extra,
            ),
        )
        out["timings"] = {"aggregate": _ms(t0)}
        return out

    async def answer(state: State) -> dict[str, Any]:
        t0 = time.perf_counter()
        messages = state.get("meta_messages") or []
        params = state["request"].params or rt.settings.meta
        if state.get("stream"):
            writer = get_stream_writer()
            pieces = []
            async for piece in rt.meta.astream(messages, params):
                pieces.append(piece)
                writer({"token": piece})
            text = "".join(pieces)
        else:
            (text,) = await rt.meta.agenerate([messages], params)
        ms = _ms(t0)
        text = text.strip()
        # Only Overton recalls values, so only an Overton answer gets the list after it.
        if footer := overton.render_values(state.get("values", [])):
            # The streamed text so far is the meta model's; the values list follows it.
            full = overton.with_values(text, footer)
            if state.get("stream"):
                writer({"token": full[len(text) :]})
            text = full
        response = state["response"].model_copy(update={"text": text})
        return {
            "response": response,
            "timings": {"answer": ms},
            "model_ms": ms,
            "models": {"meta": rt.meta.model_id},
        }

    def after_aggregate(state: State) -> str:
        return "answer" if state.get("meta_messages") else END

    g = StateGraph(State)
    g.add_node("route", route)
    g.add_node("recall", recall)
    g.add_node("situate", situate)
    g.add_node("draft", draft)  # type: ignore[arg-type]
    g.add_node("score", score)  # type: ignore[arg-type]
    g.add_node("aggregate", aggregate)
    g.add_node("answer", answer)
    g.add_edge(START, "route")
    g.add_edge("route", "recall")
    g.add_conditional_edges("recall", after_recall, ["situate", "draft", "score"])
    g.add_conditional_edges("situate", fan_out, ["draft", "score"])
    g.add_edge("draft", "aggregate")
    g.add_edge("score", "aggregate")
    g.add_conditional_edges("aggregate", after_aggregate, ["answer", END])
    g.add_edge("answer", END)
    return g.compile()


def mermaid() -> str:
    """The flow as Mermaid; the shape does not depend on any loaded model, so none is loaded."""
    text: str = build_graph(None).get_graph().draw_mermaid()  # type: ignore[arg-type]
    return text
