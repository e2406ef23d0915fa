"""Fixtures for tests/signing (helpers live in signing_helpers.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signing_helpers import Pki, issue_leaf, make_ca, make_event


@pytest.fixture
def event() -> dict[str, Any]:
    """A fresh copy of the realistic event, so tests may mutate it."""
    return copy.deepcopy(make_event())


@pytest.fixture(scope="session")
def pki() -> Pki:
    """One CA per test session (key generation is the slow part)."""
    ca_key, ca_cert = make_ca()

    def issue(public_key: Any, **kwargs: Any) -> Any:
        return issue_leaf(ca_key, ca_cert, public_key, **kwargs)

    return Pki(ca_key=ca_key, ca_cert=ca_cert, issue=issue)
