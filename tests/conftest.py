"""Test-wide guards: dummy AWS credentials, and no connection leaves this machine."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest

# Stand-in fixtures (``bedrock_standin``, ...) available to every test module.
pytest_plugins = [
    "tests.standins.bedrock",
    "tests.standins.slack",
    "tests.lambda_harness",
    "tests.standins.teams",
]

_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "ChatbotTests",
    "POWERTOOLS_SERVICE_NAME": "chatbot-tests",
}
for _name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_name, None)
os.environ.update(_DUMMY_ENV)
for _name in [n for n in os.environ if n.startswith(("AWS_ENDPOINT_URL", "SLACK_", "MICROSOFT_"))]:
    os.environ.pop(_name)
for _name in [n for n in os.environ if n.startswith("CHATBOT_")]:
    os.environ.pop(_name)


class NetworkBlocked(RuntimeError):
    """A test tried to reach beyond this machine."""


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}")
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def data_dir(tmp_path: object) -> Iterator[object]:
    """A fresh CHATBOT_DATA_DIR for one test."""
    yield tmp_path
