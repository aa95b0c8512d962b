"""`python -m offline`: run the whole product on 127.0.0.1 until Ctrl-C or SIGTERM (what `make local` runs)."""

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from offline.functions import DEFAULT_MAX_CONCURRENCY
from offline.stack import DEFAULT_PORT, OfflineStack, StackOptions
from offline.state import AlreadyRunning, StateDir
from offline.template import DEFAULT_REGION, DEFAULT_STACK_NAME, TEMPLATE_PATH, TemplateError, parse_parameter_overrides

EXIT_RUNNING = 1
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = StackOptions(
            port=args.port,
            overrides=parse_parameter_overrides(args.params),
            template_path=args.template,
            stack_name=args.stack_name,
            region=args.region,
            state_dir=StateDir(args.state_dir),
            management_rate_limits=False if args.no_management_rate_limits else None,
            schedules=not args.no_schedules,
            access_log=not args.quiet,
            verbose=args.verbose,
            max_concurrency=args.max_concurrency,
            prewarm=args.prewarm,
        )
        stack = OfflineStack(options)
        info = stack.start()
    except KeyboardInterrupt:
        return 130
    except TemplateError as exc:
        print(f"offline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AlreadyRunning as exc:
        print(f"offline: {exc}", file=sys.stderr)
        return EXIT_RUNNING
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        print(banner(info), flush=True)
        # A timeout keeps the main thread responsive to signals on every platform.
        while not stopping.wait(1.0):
            pass
    finally:
        print("offline: stopping", file=sys.stderr, flush=True)
        stack.stop()
    return 0


def banner(info: dict[str, Any]) -> str:
    """What a person needs to start: where things are, the tiers, and three commands to try."""
    lines = [
        f"Offline stack {info['stack_name']} is up: for trying and testing only, never a production server.",
        f"  API        {info['api_url']}",
        f"  AWS        {info['aws_endpoint_url']}  (region {info['region']}, any credentials, e.g. testing/testing)",
        f"  Outbox     {info['outbox_dir']}",
        _logs_line(info.get("functions_log")),
        f"  stack.json {Path(info['outbox_dir']).parent / 'stack.json'}",
        "  Routes",
    ]
    if any(route["path"] == "/portal" for route in info["routes"]):
        lines.insert(2, f"  Portal     {info['api_url']}/portal  (sign up, my usage: open it in a browser)")
    for route in info["routes"]:
        key = "  (API key)" if route["api_key_required"] else ""
        lines.append(f"    {route['method']:<6} {route['path']:<24} -> {route['function']}{key}")
    lines.append("  Tiers")
    for tier, limits in info["tiers"].items():
        lines.append(f"    {tier:<12} {_limits(limits)}")
    if info["schedules"]:
        lines.append("  Schedules")
        for schedule in info["schedules"]:
            state = "" if schedule["enabled"] else "  (disabled)"
            lines.append(f"    {schedule['function']:<28} {schedule['expression']}{state}")
    if not info["management_rate_limits"]:
        lines.append("  Management-API rate limits: off")
    lines += ["", "Try it:", *walkthrough(info), "", "Ctrl-C stops the stack; its state is in memory and goes with it."]
    return "\n".join(lines)


def _logs_line(functions_log: str | None) -> str:
    if functions_log is None:
        return "  Logs       the functions' logs are printed below, with one line per request"
    return f"  Logs       {functions_log}  (the functions' logs; VERBOSE=1 prints them here)"


def _limits(limits: dict[str, Any]) -> str:
    throttle = (
        f"{limits['rate_limit']:g} req/s, burst {limits['burst_limit']}" if limits["rate_limit"] else "no throttle"
    )
    quota = f"{limits['quota_limit']} per {limits['quota_period']}" if limits["quota_limit"] else "no quota"
    methods = []
    for key, method in limits.get("method_throttles", {}).items():
        path, _, verb = key.rpartition("/")
        methods.append(f"; {verb} {path} {method['rate_limit']:g} req/s, burst {method['burst_limit']}")
    return f"{throttle}; {quota}{''.join(methods)}"


def walkthrough(info: dict[str, Any]) -> list[str]:
    """curl lines: sign up (a public POST route), call a key route (and a chat completion), then see 403 and 429."""
    routes = info["routes"]
    public_posts = [route for route in routes if route["method"] == "POST" and not route["api_key_required"]]
    metered_gets = [route for route in routes if route["method"] == "GET" and route["api_key_required"]]
    # This template's own routes first (signup, the models list); any public POST / key GET otherwise.
    signup = next((route for route in public_posts if route["path"] == "/signup"), next(iter(public_posts), None))
    metered = next((route for route in metered_gets if route["path"] == "/v1/models"), next(iter(metered_gets), None))
    if signup is None or metered is None:
        return ["  (the template has no public POST route and key-protected GET route to demonstrate)"]
    # Enough calls to empty the smallest burst (the free tier's, which a signup gets by default).
    burst = min((int(limits["burst_limit"]) for limits in info["tiers"].values() if limits["burst_limit"]), default=10)
    body = shlex.quote('{"name":"Ada","email":"ada@example.com"}')
    extract = shlex.quote('import json,sys; print(json.load(sys.stdin)["api_key"])')
    url = shlex.quote(metered["url"])
    lines = [
        f"  KEY=$(curl -s -X POST {signup['url']} -H 'content-type: application/json' -d {body}"
        f" | python3 -c {extract})",
        f'  curl -s {url} -H "x-api-key: $KEY"; echo',
    ]
    chat = next((route for route in routes if route["path"] == "/v1/chat/completions"), None)
    if chat is not None:
        # The AI routes also take the key as a bearer token, as OpenAI clients send it.
        message = shlex.quote('{"model":"nova-micro","messages":[{"role":"user","content":"hello offline"}]}')
        lines.append(
            f'  curl -s {shlex.quote(chat["url"])} -H "Authorization: Bearer $KEY"'
            f" -H 'content-type: application/json' -d {message}; echo"
        )
    lines.append(
        f"  curl -s {url}; echo; for i in $(seq {burst + 2}); do "
        f"curl -s -o /dev/null -w '%{{http_code}} ' {url} -H \"x-api-key: $KEY\"; done; echo"
    )
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m offline", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"gateway port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--params", default="", help='SAM-style parameter overrides, e.g. "FreeQuotaLimit=20 FreeRateLimit=2"'
    )
    parser.add_argument(
        "--state-dir", type=Path, default=StateDir().path, help="where stack.json, the lock and the outbox go"
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="the SAM template (default template.yaml)")
    parser.add_argument(
        "--stack-name", default=DEFAULT_STACK_NAME, help=f"AWS::StackName (default {DEFAULT_STACK_NAME})"
    )
    parser.add_argument("--region", default=DEFAULT_REGION, help=f"AWS::Region (default {DEFAULT_REGION})")
    parser.add_argument(
        "--no-management-rate-limits",
        action="store_true",
        help="do not throttle API Gateway management calls (for benchmarks of something else)",
    )
    parser.add_argument("--no-schedules", action="store_true", help="do not run scheduled functions on their own")
    parser.add_argument("--quiet", action="store_true", help="no access log line per request")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the functions' logs here too (default: to functions.log in the state folder)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULT_MAX_CONCURRENCY,
        help="workers per function without ReservedConcurrentExecutions; more invocations wait "
        f"(default {DEFAULT_MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--prewarm", action="store_true", help="start one worker per function before serving (no first cold start)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
