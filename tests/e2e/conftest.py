"""Runs the offline stack the way `make local` does (`python -m offline`), as a child process on a free port,
and gives the tests its stack.json, its URLs and boto3 clients pointed at its emulator."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60


@dataclass
class RunningStack:
    """A child `python -m offline` and what it wrote to its state folder."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    log: Path
    info: dict[str, Any]

    def url(self, path: str) -> str:
        return f"{self.info['api_url']}{path}"

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.info["aws_endpoint_url"],
            region_name=self.info["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> int:
        """SIGTERM, as a terminal's Ctrl-C or a process manager would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def offline_command(state_dir: Path, port: int, params: str = "", *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "offline", "--port", str(port), "--state-dir", str(state_dir),
        "--params", params, "--quiet", "--prewarm", *extra,
    ]  # fmt: skip


def run_offline(state_dir: Path, port: int, params: str = "", *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m offline` to completion (for starts that must fail at once)."""
    return subprocess.run(  # noqa: S603 - our own module, our own arguments
        offline_command(state_dir, port, params, *extra),
        cwd=PROJECT_ROOT,
        env=_child_environment(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )


def start_offline(state_dir: Path, params: str = "", *extra: str) -> RunningStack:
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / f"{state_dir.name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            offline_command(state_dir, free_port(), params, *extra),
            cwd=PROJECT_ROOT,
            env=_child_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not stack_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the offline stack did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return RunningStack(process, state_dir, log, json.loads(stack_file.read_text()))


def _child_environment() -> dict[str, str]:
    # What a developer's shell has: no emulator endpoint, no credentials of ours; the stack sets its own.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def http(method: str, url: str, headers: dict[str, str] | None = None, body: Any = None, timeout: float = 30) -> Answer:
    """One real HTTP request; the body is sent as JSON and read back as JSON when it parses."""
    data = json.dumps(body).encode() if body is not None else None
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = "application/json"
    return http_raw(method, url, sent, data, timeout)


# Free is throttled hard (rate 1/s, burst 2) for the 429 Too Many Requests tests; pro is self-service here
# with a quota of 5 and a throttle out of the way, for the Limit Exceeded tests. Names as `sam deploy` takes.
METERED_PARAMS = (
    "SelfServiceTiers=free,pro FreeRateLimit=1 FreeBurstLimit=2 "
    "ProRateLimit=100 ProBurstLimit=100 ProQuotaLimit=5 ProQuotaPeriod=DAY AlertEmail=ops@example.com"
)


@pytest.fixture(scope="session")
def metered_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_offline(tmp_path_factory.mktemp("metered") / "state", METERED_PARAMS)
    yield stack
    stack.stop()


def signed(
    stack: RunningStack,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    *,
    credentials: dict[str, str] | None = None,
    raw_body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One real HTTP request to an AWS_IAM route (the operator console), SigV4-signed by botocore with the
    credentials the stack accepts (stack.json's `aws_credentials`) unless others are given."""
    keys = credentials or stack.info["aws_credentials"]
    url = stack.url(path) + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else b"")
    request = AWSRequest(
        method=method, url=url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    SigV4Auth(
        Credentials(keys["access_key_id"], keys["secret_access_key"]), "execute-api", stack.info["region"]
    ).add_auth(request)
    return http_raw(method, url, dict(request.headers.items()), data or None)


def http_raw(method: str, url: str, headers: dict[str, str], data: bytes | None, timeout: float = 30) -> Answer:
    """One real HTTP request with these exact headers and bytes; the answer's body read back as JSON when it parses."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            status, raw, answer_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, raw, answer_headers = exc.code, exc.read(), dict(exc.headers)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode()
    return Answer(status, parsed, answer_headers)
