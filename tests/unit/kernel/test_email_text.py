"""Partner-supplied text placed in an email body."""

import pytest

from core.email_text import email_safe


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("Acme Corp", "Acme Corp"),
        ("Acme\r\nBcc: victim@example.com", "Acme Bcc: victim@example.com"),
        ("Acme\x00\tCorp", "Acme Corp"),
        ("\x1b[31mred\x1b[0m", "[31mred [0m"),
        ("evil\u202egnp.exe", "evil gnp.exe"),
        ("\u2066isolated\u2069 \u200emark\u200f", "isolated mark"),
        ("  \r\n Acme  AI \n", "Acme  AI"),  # only the whitespace it created is collapsed
        ("C1\x85next\x9bline", "C1 next line"),
        ("Zoë Müller 株式会社", "Zoë Müller 株式会社"),
    ],
)
def test_control_and_bidi_characters_become_one_space_per_run(text: str, safe: str) -> None:
    # Given partner-supplied text / When it is made safe for an email body / Then no control character remains
    assert email_safe(text) == safe
