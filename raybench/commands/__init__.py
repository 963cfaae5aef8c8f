"""CLI sub-commands, one module per area, imported lazily: raybench.cli names them as
``"module:attr"`` targets of a LazyGroup (lazy.py), as the command groups here name theirs."""
