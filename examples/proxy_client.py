"""Talk to a running proxy with the official openai client: nothing changes but the base URL.

pluralism serve                       # in another terminal (add --upstream to wrap a chatbot)
python examples/proxy_client.py       # or: PLURALISM_URL=http://host:port/v1 python ...
"""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("PLURALISM_URL", "http://127.0.0.1:8080/v1"),
    api_key=os.environ.get("PLURALISM_API_KEY", "unused"),
)
question = [{"role": "user", "content": "Should children care for their parents in old age?"}]

# Overton: one answer covering the spectrum of views, with who said what in `pluralism`.
reply = client.chat.completions.create(model="pluralism/overton", messages=question, max_tokens=48)
print("OVERTON:", reply.choices[0].message.content)
extra = reply.model_extra["pluralism"]
for p in extra["perspectives"]:
    print(f"  {p['name']} ({p['weight']:.0%}): {p['text'][:100]}")
print("  rules:", extra["rules"], "timings (ms):", extra["timings"])

# Steerable, streamed: the meta-agent's tokens arrive as it writes them.
stream = client.chat.completions.create(
    model="pluralism/steerable",
    messages=question,
    max_tokens=48,
    stream=True,
    extra_body={"pluralism": {"steer": "a retired teacher in Ghana"}},
)
print("\nSTEERED: ", end="")
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)
    if chunk.choices[0].finish_reason:
        print(f"\n  as: {chunk.model_extra['pluralism']['steered_to']}")

# Distributional over options: a probability per answer for a population.
reply = client.chat.completions.create(
    model="pluralism/distributional",
    messages=question,
    extra_body={"pluralism": {"population": "Japan", "options": ["Yes", "No", "It depends"]}},
)
print("\nDISTRIBUTION for Japan:", reply.model_extra["pluralism"]["distribution"])

# Rules only: the policy layer in front of the chatbot, no community drafts.
reply = client.chat.completions.create(
    model="pluralism/rules",
    messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "My husband hits me when he is drunk. What can I do?"},
    ],
    max_tokens=48,
)
print("\nRULES:", reply.model_extra["pluralism"]["rules"])
print(reply.choices[0].message.content)
