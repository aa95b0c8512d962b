"""src/run.sh as the Lambda Web Adapter starts it (working directory = the function's code, PORT set): it serves
the chat app's readiness check, and nothing but the chat route and the check."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[3] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    port = free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    process = subprocess.Popen([SOURCE / "run.sh"], cwd=SOURCE, env=environment)  # noqa: S603 - our script
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)  # noqa: S310 - our local server
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_run_sh_serves_the_readiness_check(app_url: str) -> None:
    with urllib.request.urlopen(f"{app_url}/healthz", timeout=5) as answer:  # noqa: S310
        assert answer.status == HTTPStatus.OK


def test_any_other_route_is_404_in_openais_shape(app_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{app_url}/v1/embeddings", data=b"{}", timeout=5)  # noqa: S310

    assert refused.value.code == HTTPStatus.NOT_FOUND
    assert set(json.loads(refused.value.read())["error"]) == {"message", "type", "param", "code"}
