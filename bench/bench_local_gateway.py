"""The local API Gateway's added latency per request: GET /v1/models over keep-alive HTTP through the
gateway (route, key, plan, throttle, quota, usage, proxy event) against invoking the same function directly
with the same event, and what the function's worker process adds around its handler (the event and the
answer over a pipe). Limits are raised out of the way so every request is served; figures only, no asserts.

    .venv/bin/python bench/bench_local_gateway.py [--requests N]
"""

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from offline.events import Caller, IncomingRequest, proxy_event
from offline.stack import OfflineStack, StackOptions
from offline.state import StateDir

TARGET_P50_MS = 5.0
# Throttle and quota far above what the benchmark sends: it measures the gateway, not the limits.
UNLIMITED = {"FreeRateLimit": "1000000", "FreeBurstLimit": "1000000", "FreeQuotaLimit": "100000000"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, OfflineStack(_options(args.port, Path(state))) as stack:
        api_key, api_key_id = _sign_up(stack.info)
        url = stack.info["api_url"] + "/v1/models"
        through_gateway = _over_http(stack.info["port"], url, api_key, args.requests)
        direct, handler = _direct(stack, api_key, api_key_id, args.requests)
    _report(args.requests, through_gateway, direct, handler)


def _options(port: int, state: Path) -> StackOptions:
    return StackOptions(
        port=port or _free_port(),
        overrides=UNLIMITED,
        state_dir=StateDir(state),
        management_rate_limits=False,
        schedules=False,
        access_log=False,
        # The functions' logs on stderr (`make bench` keeps them in a file), the figures on stdout.
        verbose=True,
        # Every function warm before the figures: cold starts are not what this measures.
        prewarm=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sign_up(info: dict[str, object]) -> tuple[str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", int(str(info["port"])))
    body = json.dumps({"name": "Bench", "email": "bench@example.com"})
    connection.request("POST", f"{info['api_url']}/signup", body, {"Content-Type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return str(answer["api_key"]), str(answer["api_key_id"])


def _over_http(port: int, url: str, api_key: str, requests: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    path = url.split(str(port), 1)[1]
    headers = {"x-api-key": api_key, "Accept": "application/json", "User-Agent": "bench"}
    timings = []
    for n in range(requests + 50):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"request {n} answered {response.status}: the benchmark expects every request served")
        if n >= 50:  # the first calls warm imports and caches
            timings.append(elapsed)
    connection.close()
    return timings


def _direct(stack: OfflineStack, api_key: str, api_key_id: str, requests: int) -> tuple[list[float], list[float]]:
    """The same function with the event the gateway builds for the same request, minus the HTTP and the gateway:
    the invocation's time, and the handler's own inside its worker."""
    assert stack.gateway is not None and stack.runtime is not None
    runtime = stack.runtime
    request = IncomingRequest(
        method="GET",
        path="/v1/models",
        query=[],
        headers=[
            ("Host", "127.0.0.1"),
            ("x-api-key", api_key),
            ("Accept", "application/json"),
            ("User-Agent", "bench"),
        ],
        body=b"",
        source_ip="127.0.0.1",
        host="127.0.0.1",
    )
    event = _event_for(stack, request, api_key_id)
    timings, handler = [], []
    for n in range(requests + 50):
        started = time.perf_counter()
        result = runtime.invoke("ModelsFunction", event)
        elapsed = (time.perf_counter() - started) * 1000
        if not result.ok or result.handler_ms is None:
            raise SystemExit(f"direct call failed: {result.error}")
        if n >= 50:
            timings.append(elapsed)
            handler.append(result.handler_ms)
    return timings, handler


def _event_for(stack: OfflineStack, request: IncomingRequest, api_key_id: str) -> dict[str, object]:
    assert stack.gateway is not None
    stage = next(iter(stack.gateway.stages.values()))
    return proxy_event(
        request,
        # The signed-up key's id: the function answers (and meters) for partners only.
        caller=Caller(request_id="bench", api_key="bench-key", api_key_id=api_key_id),
        resource_path="/v1/models",
        path_parameters={},
        rest_api_id=stage.rest_api_id,
        stage=stage.stage,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def _report(requests: int, through_gateway: list[float], direct: list[float], handler: list[float]) -> None:
    rows = [
        ("through the local gateway (HTTP)", through_gateway),
        ("function invoked directly", direct),
        ("its handler, inside the worker", handler),
    ]
    print(f"GET /v1/models, {requests} requests after 50 warm-up, one keep-alive connection")
    print(f"{'':36} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in rows:
        p50, p99 = _percentile(values, 0.5), _percentile(values, 0.99)
        print(f"{name:36} {p50:8.3f} {p99:8.3f} {statistics.fmean(values):8.3f}")
    added_p50 = _percentile(through_gateway, 0.5) - _percentile(direct, 0.5)
    added_p99 = _percentile(through_gateway, 0.99) - _percentile(direct, 0.99)
    print(f"{'added by the gateway':36} {added_p50:8.3f} {added_p99:8.3f}")
    worker_p50 = _percentile(direct, 0.5) - _percentile(handler, 0.5)
    worker_p99 = _percentile(direct, 0.99) - _percentile(handler, 0.99)
    print(f"{'added by the worker process':36} {worker_p50:8.3f} {worker_p99:8.3f}")
    verdict = "within" if added_p50 <= TARGET_P50_MS else "ABOVE"
    print(f"target: <= {TARGET_P50_MS:g} ms added at p50 ({verdict} target)")


if __name__ == "__main__":
    main()
