"""`python -m offline.billing_event --partner-id p_... --tier pro`: send a signed billing event to the running
offline stack's webhook (POST /webhooks/billing), as a billing system would, and print the answer.

The URL and the signing secrets come from the stack's stack.json (`api_url`, `webhook_secrets`). By default
the event is the generic one, signed with Standard Webhooks; `--scheme stripe` sends a Stripe subscription
event whose price has the tier as its lookup_key. `--cancel` cancels the subscription instead.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stripe
from standardwebhooks import Webhook

from offline.state import DEFAULT_STATE_DIR, StackNotRunning, read_stack

EXIT_REFUSED = 1
EXIT_USAGE = 2


def generic_event(partner_id: str, tier: str | None, cancel: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"partner_id": partner_id}
    if not cancel:
        data["tier"] = tier
    return {
        "type": "subscription.canceled" if cancel else "subscription.updated",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def stripe_event(partner_id: str, tier: str | None, cancel: bool) -> dict[str, Any]:
    subscription = {
        "id": f"sub_{uuid.uuid4().hex[:24]}",
        "object": "subscription",
        "customer": f"cus_{partner_id.removeprefix('p_')[:14]}",
        "status": "canceled" if cancel else "active",
        "metadata": {"partner_id": partner_id},
        "items": {"object": "list", "data": [{"price": {"id": f"price_{tier}", "lookup_key": tier}}]},
    }
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "created": int(time.time()),
        "type": "customer.subscription.deleted" if cancel else "customer.subscription.updated",
        "data": {"object": subscription},
    }


def signed(scheme: str, body: str, secret: str) -> dict[str, str]:
    """The headers the billing system would send: Stripe-Signature, or webhook-id/-timestamp/-signature."""
    if scheme == "stripe":
        return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret)}
    message_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


def send(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the offline stack's own URL, on 127.0.0.1
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.cancel and not args.tier:
        print("offline.billing_event: give --tier (or --cancel)", file=sys.stderr)
        return EXIT_USAGE
    try:
        stack = read_stack(args.state_dir)
    except (StackNotRunning, OSError) as exc:
        print(f"offline.billing_event: {exc}", file=sys.stderr)
        return EXIT_USAGE
    secrets = stack.get("webhook_secrets")
    if not secrets:
        print("offline.billing_event: this stack has no billing webhook (no webhook_secrets)", file=sys.stderr)
        return EXIT_USAGE
    build = stripe_event if args.scheme == "stripe" else generic_event
    body = json.dumps(build(args.partner_id, args.tier, args.cancel), separators=(",", ":"))
    status, answer = send(f"{stack['api_url']}/webhooks/billing", body, signed(args.scheme, body, secrets[args.scheme]))
    print(f"{status} {answer}")
    return 0 if 200 <= status < 300 else EXIT_REFUSED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m offline.billing_event", description=__doc__)
    parser.add_argument("--partner-id", required=True, help="the partner (signup's partner_id)")
    parser.add_argument("--tier", help="the tier to move to (e.g. pro)")
    parser.add_argument("--cancel", action="store_true", help="cancel the subscription instead")
    parser.add_argument("--scheme", choices=["standard", "stripe"], default="standard", help="signature scheme")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="the running stack's state folder")
    return parser


if __name__ == "__main__":
    sys.exit(main())
