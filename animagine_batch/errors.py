"""Errors the command line turns into a one-paragraph message and exit status 2."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad input (job file, override, prompt set, model source, output folder).

    Carries every problem found, each starting with the key path or file it concerns.
    """

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def render(self) -> str:
        if len(self.problems) == 1:
            return f"error: {self.problems[0]}"
        lines = [f"error: {len(self.problems)} problems in the job:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class StorageError(ConfigError):
    """The disk refused a write (full, over a file-size limit, read-only): what was finished is
    saved, and rerunning the same command resumes once there is room."""

    exit_code = 74  # EX_IOERR of sysexits.h: distinct from bad input (2) and regressions (1)


class ResultsError(Exception):
    """A run directory, results file or output path that a command cannot use (exit status 2);
    the text names it and what to do."""

    exit_code = 2
