"""Bring your own communities: a directory of YAML files is a pool, no code change needed.

python examples/custom_pool.py
"""

from pathlib import Path

from pluralism import GenerationParams, Pluralism, Settings

here = Path(__file__).parent / "my_pool"
plural = Pluralism.from_path(
    here,
    settings=Settings(draft=GenerationParams(max_tokens=24), meta=GenerationParams(max_tokens=48)),
)
print("communities:", [c.id for c in plural.communities])
r = plural.respond("Should the town build a new highway through the fields?", mode="overton")
print(r.text)
for p in r.perspectives:
    print(f"  {p.name} ({p.weight:.0%}): {p.text}")
s = plural.respond(
    "Is a four-day week a good idea?", mode="steerable", steer="someone who works the land"
)
print("steered to:", s.steered_to)
