"""Use pluralism as a library: one question in each of the three modes.

python examples/library_quickstart.py
"""

from pluralism import GenerationParams, Pluralism, Settings

# Short generations keep this quick on a laptop CPU; real deployments raise them.
settings = Settings(
    draft=GenerationParams(max_tokens=32, seed=0), meta=GenerationParams(max_tokens=64, seed=0)
)
plural = Pluralism.default(settings=settings)
question = "Should children be expected to care for their parents in old age?"

overton = plural.respond(question, mode="overton")
print("OVERTON:", overton.text)
for p in overton.perspectives:
    print(f"  {p.name} ({p.weight:.0%}): {p.text}")

steered = plural.respond(question, mode="steerable", steer="a retired teacher in Ghana")
print(f"\nSTEERED to {steered.steered_to}:", steered.text)

dist = plural.respond(
    question, mode="distributional", population="Japan", options=["Yes", "No", "It depends"]
)
print("\nDISTRIBUTION for Japan:", {k: round(v, 2) for k, v in (dist.distribution or {}).items()})
print("timings (ms):", dist.trace.timings)
