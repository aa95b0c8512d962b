"""The offline stack: the product on an embedded AWS emulator (moto), driven by template.yaml.

For trying and testing the product only; it is never a server to run in production.
"""

import sys
from pathlib import Path

# The emulation shares the domain's period rules (core.periods) with the functions, whose code is in src/
# (their CodeUri); `python -m offline` from the project root must find it as Lambda finds its package root.
_SOURCE = str(Path(__file__).resolve().parent.parent / "src")
if _SOURCE not in sys.path:
    sys.path.append(_SOURCE)
