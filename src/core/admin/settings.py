"""The operator console's settings (AdminFunction, /admin/*)."""

from pydantic import Field

from core.settings import StackSettings, TierCacheSettings, TierChangeSettings, TierPoliciesSettings


class UsageExportSettings(StackSettings, TierCacheSettings):
    """The usage export's reads (GET /admin/usage, and UsageExportFunction at each period close)."""

    metering_table: str = Field(min_length=1)
    # GetUsage's page of keys (the export reads each plan as the quota monitor does).
    get_usage_page_size: int = Field(default=500, ge=1, le=500)
    # The scheduled export's bucket (UsageExportBucket); GET /admin/usage names its objects in a 413.
    usage_export_bucket: str = ""
    # Where in it the export's objects go: `<prefix><day|week|month>/<period>.<csv|json>`.
    usage_export_prefix: str = Field(default="usage/", pattern=r"^([A-Za-z0-9_-]+/)*$")


class AdminSettings(UsageExportSettings, TierChangeSettings, TierPoliciesSettings):
    """/admin/*: IAM-authorized operations on partners."""

    # The operators' topic: every change is published with kind=operator-action.
    alert_topic_arn: str = Field(min_length=1)
    # OneKeyPerMailbox, as signup reads it: an imported partner's mailbox is locked the same way.
    one_key_per_mailbox: bool = False
    # How many audit entries GET /admin/partners/{id} shows (newest first).
    audit_trail_length: int = Field(default=50, ge=1, le=100)
