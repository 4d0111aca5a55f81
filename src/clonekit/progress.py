"""Progress bars (rich) that stay quiet when asked to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; shows a rich bar on stderr when ``enabled``.

    Extra fields (e.g. ``loss=0.12``) are shown after the bar. When an error ends the work, the bar is taken
    away first, so the error is the last thing on the terminal (the CLI's one ``error:`` line).
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: float) -> None:
            if fields:
                progress.update(task, advance=n, info=" ".join(f"{k}={v:.4g}" for k, v in fields.items()))
            else:
                progress.update(task, advance=n)

        try:
            yield advance
        except BaseException:
            progress.remove_task(task)
            raise
