"""The closed loop's commands: ``rekindle feedback`` (what happened after each decision)."""

from __future__ import annotations

import click

from app.cli.root import Context, console, friendly_errors, parse_time


@click.command("feedback")
@click.option(
    "--as-of", "as_of", metavar="TIME", help="The platform's clock (default: one second after its latest row)."
)
@click.option("--skip-row-checks", is_flag=True, help="Read every platform row, without the validation's filters.")
@click.pass_obj
@friendly_errors
def feedback(obj: Context, as_of: str | None, skip_row_checks: bool) -> None:
    """Measure every logged decision whose attribution window has closed: sent or not, re-engaged,
    converted, deposits, reward cost and net value, one outcome row each in the system store. Running it
    again adds only what has closed since; a run after a crash finishes the crashed one's work."""
    from app.progress import RichProgress
    from monitoring.feedback import run_feedback

    cfg = obj.config()
    with RichProgress(console) as progress:
        run = run_feedback(cfg, parse_time(as_of, "--as-of"), row_checks=not skip_row_checks, progress=progress)
    console.print(
        f"platform clock {run.as_of:%Y-%m-%dT%H:%M:%S}: {run.measured:,} decisions measured"
        f" ({run.offers_not_sent:,} offers the platform has no send for), {run.waiting:,} waiting for their window"
    )
    if run.cells.empty:
        console.print("realised against predicted: no (segment, arm) cell has both offered and held-out rows yet")
        return
    shown = run.cells.sort_values("n_offered", ascending=False).head(20)
    console.print("\nrealised against predicted incremental net value per offer (KRW), largest cells:")
    console.print(shown.round({"predicted": 0, "realised": 0, "se": 0, "accuracy": 2}).to_string(index=False))
    reliable = int(run.cells["reliable"].sum())
    said = f"{run.accuracy:.2f}" if run.accuracy is not None else "n/a (no cell is reliable yet)"
    console.print(f"accuracy over the {reliable} reliable cells (s.e. under 10% of the value): {said}")
    if run.plot is not None:
        console.print(f"plot: {run.plot}")


COMMANDS = (feedback,)
