"""Every metric a function publishes carries its stack's name, so alarms of two stacks in one account (dev and
prod) never read each other's metrics. Lambda sets the environment before the handler is imported, so each case
imports core.observability in a fresh interpreter, the way a cold start does."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[3]

# One metric through the shared `metrics` (flushed by log_metrics, as the handlers do) and one through
# request_metrics() (the AI API's per-request metrics).
PUBLISH = """
from aws_lambda_powertools.metrics import MetricUnit
from core.observability import metrics, request_metrics

@metrics.log_metrics
def handler(event, context):
    metrics.add_metric(name="TierChangeFailures", unit=MetricUnit.Count, value=1)

handler({}, None)
per_request = request_metrics()
per_request.add_dimension(name="tier", value="free")
per_request.add_metric(name="ChatRequests", unit=MetricUnit.Count, value=1)
per_request.flush_metrics()
"""


def published_metrics(stack_name: str | None) -> list[dict[str, Any]]:
    environment = {name: value for name, value in os.environ.items() if name != "STACK_NAME"}
    environment.update(POWERTOOLS_SERVICE_NAME="metered-ai", POWERTOOLS_METRICS_NAMESPACE="MeteredAI", PYTHONPATH="src")
    if stack_name is not None:
        environment["STACK_NAME"] = stack_name
    run = subprocess.run(  # noqa: S603 - this interpreter, our own snippet
        [sys.executable, "-c", PUBLISH], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in run.stdout.splitlines() if '"_aws"' in line]


def test_every_metric_carries_the_stack_dimension() -> None:
    # Given a function of the stack "metered-ai-dev" (STACK_NAME from the template's Globals)
    # When it publishes through the shared metrics and through request_metrics()
    emitted = published_metrics("metered-ai-dev")

    # Then both EMF objects have the stack among their dimensions, with the stack's name
    assert len(emitted) == 2
    for document in emitted:
        (dimensions,) = document["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        assert "stack" in dimensions
        assert document["stack"] == "metered-ai-dev"
    assert {"service", "stack"} == set(emitted[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])


def test_without_a_stack_name_metrics_are_still_published() -> None:
    # Given code run outside a stack (a test, a script): no STACK_NAME
    emitted = published_metrics(None)

    # Then the metrics are published without a stack dimension rather than failing
    assert len(emitted) == 2
    assert all("stack" not in document for document in emitted)


# What a function traces once Lambda has imported it (Tracing: Active sets LAMBDA_TASK_ROOT: the Tracer is on).
TRACED = """
import json, sys
from aws_xray_sdk.core.patcher import _PATCHED_MODULES
from core.observability import tracer
traced = {"on": not tracer.disabled, "patched": sorted(_PATCHED_MODULES), "requests": "requests" in sys.modules}
print(json.dumps(traced))
"""


def test_a_function_traces_its_aws_and_model_calls_without_importing_every_patchable_library() -> None:
    # Given a function started by Lambda with active tracing
    environment = {name: value for name, value in os.environ.items() if name != "POWERTOOLS_TRACE_DISABLED"}
    environment.update(PYTHONPATH="src", LAMBDA_TASK_ROOT="src", AWS_LAMBDA_FUNCTION_NAME="metered-ai-dev-Signup")
    environment.pop("AWS_SAM_LOCAL", None)

    # When it imports the observability module
    run = subprocess.run(  # noqa: S603 - this interpreter, our own snippet
        [sys.executable, "-c", TRACED], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    traced = json.loads(run.stdout)

    # Then AWS calls (botocore) and the model provider's HTTP calls (httplib) are traced, and nothing else is
    # imported for tracing: `requests` (which no function calls) costs a cold start its import time
    assert traced["on"]
    assert traced["patched"] == ["botocore", "httplib"]
    assert not traced["requests"]
