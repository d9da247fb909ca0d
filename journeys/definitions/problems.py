"""What is wrong with a definition: `Problem`s, and the `DefinitionError` that carries them."""

from __future__ import annotations

from dataclasses import dataclass

from journeys.errors import Invalid


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition: what, where (a path), and on which line if known."""

    message: str
    path: str = ""
    line: int | None = None

    def format(self, filename: str) -> str:
        head = filename if self.line is None else f"{filename}:{self.line}"
        return f"{head}: {self.path}: {self.message}" if self.path else f"{head}: {self.message}"


class DefinitionError(Invalid):
    """A definition could not be loaded; `problems` lists everything that is wrong with it (the
    messages: each problem formatted with the file name)."""

    def __init__(self, problems: list[Problem], filename: str = "<definition>") -> None:
        self.problems = list(problems)
        self.filename = filename
        super().__init__([problem.format(filename) for problem in self.problems])

    def __str__(self) -> str:
        return "\n".join(problem.format(self.filename) for problem in self.problems)
