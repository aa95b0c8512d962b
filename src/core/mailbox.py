"""Which address gets one key: signup and the operator console's key import share the rule; the portal's key
recovery finds a partner by either spelling of its mailbox."""

# Providers that deliver a.b+x@ to ab@ (OneKeyPerMailbox folds those spellings into one mailbox).
DOT_BLIND_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_of(email: str, one_key_per_mailbox: bool) -> str:
    """The address that gets one key: the email itself, or (OneKeyPerMailbox) the mailbox it delivers to where
    the provider ignores dots and +tags (a.b+x@googlemail.com is ab@gmail.com)."""
    local, _, domain = email.rpartition("@")
    if not one_key_per_mailbox or domain not in DOT_BLIND_DOMAINS:
        return email
    return f"{local.split('+', 1)[0].replace('.', '')}@{DOT_BLIND_DOMAINS[domain]}"
