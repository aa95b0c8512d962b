"""`python -m offline.invoke --function <LogicalId> [--event file]`: run a function of the running offline
stack now (what `make invoke` runs), print its result as JSON, and exit non-zero if it failed."""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from offline.state import DEFAULT_STATE_DIR, StackNotRunning, read_stack

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.function:
        print("offline.invoke: name the function: --function <LogicalId> (make invoke FUNCTION=...)", file=sys.stderr)
        return EXIT_USAGE
    try:
        event = json.loads(args.event.read_text()) if args.event else None
    except (OSError, ValueError) as exc:
        print(f"offline.invoke: cannot read the event {args.event}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        stack = read_stack(args.state_dir)
        status, answer = _post(f"{stack['control_url']}/invoke/{args.function}", event)
    except (StackNotRunning, OSError) as exc:
        print(f"offline.invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if status != 200:
        print(f"offline.invoke: {answer.get('message', answer)}", file=sys.stderr)
        return EXIT_USAGE
    if not answer["ok"]:
        print(json.dumps(answer["error"], indent=2))
        return EXIT_FAILED
    print(json.dumps(answer["result"], indent=2, default=str))
    return 0


def _post(url: str, event: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - a URL of our own stack on 127.0.0.1
        url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        # The function's own timeout bounds the call; this only guards against a stack that hangs.
        with urllib.request.urlopen(request, timeout=960) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m offline.invoke", description=__doc__)
    parser.add_argument("--function", default="", help="the function's logical id in template.yaml")
    parser.add_argument("--event", type=Path, help="a JSON event file (default: its schedule's event, or {})")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="the running stack's state folder")
    return parser


if __name__ == "__main__":
    sys.exit(main())
