"""The broker fixtures live in tests/conftest.py, shared with the end-to-end tests; re-exported for imports."""

from tests.conftest import AMQP_URL, Admin

__all__ = ["AMQP_URL", "Admin"]
