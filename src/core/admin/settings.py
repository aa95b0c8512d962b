"""The operator console's settings (AdminFunction, /admin/*)."""

from pydantic import Field

from core.settings import StackSettings, TierCacheSettings, TierChangeSettings, TierPoliciesSettings


class AdminSettings(StackSettings, TierCacheSettings, TierChangeSettings, TierPoliciesSettings):
    """/admin/*: IAM-authorized operations on partners."""

    # The AI API's ledger and the quota monitor's readings: a partner's standing this period.
    metering_table: str = Field(min_length=1)
    # The operators' topic: every change is published with kind=operator-action.
    alert_topic_arn: str = Field(min_length=1)
    # How many audit entries GET /admin/partners/{id} shows (newest first).
    audit_trail_length: int = Field(default=50, ge=1, le=100)
