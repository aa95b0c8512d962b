"""The `metered-ai` CLI run in-process (Typer's runner) against a fake transport: every request it would send is
recorded with its headers, and answered from a script of replies."""

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from typer.testing import CliRunner, Result

from cli.app import Wiring, app
from cli.client import Progress, Reply, TransportError

API_URL = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class Sent:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def reply(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Reply:
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    return Reply(status, {"Content-Type": "application/json", "Content-Length": str(len(raw)), **(headers or {})}, raw)


@dataclass
class FakeTransport:
    """Answers each request with the next scripted reply (or what `answer` computes) and records it."""

    replies: list[Reply | Exception] = field(default_factory=list)
    answer: Callable[[Sent], Reply] | None = None
    sent: list[Sent] = field(default_factory=list)

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, progress: Progress | None
    ) -> Reply:
        request = Sent(method, url, dict(headers), body)
        self.sent.append(request)
        answered = self.answer(request) if self.answer else self.replies.pop(0)
        if isinstance(answered, Exception):
            raise answered
        if progress is not None:
            progress(len(answered.body), len(answered.body))
        return answered


def no_answer() -> TransportError:
    return TransportError("no answer from example: [Errno 111] Connection refused")


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def aws_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """A session whose credential chain finds the environment's keys (and nothing of this machine's)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    yield boto3.Session()


@dataclass
class Cli:
    transport: FakeTransport
    session: boto3.Session
    cloudformation: Any = None

    def __call__(self, *args: str, target: tuple[str, ...] = ("--api-url", API_URL)) -> Result:
        wiring = Wiring(
            transport=self.transport, session=lambda _profile: self.session, cloudformation=self.cloudformation
        )
        return CliRunner().invoke(app, [*target, *args], obj=wiring, catch_exceptions=False)


@pytest.fixture
def cli(transport: FakeTransport, aws_session: boto3.Session) -> Cli:
    return Cli(transport, aws_session)


def stack_json(folder: Path, api_url: str = "http://127.0.0.1:3000/live", region: str = "us-east-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "api_url": api_url,
        "region": region,
        "aws_credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
    }
    (folder / "stack.json").write_text(json.dumps(info))
    return folder
