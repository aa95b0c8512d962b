"""`keys import FILE`: the CSV sent in batches of rows (each with the header), so a large file never meets
API Gateway's 29-second integration timeout and the progress bar moves; the per-batch answers merged into one,
with each row numbered as in the file."""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BATCH_ROWS = 20
# The answer's lists of rows, by the names the import route uses (README, "Key import").
IMPORTED = "imported"
REJECTED = "rejected"


@dataclass(frozen=True)
class Batch:
    first_row: int  # the file's data row number (1 = the row after the header) of this batch's first row
    rows: int
    csv_text: str  # the header and this batch's rows, never logged: key values are in it


def batches(csv_text: str, size: int) -> tuple[int, Iterator[Batch]]:
    """How many data rows the file has, and its batches of at most `size` rows, each with the header."""
    table = [row for row in csv.reader(io.StringIO(csv_text)) if row]
    if not table:
        return 0, iter(())
    header, rows = table[0], table[1:]

    def each() -> Iterator[Batch]:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([header, *chunk])
            yield Batch(first_row=start + 1, rows=len(chunk), csv_text=text.getvalue())

    return len(rows), each()


@dataclass
class ImportReport:
    """The merged answer: every list of row results, with `row` renumbered from the batch to the file."""

    answer: dict[str, Any] = field(default_factory=dict)

    def add(self, batch: Batch, answer: Any) -> None:
        if not isinstance(answer, dict):
            return
        for name, value in answer.items():
            if isinstance(value, list):
                merged = self.answer.setdefault(name, [])
                merged.extend(_renumbered(item, batch.first_row - 1) for item in value)
            elif isinstance(value, int) and not isinstance(value, bool):
                self.answer[name] = self.answer.get(name, 0) + value
            else:
                self.answer.setdefault(name, value)

    @property
    def imported(self) -> list[Any]:
        found: list[Any] = self.answer.get(IMPORTED, [])
        return found

    @property
    def refused(self) -> list[Any]:
        found: list[Any] = self.answer.get(REJECTED, [])
        return found

    def add_failed(self, batch: Batch, status: int, code: str, message: str) -> None:
        """A batch the API refused or failed as a whole: its rows are reported, not dropped. A 4xx refused the
        body before any row (nothing of it changed); after a 5xx or no answer some rows may have gone in, and
        importing them again says so (`duplicate_email`) without a second key. `status` 0: no answer at all."""
        if 0 < status < 500:
            code, reason = code or f"http_{status}", f"the batch was refused ({status}): {message}"
        else:
            code, reason = "not_confirmed", f"the batch failed ({status} {code}): import these rows again"
        rows = [{"row": batch.first_row + index, "code": code, "reason": reason} for index in range(batch.rows)]
        self.answer.setdefault(IMPORTED, [])
        self.answer.setdefault(REJECTED, []).extend(rows)


def _renumbered(item: Any, offset: int) -> Any:
    if isinstance(item, dict) and isinstance(item.get("row"), int):
        return {**item, "row": item["row"] + offset}
    return item
