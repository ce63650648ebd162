from __future__ import annotations

import json

from pluralism.rules._files import policy_schema, schema_path


def test_shipped_schema_matches_the_model() -> None:
    shipped = json.loads(schema_path().read_text(encoding="utf-8"))
    assert shipped == policy_schema(), "regenerate it: python -m pluralism.rules._files"


def test_schema_describes_the_rule_fields() -> None:
    rule = policy_schema()["$defs"]["Rule"]
    assert set(rule["required"]) == {"id", "text"}
    assert {"scope", "priority", "always", "source", "examples"} <= set(rule["properties"])
    assert rule["properties"]["priority"]["maximum"] == 100
