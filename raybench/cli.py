"""The `raybench` command line: a thin click group.

Sub-commands live in raybench/commands/ and are imported only when invoked (or when
`--help` lists them), and none of them imports torch or ray at module level, so the CLI
starts fast. Each command parses options, calls the library and prints.
"""

from __future__ import annotations

import sys

import click

from raybench.commands.lazy import LazyGroup
from raybench.errors import RaybenchError

COMMANDS = {
    "run": "raybench.commands.run:run",
    "rehearse": "raybench.commands.rehearse:rehearse",
    "report": "raybench.commands.report:report",
    "list": "raybench.commands.listing:list_group",
    "datasets": "raybench.commands.datasets:datasets",
    "models": "raybench.commands.models:models",
    "bench": "raybench.commands.bench:bench",
    "train": "raybench.commands.train:train",
    "submit": "raybench.commands.jobs:submit",
    "status": "raybench.commands.jobs:status",
    "logs": "raybench.commands.jobs:logs",
    "stop": "raybench.commands.jobs:stop",
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="raybench")
@click.option("-v", "--verbose", is_flag=True,
              help="Show Ray's own lines too (notices, warnings, worker output, native logs).")
@click.option("-q", "--quiet", is_flag=True, help="Warnings, errors and results only.")
def cli(verbose: bool, quiet: bool):
    """raybench: evaluate person re-identification models across datasets, as one
    model x dataset matrix on Ray.

    \b
    Quick start (no downloads, CPU is fine):
      raybench run --matrix smoke          # synthetic data x weight-free models
      raybench report runs/smoke           # tables, heatmaps, rank lists
    \b
    Your data: point $RAYBENCH_DATA at the folder holding your dataset copies, then
      raybench datasets check              # which datasets are present and complete
      raybench run --matrix paper          # the study's 11 models x 9 datasets
    \b
    By default the console shows raybench's own lines; Ray's stay in its session log folder.
    -v shows them here too: raybench -v run ...
    """
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    from raybench.console import configure_logging

    configure_logging(verbose=verbose, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear line and exit non-zero, without a traceback."""
    try:
        rc = cli.main(args=argv, prog_name="raybench", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RaybenchError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
