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
    # GetUsage's page of keys (the usage export reads each plan as the quota monitor does).
    get_usage_page_size: int = Field(default=500, ge=1, le=500)
    # The scheduled usage export's bucket (UsageExportBucket); empty: none (GET /admin/usage still answers).
    usage_export_bucket: str = ""
    # Where in it the export's objects go: `<prefix><period>.<csv|json>`.
    usage_export_prefix: str = "usage/"
