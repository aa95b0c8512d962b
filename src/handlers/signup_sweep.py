"""The scheduled signup sweep: deletes the keys and locks of signups that failed and could not undo
themselves (their lease ran out), and the retired keys of key rotations that are due by the schedule's time
(its input: `{"scheduled_time": "<aws.scheduler.scheduled-time>"}`). A run that could not clean something
raises at the end, so Lambda retries the event and, when retries run out, sends it to the DLQ."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from core.errors import SignupSweepFailed
from core.observability import logger, tracer
from core.settings import load_settings
from core.signup.service import signup_sweep
from core.signup.settings import SignupSweepSettings
from handlers.scheduled_events import ScheduledRun


class SweepEvent(ScheduledRun):
    @property
    def as_of(self) -> float | None:
        moment = self.scheduled_at
        return moment.timestamp() if moment else None


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    report = signup_sweep().run(
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        reserve_seconds=load_settings(SignupSweepSettings).sweep_reserve_seconds,
        as_of=SweepEvent.model_validate(event or {}).as_of,
    )
    logger.info("signup sweep finished", **report.model_dump())
    if report.failed or report.retired_failed:
        raise SignupSweepFailed(
            f"signup sweep: {report.failed} of {report.found} failed signups and {report.retired_failed} of "
            f"{report.retired_found} retired keys not cleaned up"
        )
    return report.model_dump()
