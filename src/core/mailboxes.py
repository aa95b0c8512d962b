"""Email addresses as mailboxes: where a provider ignores dots and +tags in the local part, several addresses
are one mailbox (signup's OneKeyPerMailbox; the portal's key recovery finds a partner by either)."""

# Mail providers that ignore dots and +tags in the local part, and their one domain.
DOT_BLIND_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_of(email: str, one_key_per_mailbox: bool) -> str:
    """The address that gets one key: the email itself, or (OneKeyPerMailbox) the mailbox it delivers to where
    the provider ignores dots and +tags (a.b+x@googlemail.com is ab@gmail.com)."""
    local, _, domain = email.rpartition("@")
    if not one_key_per_mailbox or domain not in DOT_BLIND_DOMAINS:
        return email
    return f"{local.split('+', 1)[0].replace('.', '')}@{DOT_BLIND_DOMAINS[domain]}"
