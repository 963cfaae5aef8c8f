"""The CLI starts fast and turns user errors into one clear line."""

import subprocess
import sys
import time

import pytest

from raybench.cli import COMMANDS


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "raybench", *args], capture_output=True, text=True, env=env)


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from raybench.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'ray', 'pyarrow', 'open_clip', 'timm', 'transformers', 'torchreid', 'faiss') if m in sys.modules]\n"
        "print('HEAVY', heavy, time.perf_counter() - t)"
    )
    best = min(_timed(code) for _ in range(2))
    assert best < 1.0, f"raybench --help took {best:.2f}s"


def _timed(code):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out
    return time.perf_counter() - start


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
