"""The scheduled usage export (EventBridge Scheduler, daily shortly after midnight UTC, invoked asynchronously):
every quota period that closed the day before, as CSV and JSON, to UsageExportBucket.

The schedule's input carries its scheduled time (`<aws.scheduler.scheduled-time>`): a retried or late delivery
exports the same periods as the original, and writes the same bytes (core.admin.usage_export.ScheduledExport).
`{"period": "2026-03"}` (or a day) exports that period on demand, e.g. to fill a gap after an outage. A failure
raises: Lambda retries the event, then sends it to the DLQ.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from core.admin.service import scheduled_export
from core.observability import logger, tracer
from handlers.scheduled_events import ScheduledRun


class ExportEvent(ScheduledRun):
    """The schedule's input, or `{"period": ...}` for one period on demand; `{}` exports what closed before now."""

    period: str | None = None

    @property
    def as_of(self) -> datetime:
        return self.scheduled_at or datetime.now(UTC)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    run = ExportEvent.model_validate(event or {})
    logger.append_keys(execution_id=run.execution_id)
    written = scheduled_export().run(run.as_of, run.period)
    return {
        "as_of": run.as_of.isoformat(),
        "objects": [{"key": item.key, "rows": item.rows, "sha256": item.sha256} for item in written],
    }
