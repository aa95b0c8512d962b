"""The streaming chat function's own cost. Figures only.

- Time to first byte added by our code: a `stream: true` request to the chat app served by uvicorn on
  127.0.0.1 (as src/run.sh serves it), with the offline provider; the time from the provider yielding its first
  chunk to that chunk's SSE event arriving at the client (the role chunk is sent just before it), p50/p99. The
  partners and ledger are in memory: the reservation happens before the provider is called, so DynamoDB is
  not part of this figure (bench_ai_handler.py prints its cost per request).
- Cold start of the streaming function, the way bench_cold_imports.py measures handlers (Lambda's environment,
  the function package as `make build` ships it, bytecode included): importing what
  `python -m uvicorn ... app` imports, and src/run.sh started until its readiness check answers (what the
  Lambda Web Adapter waits for).

    .venv/bin/python bench/bench_streaming.py [--requests N] [--runs N]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_ROOT), str(PROJECT_ROOT / "bench")]
os.environ.update(
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="MeteredAI",
    POWERTOOLS_SERVICE_NAME="metered-ai",
)

import uvicorn  # noqa: E402
from bench_ai_handler import KEY_ID, bench_partner, settings  # noqa: E402
from bench_cold_imports import (  # noqa: E402
    LAMBDA_ENVIRONMENT,
    TASK_ROOT,
    import_milliseconds,
    lambda_package,
    unpack_package,
)

from core.ai.chat import ModelRequest, StreamEvent  # noqa: E402
from core.ai.offline_model import OfflineModel  # noqa: E402
from core.ai.service import AiApi  # noqa: E402
from core.observability import logger  # noqa: E402

# The "streamed chat" line per request would dominate a loopback figure (bench_ai_handler sets INFO).
logger.setLevel("WARNING")
from tests.fakes import MemoryLedger, MemoryPartners  # noqa: E402

WORDS = 40


class TimedOfflineModel(OfflineModel):
    """The offline provider, noting when it yields its first chunk."""

    first_chunk_at: float = 0.0

    def stream(self, request: ModelRequest, timeout_seconds: float) -> Iterator[StreamEvent]:
        for index, event in enumerate(super().stream(request, timeout_seconds)):
            if index == 0:
                self.first_chunk_at = time.perf_counter()
            yield event


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def first_byte_overheads(requests: int, warmup: int = 30) -> list[float]:
    from handlers import chat_completions  # noqa: PLC0415

    model = TimedOfflineModel()
    api = AiApi(settings(), MemoryPartners(bench_partner()), MemoryLedger(), model, record_metrics=lambda _: None)
    chat_completions.chat_api = lambda: api  # type: ignore[attr-defined]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(chat_completions.app, port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    body = json.dumps(
        {
            "model": "nova-micro",
            "messages": [{"role": "user", "content": "w " * WORDS}],
            "max_tokens": WORDS,
            "stream": True,
        }
    )
    context = json.dumps({"requestId": "bench", "identity": {"apiKeyId": KEY_ID}})
    overheads = []
    try:
        for n in range(requests + warmup):
            lambda_context = json.dumps({"deadline": int(time.time() * 1000) + 900_000})
            connection = http.client.HTTPConnection("127.0.0.1", port)
            headers = {"x-amzn-request-context": context, "x-amzn-lambda-context": lambda_context}
            connection.request("POST", "/v1/chat/completions", body, headers)
            response = connection.getresponse()
            while b'"content":"w"' not in response.readline():
                pass
            arrived = time.perf_counter()
            response.read()
            connection.close()
            if n >= warmup:
                overheads.append((arrived - model.first_chunk_at) * 1000)
    finally:
        server.should_exit = True
    return overheads


def cold_start(runs: int) -> tuple[list[float], list[float]]:
    """Import of what `python -m uvicorn ... handlers.chat_completions:app` loads, and run.sh until /healthz."""
    python = Path(sys._base_executable)  # the runtime's interpreter, without the development venv's packages
    unpack_package(lambda_package(), compiled=True)
    imports = "uvicorn.main, uvicorn.protocols.http.h11_impl, uvicorn.loops.asyncio, handlers.chat_completions"
    import_milliseconds(python, imports)  # warms the file cache
    imported = [import_milliseconds(python, imports)[0] for _ in range(runs)]
    ready = [_ready_milliseconds(python) for _ in range(runs)]
    return imported, ready


def _ready_milliseconds(python: Path) -> float:
    port = _free_port()
    environment = {**LAMBDA_ENVIRONMENT, "PORT": str(port), "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    process = subprocess.Popen([TASK_ROOT / "run.sh"], cwd=TASK_ROOT, env=environment)  # noqa: S603 - our script
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return (time.perf_counter() - started) * 1000
            except OSError:
                time.sleep(0.005)
    finally:
        process.terminate()
        process.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters for the cold start (median)")
    args = parser.parse_args()

    overheads = first_byte_overheads(args.requests)
    print(f"streamed chat, offline provider, uvicorn on 127.0.0.1: {args.requests} requests after 30 warm-up")
    print(f"  {'':52} {'p50 ms':>8} {'p99 ms':>8}")
    p50, p99 = _percentile(overheads, 0.5), _percentile(overheads, 0.99)
    print(f"  {'provider first chunk -> its SSE event at the client':52} {p50:8.3f} {p99:8.3f}")

    imported, ready = cold_start(args.runs)
    print(f"streaming function cold start, Lambda's environment, {args.runs} fresh interpreters (median, min, max ms)")
    for name, values in (("import uvicorn + handlers.chat_completions", imported), ("run.sh until /healthz", ready)):
        print(f"  {name:52} {statistics.median(values):8.0f} {min(values):8.0f} {max(values):8.0f}")


if __name__ == "__main__":
    main()
