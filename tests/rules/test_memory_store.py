from __future__ import annotations

from collections.abc import Iterator

import pytest

from pluralism.rules import InMemoryRuleStore
from tests.rules.conformance import DIM, StoreConformance


class TestInMemoryRuleStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[InMemoryRuleStore]:
        s = InMemoryRuleStore(DIM)
        yield s
        s.close()
