from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from cdr.cli.common import RichReporter


def test_reporter_tracks_progress_and_restarts_a_finished_task() -> None:
    with Progress(console=Console(file=io.StringIO())) as progress:
        report = RichReporter(progress)
        report("id user features", advance=2000, total=2000)
        [task] = progress.tasks
        assert task.completed == 2000 and task.finished
        report("id user features", advance=2000, total=2000)  # the other domain
        assert task.completed == 2000 and task.total == 2000
        report("epochs", advance=0, total=3)
        report("epochs", loss=0.5)
        report("epochs")
        assert progress.tasks[1].completed == 2
