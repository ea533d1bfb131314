"""`shipyard registry check [--fix]`: verify every version's bytes and clear what crashes left behind.

Local only: it reads the registry's files, so it may name their paths (servers never do).
"""

from __future__ import annotations

import typer

from shipyard.cli.common import console, get_state
from shipyard.cli.help import Group

app = typer.Typer(cls=Group, help="Look after the registry itself.", no_args_is_help=True)


@app.command("check")
def check(
    ctx: typer.Context,
    fix: bool = typer.Option(
        False, "--fix", help="Remove killed writers' temporary files and old blobs no version uses."
    ),
) -> None:
    """Verify every version's artifact (present, sha256 matching); list leftovers. Exit 1 on problems."""
    from shipyard.registry.check import check as run_check

    report = run_check(get_state(ctx).registry, fix=fix)
    for problem in report.problems:
        if problem.fixed:
            console.print(f"removed {problem.message}")
        elif problem.fixable and fix:
            console.print(f"{problem.message} (could not be removed)")
        else:
            console.print(problem.message)
    for line in report.skipped:
        console.print(line)
    fixed = sum(p.fixed for p in report.problems)
    left = len(report.problems) - fixed
    freed = sum(p.size for p in report.problems if p.fixed)
    summary = (
        f"checked {report.versions} versions ({report.artifacts} artifacts): "
        f"{len(report.problems)} problem{'' if len(report.problems) == 1 else 's'}"
    )
    if fixed:
        summary += f", {fixed} fixed ({freed:,} bytes freed)"
    if left and not fix and any(p.fixable for p in report.problems):
        summary += "; --fix removes the leftovers"
    if any(p.kind in {"missing", "corrupt", "unreadable"} for p in report.problems):
        summary += "; re-import or delete the versions named above"
    console.print(summary)
    if left:
        raise typer.Exit(1)
