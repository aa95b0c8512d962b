"""Signup's settings: POST /signup and GET /signup/confirm, and the scheduled sweep of failed signups."""

from pydantic import Field, model_validator

from core.settings import SelfServiceTiersSettings, StackSettings, TierCacheSettings


class SignupSettings(StackSettings, SelfServiceTiersSettings, TierCacheSettings):
    """POST /signup and GET /signup/confirm."""

    idempotency_table: str = Field(min_length=1)
    # A pending signup's lease on its email. Longer than the function's timeout, so an expired lease means
    # its holder is gone and a retry may take over and clean up.
    signup_lease_seconds: int = Field(default=60, ge=1)
    # OneKeyPerMailbox: one key per mailbox where the provider ignores dots and +tags (gmail.com, googlemail.com).
    one_key_per_mailbox: bool = False
    # PartnerAlertSender: the verified SES sender of the link that confirms a partner's alert address
    # (empty: no link is sent, and no partner gets alert emails).
    partner_alert_sender: str = ""
    # How long a confirmation link works.
    confirmation_link_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    # SignupDoubleOptIn: the key is issued only when the link emailed to the address is opened.
    double_opt_in: bool = False

    @model_validator(mode="after")
    def _opt_in_needs_a_sender(self) -> "SignupSettings":
        if self.double_opt_in and not self.partner_alert_sender:
            raise ValueError("DOUBLE_OPT_IN needs PARTNER_ALERT_SENDER, the sender of the confirmation link")
        return self


class SignupSweepSettings(StackSettings):
    """The scheduled sweep of failed signups (SignupSweepFunction)."""

    # Its share of the account's management-API pool (DeleteApiKey: 5/s, all calls: 10/s).
    sweep_calls_per_second: float = Field(default=1.0, gt=0, le=5)
    # Stop starting cleanups when less than this is left of the invocation; the next run finishes.
    sweep_reserve_seconds: float = Field(default=10.0, ge=0)
