"""Text that goes into an email's subject or body from outside (a partner's name, an address as displayed):
one line, no control characters, no bidi overrides."""

import re

# C0 controls (NUL..US, incl. TAB, LF, CR, ESC), DEL, C1 controls, and the Unicode bidi controls (embeddings
# and overrides U+202A-U+202E, isolates U+2066-U+2069, LRM/RLM U+200E/U+200F) that can reorder what a reader sees.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_RUN = re.compile(rf"\s*(?:{_UNSAFE.pattern}\s*)+")


def email_safe(text: str) -> str:
    """Each run of unsafe characters (with the whitespace around it) becomes one space; the ends are stripped."""
    return _UNSAFE_RUN.sub(" ", text).strip()
