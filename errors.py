"""The project's own error for bad input: it names the file, the field, the value and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input. The CLI turns it into a message and exit status 2.

    Args:
        message: what is wrong and how to fix it.
        file: the file the input came from, if any.
        field: the key path or column (e.g. ``reinsurance[1].limit_cny`` or ``row 7, exposure``).
        value: the offending value.
        choices: the valid choices, listed in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: object = None,
        choices: Iterable[str] | None = None,
    ):
        self.file, self.field, self.value = file, field, value
        self.choices = list(choices) if choices is not None else None
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = f"{where}: {self.reason}" if where else self.reason
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.choices:
            text += f". Valid choices: {', '.join(map(str, self.choices))}"
            close = difflib.get_close_matches(str(self.value), list(map(str, self.choices)), n=1)
            if close:
                text += f". Did you mean {close[0]!r}?"
        return text
