"""The offline stack: moto with the fidelity patches, the template's resources, the local API Gateway, the
scheduler and the outbox, started and stopped together. State lives in this process's memory only; the
functions run in worker processes (offline.functions) that reach it over HTTP, as Lambda reaches AWS."""

import errno
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from moto.apigateway.models import apigateway_backends
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from offline import apigateway_fidelity, dynamodb_fidelity, outbox
from offline.api_keys import KeyRegistry, key_source_for
from offline.clock import OfflineClock
from offline.functions import DEFAULT_MAX_CONCURRENCY, FunctionRuntime, InvocationResult, function_specs
from offline.gateway import ApiStage, LocalGateway, body_validators, stage_method_throttles
from offline.gateway_responses import GatewayResponses
from offline.iam_auth import OperatorCredentials, SigV4Verifier
from offline.provision import ProvisionedStack, provision
from offline.routes import ApiSpec, Route, RouteTable, declared_apis, declared_routes
from offline.scheduler import ScheduledInvocation, Scheduler, scheduled_invocations
from offline.server import CONTROL_PREFIX, GatewayServer
from offline.state import AlreadyRunning, StateDir
from offline.template import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    TEMPLATE_PATH,
    StackTemplate,
    TemplateError,
    load_template,
)
from offline.webhook_secrets import ensure_webhook_secrets

LOCALHOST = "127.0.0.1"
DEFAULT_PORT = 3000

# Dummy credentials: moto accepts any, and real ones must never reach it (or leave this machine).
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class StackOptions:
    port: int = DEFAULT_PORT
    overrides: dict[str, str] = field(default_factory=dict)
    template_path: Path = TEMPLATE_PATH
    stack_name: str = DEFAULT_STACK_NAME
    region: str = DEFAULT_REGION
    state_dir: StateDir = field(default_factory=StateDir)
    # None: on unless METERED_AI_OFFLINE_MGMT_RATE_LIMITS=0 (offline.apigateway_fidelity's switch).
    management_rate_limits: bool | None = None
    schedules: bool = True
    access_log: bool = True
    # The functions' stdout and stderr (their JSON logs): this process's stderr when verbose, else the state
    # folder's functions.log.
    verbose: bool = False
    # Workers per function where the template reserves no concurrency.
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    # Start one worker per function before serving (no cold start on a first request), instead of on demand.
    prewarm: bool = False


class OfflineStack:
    """Start with `start()` (or `with`), stop with `stop()`; `info` is what stack.json holds."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.info: dict[str, Any] = {}
        self.template: StackTemplate | None = None
        self.runtime: FunctionRuntime | None = None
        self.gateway: LocalGateway | None = None
        self.schedules: list[ScheduledInvocation] = []
        # The account's date (quota periods, usage days, scheduled times); movable through the control endpoint.
        self.clock = OfflineClock()
        self._server: GatewayServer | None = None
        self._moto: ThreadedMotoServer | None = None
        self._scheduler: Scheduler | None = None
        self._saved_environment: dict[str, str | None] = {}
        self._function_environment: dict[str, str] = {}
        self._functions_log: IO[bytes] | None = None
        self._claimed = False

    def __enter__(self) -> "OfflineStack":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> dict[str, Any]:
        """Bring the stack up; raises TemplateError (a template or parameters it cannot run) or AlreadyRunning."""
        options = self.options
        try:
            # Read the template first: a bad override must not need (or touch) a running stack's lock.
            template = load_template(options.template_path, options.stack_name, options.region, options.overrides)
            options.state_dir.claim()
            self._claimed = True
            self._server = _bind(options.port, options.access_log)
            self._start(template)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _start(self, template: StackTemplate) -> None:
        endpoint = self._start_emulator(template.region)
        # Routes and APIs come from the template as written (logical ids); the functions' environment from
        # the template resolved again with the physical names of what was just created.
        apis = declared_apis(template)
        routes = declared_routes(template, apis)
        # CloudFormation's own calls are not the account's management traffic: the buckets start full.
        apigateway_fidelity.set_management_rate_limits(False)
        try:
            provisioned = provision(template, endpoint, routes)
        finally:
            apigateway_fidelity.set_management_rate_limits(self.options.management_rate_limits)
        apigateway_fidelity.set_wall_clock(self.clock.now)
        # Generated unless PARAMS gave them, before the gateway serves the webhook route; stack.json has them.
        webhook_secrets = ensure_webhook_secrets(provisioned, endpoint)
        self.template = template = template.with_physical_ids(provisioned.attributes())
        specs = function_specs(template)
        if not self.options.verbose:
            self._functions_log = self.options.state_dir.functions_log.open("ab")
        self.runtime = FunctionRuntime(
            specs,
            self._function_environment,
            max_concurrency=self.options.max_concurrency,
            # Verbose: on this process's stderr, never its stdout (which has the banner, or a benchmark's figures).
            log=self._functions_log or sys.stderr.fileno(),
        )
        self.runtime.load()
        if self.options.prewarm:
            self.runtime.prewarm()
        # The one key pair AWS_IAM routes accept, new at each start (stack.json has it). Signatures are checked
        # against the wall clock, as callers sign with theirs, not the offline account's movable date.
        operator_credentials = OperatorCredentials.generate()
        self.gateway = LocalGateway(
            [_api_stage(api, provisioned, routes) for api in apis.values()],
            self.runtime,
            KeyRegistry(template.region),
            apigateway_fidelity.ledger(ACCOUNT_ID, template.region),
            now=self.clock.now,
            iam=SigV4Verifier(operator_credentials, template.region),
        )
        if CONTROL_PREFIX in self.gateway.stages:
            raise TemplateError(f"a stage named {CONTROL_PREFIX} would hide the offline control endpoint")
        self.options.state_dir.outbox.mkdir(parents=True, exist_ok=True)
        outbox.install(outbox.Outbox(self.options.state_dir.outbox))
        self.schedules = scheduled_invocations(specs, template.stack_name)
        assert self._server is not None
        self._server.gateway = self.gateway
        self._server.control = self._control
        self._server.start()
        if self.options.schedules:
            self._scheduler = Scheduler(self.schedules, self._run_scheduled, now=self.clock.now)
            self._scheduler.start()
        self.info = self._describe(template, provisioned, apis, routes, endpoint)
        if webhook_secrets is not None:
            self.info["webhook_secrets"] = webhook_secrets
        self.info["aws_credentials"] = operator_credentials.public()
        self.options.state_dir.write_stack(self.info)

    def _start_emulator(self, region: str) -> str:
        """moto with the fidelity patches on a free local port; this process's AWS calls go there."""
        apigateway_fidelity.install()
        dynamodb_fidelity.install()
        # One line per emulator call would drown the gateway's own access log.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address=LOCALHOST, port=0, verbose=False)
        self._moto.start()
        endpoint = "http://{}:{}".format(*self._moto.get_host_and_port())
        # This process's own calls (provisioning, tests, benchmarks) and every function's go to the emulator.
        self._function_environment = {
            **AWS_ENVIRONMENT,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }
        self._set_environment(self._function_environment)
        return endpoint

    def stop(self) -> None:
        """Stop everything this stack started; safe to call twice or after a failed start."""
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.runtime is not None:
            self.runtime.close()
        if self._functions_log is not None:
            self._functions_log.close()
            self._functions_log = None
        if self._moto is not None:
            # The account lives in this process's memory: forget it, so a next stack here starts empty.
            moto_api_backend.reset()
            self._moto.stop()
            self._moto = None
        outbox.uninstall()
        apigateway_fidelity.set_management_rate_limits(None)
        apigateway_fidelity.set_wall_clock(None)
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()
        if self._claimed:
            self.options.state_dir.release()
            self._claimed = False

    def invoke(self, logical_id: str, event: Any = None) -> InvocationResult:
        """Run one function now, with `event` or (None) its schedule's payload or an empty object."""
        if self.runtime is None or logical_id not in self.runtime.specs:
            raise KeyError(logical_id)
        if event is None:
            schedule = next((item for item in self.schedules if item.function_id == logical_id), None)
            event = schedule.payload(self.clock.now()) if schedule else {}
        return self.runtime.invoke(logical_id, event)

    def _control(self, verb: str, name: str, payload: Any) -> tuple[int, Any]:
        if verb == "stack":
            return 200, self.info
        if verb == "clock":
            return self.clock.control(payload)
        if verb == "management-calls":
            return 200, apigateway_fidelity.management_calls(ACCOUNT_ID, self.info["region"])
        if verb != "invoke":
            return 404, {
                "message": f"unknown control action {verb!r}; try invoke/<LogicalId>, clock, stack or management-calls"
            }
        try:
            result = self.invoke(name, payload)
        except KeyError:
            functions = ", ".join(sorted(self.runtime.specs)) if self.runtime else ""
            return 404, {"message": f"no function {name!r} in the template; functions: {functions}"}
        answer = {
            "function": name,
            "request_id": result.request_id,
            "ok": result.ok,
            "duration_ms": round(result.duration_ms, 1),
        }
        answer.update({"result": result.payload} if result.ok else {"error": result.error})
        return 200, answer

    def _run_scheduled(self, schedule: ScheduledInvocation, event: Any) -> None:
        assert self.runtime is not None
        result = self.runtime.invoke(schedule.function_id, event)
        error = result.error or {}
        outcome = "ok" if result.ok else f"FAILED {error.get('errorType')}: {error.get('errorMessage')}"
        name = f"{schedule.function_id}.{schedule.event_name} ({schedule.expression_text})"
        print(f"schedule {name}: {outcome} in {result.duration_ms:.0f} ms", file=sys.stderr, flush=True)

    def _set_environment(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        # A service-specific endpoint or a profile would point some calls away from the emulator.
        for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_") or name == "AWS_PROFILE"]:
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ.pop(name)

    def _describe(
        self,
        template: StackTemplate,
        provisioned: ProvisionedStack,
        apis: dict[str, ApiSpec],
        routes: list[Route],
        endpoint: str,
    ) -> dict[str, Any]:
        assert self._server is not None and self.runtime is not None
        base = f"http://{LOCALHOST}:{self._server.port}"
        api_urls = {logical_id: f"{base}/{api.stage_name}" for logical_id, api in apis.items()}
        return {
            "stack_name": template.stack_name,
            "region": template.region,
            "account_id": ACCOUNT_ID,
            "api_url": next(iter(api_urls.values()), base),
            "api_urls": api_urls,
            "aws_endpoint_url": endpoint,
            "control_url": f"{base}/{CONTROL_PREFIX}",
            "outbox_dir": str(self.options.state_dir.outbox.resolve()),
            "functions_log": None if self.options.verbose else str(self.options.state_dir.functions_log.resolve()),
            "usage_plan_ids": provisioned.plan_ids_by_tier,
            "tiers": _tiers(provisioned, template.region),
            "rest_api_ids": provisioned.rest_api_ids,
            "tables": provisioned.tables,
            "topics": provisioned.topics,
            "functions": {
                logical_id: {
                    "function_name": spec.function_name,
                    "handler": spec.handler,
                    "web_adapter": spec.web_adapter,
                }
                for logical_id, spec in self.runtime.specs.items()
            },
            "routes": [
                {
                    "method": route.method,
                    "path": route.resource_path,
                    "function": route.function_id,
                    "api_key_required": route.api_key_required,
                    "iam_auth": route.iam_auth,
                    "streaming": route.streaming,
                    "url": f"{api_urls[route.api_id]}{route.resource_path}",
                }
                for route in routes
            ],
            "schedules": [
                {
                    "function": item.function_id,
                    "event": item.event_name,
                    "expression": item.expression_text,
                    "enabled": item.enabled,
                }
                for item in self.schedules
            ],
            "parameter_overrides": self.options.overrides,
            "management_rate_limits": _management_rate_limits(self.options.management_rate_limits),
            "pid": os.getpid(),
            "port": self._server.port,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _management_rate_limits(option: bool | None) -> bool:
    if option is not None:
        return option
    return os.environ.get(apigateway_fidelity.RATE_LIMITS_ENV, "1") != "0"


def _bind(port: int, access_log: bool) -> GatewayServer:
    try:
        return GatewayServer((LOCALHOST, port), access_log=access_log)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunning(f"port {port} on {LOCALHOST} is already in use; choose another with PORT=") from None
        raise


def _api_stage(api: ApiSpec, provisioned: ProvisionedStack, routes: list[Route]) -> ApiStage:
    own = [route for route in routes if route.api_id == api.logical_id]
    return ApiStage(
        logical_id=api.logical_id,
        rest_api_id=provisioned.rest_api_ids[api.logical_id],
        stage=api.stage_name,
        routes=RouteTable(own),
        responses=GatewayResponses(api.gateway_responses),
        key_source=key_source_for(api.key_source),
        method_throttles=stage_method_throttles(api.method_settings),
        binary_media_types=api.binary_media_types,
        validators=body_validators(own),
    )


def _tiers(provisioned: ProvisionedStack, region: str) -> dict[str, dict[str, Any]]:
    """Each tier's limits as the emulator holds them (the template's values after overrides)."""
    plans = apigateway_backends[ACCOUNT_ID][region].usage_plans
    tiers = {}
    for tier, plan_id in provisioned.plan_ids_by_tier.items():
        plan = plans[plan_id]
        throttle, quota = plan.throttle or {}, plan.quota or {}
        tiers[tier] = {
            "plan_id": plan_id,
            "rate_limit": throttle.get("rateLimit"),
            "burst_limit": throttle.get("burstLimit"),
            "quota_limit": quota.get("limit"),
            "quota_period": quota.get("period"),
            "quota_offset": quota.get("offset", 0),
            # The plan's method throttles, "/<resource path>/<METHOD>" -> limits (README, "Tiers").
            "method_throttles": {
                method: {"rate_limit": limits.get("rateLimit"), "burst_limit": limits.get("burstLimit")}
                for api_stage in plan.api_stages
                for method, limits in (api_stage.get("throttle") or {}).items()
            },
        }
    return tiers
