"""How long the billing webhook takes to answer, and how many AWS calls one tier change makes: signed events
over HTTP to the offline stack (the function in its worker process, every AWS call an HTTP round trip to the
emulator).
Each applied event moves a key between free and pro with its usage carried over. Figures only, no asserts.

On AWS, add each call's latency (API Gateway's management API: tens of milliseconds) to the figures below;
the call count is what scales. Stripe expects an answer within its timeout (seconds): compare.

    .venv/bin/python bench/bench_tier_webhook.py [--events N]
"""

import argparse
import contextlib
import json
import socket
import statistics
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from moto.apigateway.models import APIGatewayBackend

from offline.billing_event import signed
from offline.stack import OfflineStack, StackOptions
from offline.state import StateDir

# Limits out of the way: the benchmark measures the webhook, not the throttles.
UNLIMITED = {"WebhookRateLimit": "100000", "WebhookBurstLimit": "100000", "SignupRateLimit": "100000"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, OfflineStack(_options(Path(state))) as stack:
        assert stack.runtime is not None
        info = stack.info
        partner_ids = [_sign_up(info) for _ in range(10)]
        before = stack.runtime.aws_calls()
        with _key_out_of_plan_gaps() as gaps:
            applied = _timed_changes(info, partner_ids, args.events)
        per_change = {
            operation: (count - before.get(operation, [0, 0.0])[0]) / args.events
            for operation, (count, _) in sorted(stack.runtime.aws_calls().items())
            if count > before.get(operation, [0, 0.0])[0]
        }
        duplicate = _timed(info, args.events, duplicate=True, partner_id=partner_ids[0])
        refused = _timed(info, args.events, duplicate=False, partner_id=partner_ids[0])
    _report(args.events, applied, duplicate, refused, per_change)
    _report_gap(gaps)


@contextlib.contextmanager
def _key_out_of_plan_gaps() -> Iterator[list[float]]:
    """How long each key is in no plan: from the emulator taking its DeleteUsagePlanKey to answering the
    CreateUsagePlanKey that follows (the webhook runs in a worker; the emulator runs here)."""
    gaps: list[float] = []
    started: list[float] = []
    delete, create = APIGatewayBackend.delete_usage_plan_key, APIGatewayBackend.create_usage_plan_key

    def timed_delete(backend: APIGatewayBackend, *args: Any, **kwargs: Any) -> Any:
        started.append(time.perf_counter())
        return delete(backend, *args, **kwargs)

    def timed_create(backend: APIGatewayBackend, *args: Any, **kwargs: Any) -> Any:
        answer = create(backend, *args, **kwargs)
        if started:
            gaps.append((time.perf_counter() - started.pop()) * 1000)
        return answer

    APIGatewayBackend.delete_usage_plan_key = timed_delete  # type: ignore[method-assign]
    APIGatewayBackend.create_usage_plan_key = timed_create  # type: ignore[method-assign]
    try:
        yield gaps
    finally:
        APIGatewayBackend.delete_usage_plan_key = delete  # type: ignore[method-assign]
        APIGatewayBackend.create_usage_plan_key = create  # type: ignore[method-assign]


def _options(state: Path) -> StackOptions:
    return StackOptions(
        port=_free_port(),
        overrides=UNLIMITED,
        state_dir=StateDir(state),
        management_rate_limits=False,
        schedules=False,
        access_log=False,
        # The webhook's logs on stderr (`make bench` keeps them in a file), the figures on stdout.
        verbose=True,
        # Every function warm before the figures: cold starts are not what this measures.
        prewarm=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(url: str, body: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


def _sign_up(info: dict[str, Any]) -> str:
    body = json.dumps({"name": "Bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com"})
    request = urllib.request.Request(  # noqa: S310
        f"{info['api_url']}/signup", data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["partner_id"])


def _event(partner_id: str, tier: str, at: datetime) -> str:
    payload = {
        "type": "subscription.updated",
        "timestamp": at.isoformat(),
        "data": {"partner_id": partner_id, "tier": tier},
    }
    return json.dumps(payload, separators=(",", ":"))


def _timed_changes(info: dict[str, Any], partner_ids: list[str], events: int) -> list[float]:
    url, secret = f"{info['api_url']}/webhooks/billing", info["webhook_secrets"]["standard"]
    start = datetime.now(UTC)
    timings = []
    for n in range(events):
        body = _event(
            partner_ids[n % len(partner_ids)],
            "pro" if (n // len(partner_ids)) % 2 == 0 else "free",
            start + timedelta(milliseconds=n),
        )
        headers = signed("standard", body, secret)
        began = time.perf_counter()
        status = _post(url, body, headers)
        timings.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise SystemExit(f"event {n} answered {status}")
    return timings


def _timed(info: dict[str, Any], events: int, *, duplicate: bool, partner_id: str) -> list[float]:
    url, secret = f"{info['api_url']}/webhooks/billing", info["webhook_secrets"]["standard"]
    body = _event(partner_id, "pro", datetime.now(UTC) - timedelta(days=1))
    headers = signed("standard", body, secret) if duplicate else signed("standard", body, "whsec_" + "A" * 44)
    timings = []
    for _ in range(events):
        began = time.perf_counter()
        _post(url, body, headers)
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def _report_gap(gaps: list[float]) -> None:
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"Key in no plan (DeleteUsagePlanKey sent -> CreateUsagePlanKey answered; calls get 403): "
        f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms (on AWS: about two management-API round trips)"
    )


def _report(
    events: int, applied: list[float], duplicate: list[float], refused: list[float], per_change: dict[str, float]
) -> None:
    print(f"{events} events each, answer time over HTTP on the offline stack (ms):")
    for name, timings in (("applied change", applied), ("repeated event", duplicate), ("bad signature", refused)):
        ordered = sorted(timings)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"  {name:<15} p50 {statistics.median(ordered):7.1f}   p99 {p99:7.1f}")
    print("AWS calls per applied change (a change between free and pro, with usage carried):")
    for operation, count in per_change.items():
        print(f"  {operation:<40} {count:.2f}")
    print(
        f"  total {sum(per_change.values()):.1f} (plus 2 writes of the processed-event record, Powertools idempotency)"
    )


if __name__ == "__main__":
    main()
