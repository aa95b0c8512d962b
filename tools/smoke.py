"""`make smoke STACK=<name>` (a deployed stack) or `make smoke` (the running `make local`): one pass through what a
partner and an operator rely on, in order, each step printed PASS/FAIL/SKIP with AWS's own error on failure.

On AWS it reads the stack's outputs through CloudFormation and needs only the caller's credentials; offline it
reads .local/stack.json. The throwaway partner and key it makes are deleted at the end. Exit code 1 when any
step failed, 2 when the stack cannot be found.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from standardwebhooks import Webhook

from core.adapters.partners_table import api_key_pk, email_pk, partner_pk
from core.tier_policy import EMBEDDING_MODEL_MARKER
from tools.preflight import logging_role_arn

EXIT_FAILED = 1
EXIT_USAGE = 2
# The alarm the smoke sets to ALARM: its topic is the operators' (a custom-metric alarm, so it reads no traffic).
SMOKE_ALARM = "TierChangeFailuresAlarm"
# CloudWatch Logs and alarm actions are not instant: how long a step waits for them.
LOG_WAIT_SECONDS = 120
ALARM_WAIT_SECONDS = 60
POLL_SECONDS = 5


class StepFailed(Exception):
    """A step's check did not hold; the message says what was expected and what came."""


class StepSkipped(Exception):
    """A step that does not apply here (AWS only) or needs what an earlier step failed to make."""


@dataclass
class Target:
    """Where the stack is and how to reach its AWS resources."""

    stack_name: str
    api_url: str
    region: str
    on_aws: bool
    partners_table: str
    usage_plan_ids: dict[str, str]
    webhook_secret: Callable[[], str | None]
    client: Callable[[str], Any]
    access_log_group: str | None = None
    access_log_file: Path | None = None
    alarm_name: str | None = None


@dataclass
class Run:
    """What the steps share: the throwaway partner, and the outcome of each step."""

    target: Target
    partner_id: str | None = None
    api_key: str | None = None
    api_key_id: str | None = None
    email: str = field(default_factory=lambda: f"smoke-{uuid.uuid4().hex[:12]}@example.com")
    failures: int = 0


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def http(method: str, url: str, headers: dict[str, str] | None = None, body: Any = None) -> Answer:
    data = body.encode() if isinstance(body, str) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the stack's own URL
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return Answer(status, json.loads(raw) if raw else None)
    except ValueError:
        return Answer(status, raw.decode(errors="replace"))


def expect(answer: Answer, status: int, what: str) -> Any:
    if answer.status != status:
        raise StepFailed(f"{what}: expected {status}, got {answer.status} {json.dumps(answer.body)[:300]}")
    return answer.body


def _bearer(run: Run) -> dict[str, str]:
    if not run.api_key:
        raise StepSkipped("needs the signup's key")
    return {"Authorization": f"Bearer {run.api_key}"}


# --- The steps, in order ---------------------------------------------------------------------------------------


def check_logging_role(run: Run) -> str:
    if not run.target.on_aws:
        raise StepSkipped("AWS only (the offline gateway needs no role)")
    arn = logging_role_arn(run.target.client("apigateway"))
    if not arn:
        raise StepFailed(
            f"API Gateway in {run.target.region} has no CloudWatch Logs role: access logs are not written; "
            "deploy one stack of this account and Region with CreateApiGatewayLoggingRole=true"
        )
    return arn


def sign_up(run: Run) -> str:
    body = expect(
        http(
            "POST",
            f"{run.target.api_url}/signup",
            {"Idempotency-Key": str(uuid.uuid4())},
            {"name": "Smoke test", "email": run.email},
        ),
        201,
        "POST /signup",
    )
    if not body.get("api_key") or not body.get("api_key_id"):
        raise StepFailed(f"POST /signup answered 201 without a key: fields {sorted(body)}")
    run.partner_id, run.api_key, run.api_key_id = body["partner_id"], body["api_key"], body["api_key_id"]
    return f"partner {run.partner_id}, key id {run.api_key_id}"


def list_models(run: Run) -> str:
    body = expect(http("GET", f"{run.target.api_url}/v1/models", _bearer(run)), 200, "GET /v1/models with the key")
    expect(http("GET", f"{run.target.api_url}/v1/models"), 403, "GET /v1/models without a key")
    return f"{len(body.get('data', []))} model(s); 403 without a key"


def chat(run: Run) -> str:
    models = expect(http("GET", f"{run.target.api_url}/v1/models", _bearer(run)), 200, "GET /v1/models")
    # Embedding models (their names contain "embed", core.tier_policy) answer on /v1/embeddings only.
    chat_models = [item["id"] for item in models.get("data", []) if EMBEDDING_MODEL_MARKER not in item["id"]]
    if not chat_models:
        raise StepFailed("the free tier may call no chat model (GET /v1/models lists none)")
    model = chat_models[0]
    request = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    body = expect(
        http("POST", f"{run.target.api_url}/v1/chat/completions", _bearer(run), request),
        200,
        f"POST /v1/chat/completions ({model})",
    )
    return f"{model}: {body['usage']['total_tokens']} tokens"


def access_log_has_key(run: Run) -> str:
    if not run.api_key_id:
        raise StepSkipped("needs the signup's key")
    target = run.target
    if target.access_log_group:
        logs = target.client("logs")
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while True:
            events = logs.filter_log_events(
                logGroupName=target.access_log_group,
                filterPattern=f'"{run.api_key_id}"',
                startTime=int((datetime.now(UTC) - timedelta(minutes=15)).timestamp() * 1000),
            ).get("events", [])
            if events:
                return f"{len(events)} line(s) in {target.access_log_group}"
            if time.monotonic() > deadline:
                raise StepFailed(f"no line with apiKeyId {run.api_key_id} in {target.access_log_group} after "
                                 f"{LOG_WAIT_SECONDS} s")  # fmt: skip
            time.sleep(POLL_SECONDS)
    if target.access_log_file:
        if f"key={run.api_key_id}" in target.access_log_file.read_text(errors="replace"):
            return f"found in {target.access_log_file}"
        raise StepFailed(f"no access line with key={run.api_key_id} in {target.access_log_file}")
    raise StepSkipped("no access log to read (offline: give --access-log <make local's output>)")


def billing_round_trip(run: Run) -> str:
    if not run.partner_id or not run.api_key_id:
        raise StepSkipped("needs the signup's partner")
    secret = run.target.webhook_secret()
    if not secret:
        raise StepFailed('the stack has no Standard Webhooks signing secret (BillingWebhookSecret\'s "standard")')
    moves = []
    for tier, previous in (("pro", "free"), ("free", "pro")):
        body = _send_billing_event(run, secret, tier)
        if body.get("tier") != tier or body.get("previous_tier") != previous:
            raise StepFailed(f"billing event to {tier}: the webhook answered {json.dumps(body)}")
        _expect_key_in_plan(run, tier)
        moves.append(f"{previous} -> {tier}")
    return ", ".join(moves)


def _send_billing_event(run: Run, secret: str, tier: str) -> Any:
    now = datetime.now(UTC)
    event = {
        "type": "subscription.updated",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": {"partner_id": run.partner_id, "tier": tier},
    }
    payload = json.dumps(event, separators=(",", ":"))
    message_id = f"msg_smoke_{uuid.uuid4().hex}"
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, payload),
    }
    answer = http("POST", f"{run.target.api_url}/webhooks/billing", headers, payload)
    body = expect(answer, 200, f"signed billing event to {tier}")
    # Two events in the same second are ordered by id: the next one must carry a later time.
    time.sleep(1.1)
    return body


def _expect_key_in_plan(run: Run, tier: str) -> None:
    plan_id = run.target.usage_plan_ids.get(tier)
    if not plan_id:
        raise StepFailed(f"the stack has no usage plan for tier {tier}")
    try:
        run.target.client("apigateway").get_usage_plan_key(usagePlanId=plan_id, keyId=run.api_key_id)
    except ClientError as exc:
        raise StepFailed(f"key {run.api_key_id} is not in the {tier} plan {plan_id}: {_aws_error(exc)}") from exc


def alarm_reaches_topic(run: Run) -> str:
    target = run.target
    if not target.on_aws or not target.alarm_name:
        raise StepSkipped("AWS only (offline alarms are not evaluated)")
    cloudwatch = target.client("cloudwatch")
    started = datetime.now(UTC)
    cloudwatch.set_alarm_state(AlarmName=target.alarm_name, StateValue="ALARM", StateReason="make smoke")
    try:
        deadline = time.monotonic() + ALARM_WAIT_SECONDS
        while time.monotonic() < deadline:
            history = cloudwatch.describe_alarm_history(
                AlarmName=target.alarm_name, HistoryItemType="Action", StartDate=started
            )["AlarmHistoryItems"]
            for item in history:
                if "Successfully executed action" in item["HistorySummary"]:
                    return f"{target.alarm_name}: {item['HistorySummary']}"
                if "Failed to execute action" in item["HistorySummary"]:
                    raise StepFailed(f"{target.alarm_name}: {item['HistorySummary']} ({item.get('HistoryData', '')})")
            time.sleep(POLL_SECONDS)
        raise StepFailed(f"{target.alarm_name} went to ALARM but no action ran within {ALARM_WAIT_SECONDS} s")
    finally:
        cloudwatch.set_alarm_state(AlarmName=target.alarm_name, StateValue="OK", StateReason="make smoke done")


def delete_partner(run: Run) -> str:
    if not run.partner_id:
        raise StepSkipped("no throwaway partner was made")
    client = run.target.client("dynamodb")
    if run.api_key_id:
        run.target.client("apigateway").delete_api_key(apiKey=run.api_key_id)
    keys = [partner_pk(run.partner_id), email_pk(run.email.lower())]
    keys += [api_key_pk(run.api_key_id)] if run.api_key_id else []
    for pk in keys:
        client.delete_item(TableName=run.target.partners_table, Key={"pk": {"S": pk}})
    return f"partner {run.partner_id} and key {run.api_key_id} deleted"


STEPS: list[tuple[str, Callable[[Run], str]]] = [
    ("account's API Gateway logging role", check_logging_role),
    ("signup -> 201 with a key", sign_up),
    ("/v1/models: 200 with Bearer, 403 without a key", list_models),
    ("one chat completion", chat),
    ("access log line carries the key id", access_log_has_key),
    ("signed billing events: free -> pro -> free", billing_round_trip),
    ("an alarm reaches the alert topic", alarm_reaches_topic),
    ("throwaway partner and key deleted", delete_partner),
]


def _aws_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    # AccessDenied's message names the caller, the denied action and the resource's ARN.
    return f"{error.get('Code', 'error')}: {error.get('Message', '')}"


def run_steps(target: Target, out: Callable[[str], None] = print) -> int:
    run = Run(target)
    out(f"smoke test of {target.stack_name} ({'AWS ' + target.region if target.on_aws else 'offline'})")
    for name, step in STEPS:
        try:
            detail = step(run)
        except StepSkipped as skipped:
            out(f"SKIP {name}: {skipped}")
            continue
        except StepFailed as failed:
            detail = str(failed)
        except ClientError as exc:
            detail = _aws_error(exc)
        except (BotoCoreError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
        else:
            out(f"PASS {name}: {detail}")
            continue
        run.failures += 1
        out(f"FAIL {name}: {detail}")
    out("smoke test passed" if not run.failures else f"smoke test FAILED: {run.failures} step(s)")
    return EXIT_FAILED if run.failures else 0


# --- Finding the stack -----------------------------------------------------------------------------------------


def aws_target(stack_name: str) -> Target:
    cloudformation = boto3.client("cloudformation")
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    resources = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {resource["LogicalResourceId"]: resource.get("PhysicalResourceId", "") for resource in resources}
    secret_arn = outputs["BillingWebhookSecretArn"]

    def webhook_secret() -> str | None:
        secrets = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
        return next((secret for secret in secrets.get("standard", []) if secret), None)

    return Target(
        stack_name=stack_name,
        api_url=outputs["ApiUrl"],
        region=cloudformation.meta.region_name,
        on_aws=True,
        partners_table=outputs["PartnersTableName"],
        usage_plan_ids={
            tier: outputs[f"{tier.capitalize()}UsagePlanId"]
            for tier in ("free", "pro", "enterprise")
            if f"{tier.capitalize()}UsagePlanId" in outputs
        },
        webhook_secret=webhook_secret,
        client=_aws_client,
        access_log_group=outputs.get("ApiAccessLogGroupName"),
        alarm_name=physical.get(SMOKE_ALARM),
    )


def _aws_client(service: str) -> Any:
    return boto3.client(service)  # type: ignore[call-overload]


def local_target(state_dir: Path, access_log: Path | None) -> Target:
    info = json.loads((state_dir / "stack.json").read_text())
    secrets = info.get("webhook_secrets") or {}

    def client(service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=info["aws_endpoint_url"],
            region_name=info["region"],
            # The offline emulator takes any credentials.
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
        )

    return Target(
        stack_name=info["stack_name"],
        api_url=info["api_url"],
        region=info["region"],
        on_aws=False,
        partners_table=info["tables"]["PartnersTable"],
        usage_plan_ids=info["usage_plan_ids"],
        webhook_secret=lambda: secrets.get("standard"),
        client=client,
        access_log_file=access_log,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        target = aws_target(args.stack) if args.stack else local_target(args.local, args.access_log)
    except (OSError, ValueError, KeyError) as exc:
        print(f"smoke: no running offline stack in {args.local} ({exc}); start `make local` first", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"smoke: cannot read stack {args.stack}: {_aws_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except BotoCoreError as exc:
        print(f"smoke: cannot reach AWS: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_steps(target)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__)
    parser.add_argument("--stack", help="a deployed stack's name (AWS credentials and region from the environment)")
    parser.add_argument("--local", type=Path, default=Path(".local"), help="the offline stack's state folder")
    parser.add_argument("--access-log", type=Path, help="offline: a file holding `make local`'s access log lines")
    return parser


if __name__ == "__main__":
    sys.exit(main())
