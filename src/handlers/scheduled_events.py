"""What a scheduled function is invoked with, in one place: EventBridge Scheduler's input
(`{"scheduled_time": "<aws.scheduler.scheduled-time>", "execution_id": ..., "attempt": ...}`), an EventBridge
rule's "Scheduled Event" (`time`), or `{}` for a run now. A run works as of the scheduled time, so a retried or
late delivery does what the original would have."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator


class ScheduledRun(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scheduled_time: datetime | None = None
    time: datetime | None = None
    execution_id: str | None = None
    attempt: str | None = None

    @field_validator("scheduled_time", "time", mode="before")
    @classmethod
    def _instant_or_none(cls, value: object) -> object:
        # An un-substituted placeholder (a test event, `sam local invoke`) means "now", not a failed run.
        return None if isinstance(value, str) and value.startswith("<") else value

    @property
    def scheduled_at(self) -> datetime | None:
        """The instant the run is for; None: now."""
        moment = self.scheduled_time or self.time
        if moment is not None and moment.tzinfo is None:
            raise ValueError("the scheduled time must carry a time zone (EventBridge sends UTC with a Z)")
        return moment
