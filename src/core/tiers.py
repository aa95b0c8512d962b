"""Tiers are the stack's usage plans, found by name (`<stack>-<tier>`) at run time.

Reading them at run time rather than from `!Ref` in the environment avoids the template's circular
dependency (function -> API -> stage -> plan), and makes a new tier a template-only change.
"""

import re
import time
from collections.abc import Callable

from core.errors import UnknownTier
from core.models import Tier
from core.ports import UsagePlanLister

_TIER_NAME = re.compile(r"^[a-z][a-z0-9]*$")


# A key's tags (IAM conditions in template.yaml allow changing only keys tagged with the stack) and how much of its
# value a partner record keeps (signup, key import).
STACK_TAG = "metered-ai:stack"
PARTNER_TAG = "metered-ai:partner-id"
KEY_PREFIX_LENGTH = 4


def plan_name(stack_name: str, tier: str) -> str:
    return f"{stack_name}-{tier}"


def key_name(stack_name: str, partner_id: str) -> str:
    return f"{stack_name}-{partner_id}"


class TierCatalog:
    """The stack's tiers, read from API Gateway and reused for `ttl_seconds`."""

    def __init__(
        self,
        stack_name: str,
        plans: UsagePlanLister,
        ttl_seconds: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix = plan_name(stack_name, "")
        self._plans = plans
        self._ttl = ttl_seconds
        self._clock = clock
        self._tiers: dict[str, Tier] = {}
        self._read_at: float | None = None

    def all(self) -> dict[str, Tier]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            self._tiers = self._read()
            self._read_at = now
        return self._tiers

    def get(self, name: str) -> Tier:
        tiers = self.all()
        if name not in tiers:
            raise UnknownTier(name, sorted(tiers))
        return tiers[name]

    def _read(self) -> dict[str, Tier]:
        tiers = {}
        for plan in self._plans.list_usage_plans():
            if not plan.name.startswith(self._prefix):
                continue
            name = plan.name.removeprefix(self._prefix)
            if _TIER_NAME.match(name):
                tiers[name] = Tier(name=name, plan_id=plan.id, limits=plan.limits)
        return tiers
