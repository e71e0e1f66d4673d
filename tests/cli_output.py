"""What a command prints on stderr beside its verdict lines (errors, warnings, "interrupted"):
progress lines where stderr is not a terminal, and ``train --checkpoint``'s notes."""

import re

PROGRESS = re.compile(r"^.+: (iteration|member iterations) \d+/\d+(, cost \d+\.\d{6})?, \d+\.\d s, [\d,]+ it/s"
                      r"( \(with compiling\))?$")
NOTES = ("jaxreg: checkpoint written at iteration ", "jaxreg: resumed from iteration ", "jaxreg: no checkpoint at ")


def is_report(line: str) -> bool:
    """A progress line or a checkpoint note."""
    return bool(PROGRESS.match(line)) or line.startswith(NOTES)


def verdicts(stderr: str) -> str:
    """``stderr`` without its progress lines and checkpoint notes."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not is_report(line.rstrip("\n")))
