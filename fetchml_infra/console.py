"""What the operator's commands share: printing, failing with an exit code, and the common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console(highlight=False, soft_wrap=True)

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="Stack name, e.g. staging or prod.")]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for another operator of this stack to finish (default: refuse)."),
]
LogOpt = Annotated[Path, typer.Option("--log", help="Path of the audit log.")]


def say(line: str) -> None:
    console.print(line, markup=False)


def fail(message: str, code: int) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)
    raise typer.Exit(code)
