"""The click group of the CLI: commands named as ``"module:attr"`` targets, imported on first use,
so that `raybench --help` does not import every command's dependencies."""

from __future__ import annotations

import click

from raybench.registry import import_target


class LazyGroup(click.Group):
    """A click group whose commands are ``"module:attr"`` targets, imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx, name):
        if name in self.lazy:
            return import_target(self.lazy[name])
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and args[0] not in self.list_commands(ctx):
                import difflib

                close = difflib.get_close_matches(args[0], self.list_commands(ctx), n=3)
                if close:
                    raise click.UsageError(f"{exc.message} Did you mean: {', '.join(close)}?") from None
            raise
