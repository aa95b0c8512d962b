"""The AI API's own cost per request, the model excluded. Figures only (cold imports: bench_cold_imports.py).

- Per request: POST /v1/chat/completions through the real app (the ASGI app the adapter calls, validation, partner
  lookup, reservation, settlement, metrics, OpenAI-shaped answer) with a model that answers at once, so
  the figure is our overhead only. Measured twice: with the ledger and partners in memory (our CPU time),
  and with them on moto's DynamoDB (2 UpdateItem per request once the partner is cached; on AWS, add
  DynamoDB's own latency for those two writes instead of moto's). The authorizer, which runs before every
  key-protected request, is timed too.

    .venv/bin/python bench/bench_ai_handler.py [--requests N]
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))  # tests.fakes: `make bench` runs this file as a script
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto takes any credentials; these are dummies
    AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    # As deployed: an INFO line and an EMF record per completion, written to /dev/null while timing.
    POWERTOOLS_LOG_LEVEL="INFO",
    POWERTOOLS_METRICS_NAMESPACE="MeteredAI",
    POWERTOOLS_SERVICE_NAME="metered-ai",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

from core.ai.service import AiApi  # noqa: E402
from core.ai.settings import ChatSettings  # noqa: E402
from core.models import Partner  # noqa: E402
from tests.fakes import InstantModel, MemoryLedger, MemoryPartners, active_partner  # noqa: E402
from tests.lwa_client import invoke_async  # noqa: E402

KEY_ID = "benchkey01"
TIERS = {
    "free": {
        "models": "nova-micro",
        "token_budget": 0,
        "default_max_tokens": 16,
        "rate_limit": 5,
        "burst_limit": 10,
        "quota_limit": 1000,
        "quota_period": "DAY",
    }
}


def bench_partner() -> Partner:
    return active_partner(KEY_ID, partner_id="p_bench", name="Bench", email="bench@example.com", key_prefix="benc")


def settings(metering_table: str = "bench-metering", partners_table: str = "bench-partners") -> ChatSettings:
    return ChatSettings(
        stack_name="bench",
        partners_table=partners_table,
        metering_table=metering_table,
        models="nova-micro=amazon.nova-micro-v1:0",  # type: ignore[arg-type]
        tiers=TIERS,  # type: ignore[arg-type]
        model_provider="offline",
    )


def chat_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((PROJECT_ROOT / "events" / "chat_completions.json").read_text())
    event["requestContext"]["identity"]["apiKeyId"] = KEY_ID
    return event


def time_calls(call: Callable[[], Any], requests: int, warmup: int = 50) -> list[float]:
    """Milliseconds per call; what the handler logs and prints (JSON logs, EMF) goes to /dev/null meanwhile."""
    from core.observability import logger  # noqa: PLC0415

    timings = []
    handler = logger.registered_handler
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        previous = handler.setStream(sink)  # type: ignore[attr-defined]
        try:
            for n in range(requests + warmup):
                started = time.perf_counter()
                call()
                if n >= warmup:
                    timings.append((time.perf_counter() - started) * 1000)
        finally:
            handler.setStream(previous)  # type: ignore[attr-defined]
    return timings


def per_request(requests: int) -> list[tuple[str, list[float]]]:
    from handlers import api_key_authorizer, chat_completions  # noqa: PLC0415 - after the environment is set

    rows = []
    event = chat_event()

    # The app as the Lambda Web Adapter drives it, on one event loop as uvicorn keeps one.
    loop = asyncio.new_event_loop()

    def served() -> None:
        answer = loop.run_until_complete(invoke_async(chat_completions.app, event, remaining_ms=900_000))
        if answer.status != 200:
            raise SystemExit(f"the app answered {answer.status}: {answer.text}")

    in_memory = AiApi(
        settings(), MemoryPartners(bench_partner()), MemoryLedger(), InstantModel(), record_metrics=_emf_only
    )
    chat_completions.chat_api = lambda: in_memory  # type: ignore[attr-defined]
    rows.append(("chat handler, ledger in memory (CPU)", time_calls(served, requests)))

    rows.append(("chat handler, ledger on moto DynamoDB", _on_moto(served, requests, chat_completions)))

    authorizer_event = json.loads((PROJECT_ROOT / "events" / "api_key_authorizer.json").read_text())
    rows.append(
        ("authorizer handler", time_calls(lambda: api_key_authorizer.handler(authorizer_event, None), requests))
    )
    return rows


def _emf_only(outcome: Any) -> None:
    from core.ai.service import emit_chat_metrics  # noqa: PLC0415

    emit_chat_metrics(outcome)


def _on_moto(served: Callable[[], None], requests: int, chat_completions: Any) -> list[float]:
    from moto import mock_aws  # noqa: PLC0415

    from core.adapters.partners_table import PartnerRecords  # noqa: PLC0415
    from core.ai.adapters.metering_table import MeteringTable  # noqa: PLC0415
    from core.signup.adapters.partners import SignupPartners  # noqa: PLC0415
    from offline import dynamodb_fidelity  # noqa: PLC0415
    from offline.provision import provision  # noqa: PLC0415
    from offline.template import load_template  # noqa: PLC0415

    dynamodb_fidelity.install()
    with mock_aws():
        stack = provision(load_template())
        signup = SignupPartners(stack.physical_ids["PartnersTable"])
        partner = bench_partner()
        reservation = signup.reserve_email(partner.email, partner.partner_id, time.time(), 60)
        assert not reservation.resumed
        signup.activate(partner)
        partners = PartnerRecords(stack.physical_ids["PartnersTable"])
        ledger = MeteringTable(stack.physical_ids["MeteringTable"])
        api = AiApi(
            settings(stack.physical_ids["MeteringTable"], stack.physical_ids["PartnersTable"]),
            partners,
            ledger,
            InstantModel(),
            record_metrics=_emf_only,
        )
        chat_completions.chat_api = lambda: api
        return time_calls(served, requests)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    print(f"per request, model excluded: {args.requests} requests after 50 warm-up")
    print(f"  {'':44} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in per_request(args.requests):
        p50, p99 = _percentile(values, 0.5), _percentile(values, 0.99)
        print(f"  {name:44} {p50:8.3f} {p99:8.3f} {statistics.fmean(values):8.3f}")
    print("  (on AWS, the DynamoDB row's two UpdateItem calls cost DynamoDB's latency, typically single-digit ms)")


if __name__ == "__main__":
    main()
