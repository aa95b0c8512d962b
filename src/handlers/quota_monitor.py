"""The scheduled quota monitor (EventBridge Scheduler, invoked asynchronously): one run over every tier.

The schedule's input carries its scheduled time (`<aws.scheduler.scheduled-time>`): the run evaluates the
quota period of that instant, so a retried or duplicated delivery evaluates the same period as the original.
A run that could not read a plan or deliver an alert raises at the end, after everything else was done:
Lambda retries the event and, when retries run out, sends it to the DLQ.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.errors import QuotaMonitorRunFailed
from core.observability import logger, metrics, tracer
from core.quota.service import RunReport, quota_monitor
from core.quota.settings import QuotaMonitorSettings
from core.settings import load_settings
from handlers.scheduled_events import ScheduledRun


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    run = ScheduledRun.model_validate(event or {})
    logger.append_keys(execution_id=run.execution_id, attempt=run.attempt)
    report = quota_monitor().run(
        as_of=run.scheduled_at, time_left=lambda: context.get_remaining_time_in_millis() / 1000
    )
    _run_metrics(report)
    if report.failed:
        raise QuotaMonitorRunFailed(
            f"quota monitor run as of {report.as_of.isoformat()} failed: plans not read: "
            f"{report.failed_plans or 'none'}; alerts not delivered: {report.undelivered}"
        )
    return report.as_dict()


def _run_metrics(report: RunReport) -> None:
    metrics.add_dimension(name="stack", value=load_settings(QuotaMonitorSettings).stack_name)
    metrics.add_metric(name="PlansFailed", unit=MetricUnit.Count, value=len(report.failed_plans))
    metrics.add_metric(name="AlertsSent", unit=MetricUnit.Count, value=report.alerts)
    metrics.add_metric(name="AlertDigestsSent", unit=MetricUnit.Count, value=report.digests)
    metrics.add_metric(name="AlertsUndelivered", unit=MetricUnit.Count, value=report.undelivered)
    metrics.add_metric(name="PartnerEmailsSent", unit=MetricUnit.Count, value=report.partner_emails_sent)
    metrics.add_metric(name="PartnerEmailsFailed", unit=MetricUnit.Count, value=report.partner_emails_failed)
    metrics.add_metric(name="QuotaReadingsWritten", unit=MetricUnit.Count, value=report.readings_written)
    if report.dormant.swept:
        metrics.add_metric(name="DormantKeysDeleted", unit=MetricUnit.Count, value=report.dormant.keys_deleted)
        metrics.add_metric(name="DormantSweepErrors", unit=MetricUnit.Count, value=len(report.dormant.errors))
    if report.api_keys is not None:
        # Every key of the account in the Region, against API Gateway's ceiling of 10,000 (ApiKeysNearCeilingAlarm).
        metrics.add_metric(name="ApiKeysInAccount", unit=MetricUnit.Count, value=report.api_keys)
