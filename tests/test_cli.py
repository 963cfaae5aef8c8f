"""The CLI starts fast and turns user errors into one clear line."""

import subprocess
import sys

import pytest

from raybench.cli import COMMANDS


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True, env=env)


def test_help_imports_nothing_heavy():
    """`raybench --help` (and every listing) starts fast because it imports no heavy library:
    torch, Ray, pyarrow, faiss and the model families' libraries load where they are used."""
    from raybench.models import LOADERS, get_loader

    libraries = sorted({get_loader(n).library for n in LOADERS.names()} - {None})  # what the families build with
    code = (
        "import sys\n"
        "from raybench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {('torch', 'ray', 'pyarrow', 'faiss', *libraries)!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


def test_help_lists_every_command():
    out = run_cli("--help").stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    result = run_cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_unknown_command_suggests():
    result = run_cli("rnu")
    assert result.returncode == 2
    assert "Did you mean: run" in result.stderr


def test_list_matrices_json():
    import json

    result = run_cli("list", "matrices", "--json")
    assert result.returncode == 0, result.stderr
    names = [row["name"] for row in json.loads(result.stdout)]
    assert "smoke" in names


def test_run_table_keeps_fixed_decimals():
    """47.3 beside 45.42, or 100 beside 92.33, is harder to scan than 47.30 and 100.00."""
    from raybench.commands.run import _percent

    row = _percent([{"mAP": 0.473, "R1": 1.0, "R5": None, "mINP": 0.4542, "seconds": 9.648}])[0]
    assert (row["mAP"], row["R1"], row["R5"], row["mINP"], row["seconds"]) == ("47.30", "100.00", None, "45.42", "9.6")


def test_counts_agree_with_their_noun():
    from raybench.console import count

    assert [count(n, "cell") for n in (0, 1, 2, 1234)] == ["0 cells", "1 cell", "2 cells", "1,234 cells"]


def _summary(out, rows):
    from raybench.pipeline.driver import RunSummary

    base = {"status": "ok", "mAP": 0.5, "R1": 0.6, "R5": 0.7, "mINP": 0.2, "queries": 10,
            "seconds": 4.0, "stream_cells": 1, "skipped_images": [], "error": None}
    return RunSummary(out=out, rows=[{**base, **row} for row in rows], seconds=9.0)


def test_run_closing_lines_quote_the_report_hint_for_the_shell():
    import shlex

    from raybench.commands.run import closing_lines

    lines = closing_lines(_summary("runs/my run", [{"dataset": "a", "model": "m"}]))
    hint = lines[-1].split("(raybench report ", 1)[1].rstrip(")")
    assert hint == "'runs/my run'" and shlex.split(hint) == ["runs/my run"]
    plain = closing_lines(_summary("runs/smoke", [{"dataset": "a", "model": "m"}]))[-1]
    assert plain.endswith("(raybench report runs/smoke)")


def test_run_closing_lines_count_skipped_images_and_name_the_first():
    from raybench.commands.run import closing_lines

    paths = [f"/d/q/{i:04d}_c1s1.jpg" for i in range(4)]
    lines = closing_lines(_summary("runs/x", [
        {"dataset": "a", "model": "m", "skipped_images": paths},
        {"dataset": "b", "model": "m"},
    ]))
    assert lines[0] == "4 images could not be read and were skipped (on_bad_image: skip):"
    assert lines[1] == "  a x m: 4 skipped image(s): /d/q/0000_c1s1.jpg, /d/q/0001_c1s1.jpg, /d/q/0002_c1s1.jpg and 1 more"
    assert lines[-1].startswith("2 cells: 2 ok, 1 with skipped images, 0 failed")


def test_run_table_marks_seconds_shared_by_one_stream():
    """Two cells embedded in one stream are charged their share of it: the table says so."""
    from raybench.commands.run import _percent, closing_lines

    rows = [{"dataset": "a", "model": "m", "stream_cells": 2}, {"dataset": "b", "model": "m", "stream_cells": 2},
            {"dataset": "a", "model": "n", "stream_cells": 1}]
    assert [r["seconds"] for r in _percent(_summary("o", rows).rows)] == ["4.0*", "4.0*", "4.0"]
    assert closing_lines(_summary("o", rows))[0].startswith("* embedded in one stream with other datasets")
    assert not closing_lines(_summary("o", rows[2:]))[0].startswith("*")


@pytest.mark.parametrize("name", ["run", "report"])
def test_run_and_report_help_name_the_matrix_features_and_where_they_are_documented(name):
    """Fusions, eval variants, weight interpolation, trained models and caption datasets are
    matrix features a user finds only if the help says they exist, and where to read about them."""
    from click.testing import CliRunner

    from raybench.cli import cli

    text = " ".join(CliRunner().invoke(cli, [name, "--help"]).output.split())
    for feature in ("fusions:", "eval_variants:", "loader: interpolate", "trained:<run>", "caption datasets"):
        assert feature in text, feature
    for section in ("Hybrids: fusions and weight interpolations", "Eval variants", "Weight interpolation (WiSE-FT)",
                    "Training the supervised side", "Text queries in the matrix"):
        assert f'"{section}' in text, section
    assert "README" in text
