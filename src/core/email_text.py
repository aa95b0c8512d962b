"""Text safe for an email body: partner-supplied values with no control characters that could forge lines,
hide text or drive a terminal (CR/LF, NUL, TAB, ESC and ANSI sequences, Unicode bidi overrides)."""

import re
from typing import Final

# C0 and C1 controls (CR, LF, TAB, NUL, ESC, DEL included) and the Unicode bidi controls: marks U+200E/U+200F,
# embeddings and overrides U+202A-U+202E, isolates U+2066-U+2069.
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def email_safe(text: str) -> str:
    """`text` with each run of control or bidi characters replaced by one space (an ANSI escape loses its ESC)."""
    return _UNSAFE.sub(" ", text)
