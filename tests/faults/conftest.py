"""The end-to-end fixtures (a bridge in a temp folder, a running service), shared by the fault tests."""

from tests.e2e.conftest import make_bridge, run_service  # noqa: F401 (fixtures: pytest finds them by name here)
