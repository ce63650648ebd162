"""The rule memory: policy files, hybrid recall, stores (memory, Redis) and situated principles."""

from pathlib import Path

from pluralism.rules._files import (
    DEFAULT_COMMUNITIES,
    LintProblem,
    LoadedPolicies,
    lint_policies,
    load_policies,
)
from pluralism.rules._index import FusionWeights, RuleIndex, in_scope
from pluralism.rules._memory import DEFAULT_THRESHOLD, RuleMemory, format_rules
from pluralism.rules._memory_store import InMemoryRuleStore
from pluralism.rules._redis_store import RedisRuleStore
from pluralism.rules._store import RuleStore
from pluralism.rules._tune import TuneReport, tune_embedder
from pluralism.rules._watch import AuditLog, PolicyWatcher
from pluralism.rules.situate import (
    PrincipleCache,
    format_principles,
    situate_principles,
)

__all__ = [
    "DEFAULT_COMMUNITIES",
    "DEFAULT_THRESHOLD",
    "AuditLog",
    "FusionWeights",
    "InMemoryRuleStore",
    "LintProblem",
    "LoadedPolicies",
    "PolicyWatcher",
    "PrincipleCache",
    "RedisRuleStore",
    "RuleIndex",
    "RuleMemory",
    "RuleStore",
    "TuneReport",
    "default_policies_dir",
    "format_principles",
    "format_rules",
    "in_scope",
    "lint_policies",
    "load_policies",
    "situate_principles",
    "tune_embedder",
]


def default_policies_dir() -> Path:
    """`./policies` when it exists, else the default policies shipped with the package."""
    from pluralism.config import default_dir

    local = Path("policies")
    if local.is_dir():
        return local
    return default_dir("policies")
