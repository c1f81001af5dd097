"""Fixtures of the timing gates: the gate fixture and one inference server per installed framework."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The plugin's fixtures and summary hook, imported so that pytest finds them in this conftest.
from bench.gates.pytest_plugin import (  # noqa: F401
    gate_settings,
    pytest_terminal_summary,
    timing_gate,
)
from bench.gates.server import InferenceServer
from bench.runner import child_environment
from tests.frameworks import HAS_TF, HAS_TORCH

INSTALLED = {"torch": HAS_TORCH, "tf": HAS_TF}


@pytest.fixture(scope="session")
def inference_servers(
    tmp_path_factory: pytest.TempPathFactory,
    gate_settings,  # noqa: F811 - the fixture imported above, requested by name
) -> Iterator[dict[str, InferenceServer]]:
    """Start a server for each installed framework at once, so that both start up in parallel."""
    out_dir = tmp_path_factory.mktemp("inference-servers")
    env = child_environment(gate_settings.threads)
    servers = {
        framework: InferenceServer(framework, out_dir, gate_settings.threads, env)
        for framework, installed in INSTALLED.items()
        if installed
    }
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def server_for(inference_servers):
    """Return a function that gives the ready server of a framework, or skips when it is not installed."""

    def ready_server(framework: str) -> InferenceServer:
        server = inference_servers.get(framework)
        if server is None:
            pytest.skip(f"{framework} is not installed: pip install -e '.[{framework}]'")
        server.ready()
        return server

    return ready_server
