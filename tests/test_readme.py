"""The README and docs/ stay true to the code.

- "Where the code lives" names every module under raybench/ (``__init__.py`` aside), each in
  the row of its package (or in a row of its own), and names no module that does not exist.
- Every relative link of the README, of docs/ and of the other guides points at a file that
  exists, and at a heading of it where the link names one; every docs/ page is linked from the
  README.
- Every `raybench ...` line in a code block of the README and of docs/ parses with the CLI as
  written: the command path resolves and its options and arguments pass click's parsing and
  type checks (``make_context``; nothing is run). A `--matrix` or a training config it names
  exists.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
#: Every Markdown guide whose links are checked.
GUIDES = [README, *DOCS, ROOT / "cluster" / "README.md", ROOT / "results" / "README.md"]
#: Pages that branches under way add (clothes-changing ReID, video ReID, galleries beyond one
#: machine): the README links them ahead of their arrival. The integrator removes each entry
#: when its branch lands, so that from then on its link is checked like any other.
PLANNED: set[str] = set()

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def without_code(text: str) -> str:
    """The Markdown outside fenced code blocks (a `# comment` in a block is no heading)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", without_code(path.read_text()), re.M)}


# --- "Where the code lives" ----------------------------------------------------------------------


def code_rows(text: str) -> dict[str, set[str]]:
    """The table under "### Where the code lives": each location its first cell names
    (`raybench/eval/`, `raybench/cli.py`) -> the .py files the rest of its row names."""
    section = text.split("### Where the code lives", 1)[1]
    section = re.split(r"^#{1,3} ", section, flags=re.M)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| `raybench/"):
            continue
        cells = re.split(r"(?<!\\)\|", line)  # `a\|b` inside a cell is no cell border
        named = set(re.findall(r"`([\w/]+\.py)`", "|".join(cells[2:])))
        for location in re.findall(r"`(raybench/[\w/.]*)`", cells[1]):
            rows[location] = named
    return rows


def modules() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "raybench").rglob("*.py")
                  if p.name != "__init__.py")


def is_named(module: str, rows: dict[str, set[str]]) -> bool:
    """A module is named by a row of its own, or by the row of a package above it
    (raybench/eval/rank.py: `rank.py` in the row of `raybench/eval/`)."""
    if module in rows:
        return True
    parts = module.split("/")
    return any("/".join(parts[i:]) in rows.get("/".join(parts[:i]) + "/", ()) for i in range(2, len(parts)))


def test_where_the_code_lives_names_every_module():
    rows = code_rows(README.read_text())
    missing = [m for m in modules() if not is_named(m, rows)]
    assert not missing, f"README's 'Where the code lives' does not name: {', '.join(missing)}"


def test_where_the_code_lives_names_only_modules_that_exist():
    rows = code_rows(README.read_text())
    assert "raybench/eval/" in rows and "rank.py" in rows["raybench/eval/"], sorted(rows)
    stale = [location for location in rows if not (ROOT / location).exists()]
    stale += [f"{location}{name}" for location, names in rows.items() if location.endswith("/")
              for name in names if not (ROOT / location / name).is_file()]
    assert not stale, f"README's 'Where the code lives' names what does not exist: {', '.join(stale)}"


def test_the_module_check_finds_a_module_left_out(tmp_path):
    """The check above on a table without `rank.py`: it is reported, its neighbours are not."""
    text = README.read_text().replace("`rank.py` (", "(")
    rows = code_rows(text)
    assert not is_named("raybench/eval/rank.py", rows)
    assert is_named("raybench/eval/qe.py", rows) and is_named("raybench/cli.py", rows)


# --- links -----------------------------------------------------------------------------------------


def links(path: Path) -> list[tuple[str, str]]:
    """(target file relative to the project, anchor) of each relative link of a guide."""
    found = []
    for target in LINK.findall(without_code(path.read_text())):
        if re.match(r"^[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        found.append((resolved.relative_to(ROOT).as_posix(), anchor))
    return found


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_at_files_and_headings_that_exist(guide):
    broken = []
    for target, anchor in links(guide):
        if target in PLANNED:
            continue
        path = ROOT / target
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}#{anchor} (no such heading)")
    assert not broken, f"{guide.relative_to(ROOT)} links to: {', '.join(broken)}"


def test_the_readme_links_every_docs_page():
    linked = {target for target, _ in links(README)}
    unlinked = [p.relative_to(ROOT).as_posix() for p in DOCS if p.relative_to(ROOT).as_posix() not in linked]
    assert not unlinked, f"README links none of: {', '.join(unlinked)}"
    assert PLANNED <= linked  # the placeholders of "Beyond the study's matrix"


# --- commands --------------------------------------------------------------------------------------

#: Where a shell line's command ends.
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "2>&1"}


def commands(path: Path) -> list[list[str]]:
    """The arguments of every `raybench ...` (or .venv/bin/raybench, python -m raybench) line
    in a shell code block of ``path``."""
    found = []
    for language, block in FENCE.findall(path.read_text()):
        if language not in ("", "bash", "sh", "console"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            if not re.search(r"(^|\s)(\S*/)?raybench\s", line):  # output lines, other commands
                continue
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):
                if word == "raybench" and words[i - 1:i] == ["-m"] or word.split("/")[-1] == "raybench" \
                        and (i == 0 or words[i - 1] in SHELL_OPERATORS):
                    rest = words[i + 1:]
                    end = next((j for j, w in enumerate(rest) if w in SHELL_OPERATORS), len(rest))
                    found.append(rest[:end])
    return found


def parse(args: list[str]) -> click.Context:
    """The leaf command's context for ``args``, parsed as `raybench` parses them (groups resolve
    their sub-command; the leaf parses and converts its options and arguments), invoking
    nothing."""
    from raybench.cli import cli

    group, name, parent = cli, "raybench", None
    while True:
        i = 0  # the group's own options come before its sub-command's name
        while i < len(args) and args[i].startswith("-"):
            param = next((p for p in group.params if args[i].split("=")[0] in (*p.opts, *p.secondary_opts)), None)
            if param is None:
                raise click.NoSuchOption(args[i])
            i += 1 if "=" in args[i] or getattr(param, "is_flag", False) else 2
        ctx = group.make_context(name, args[:i + 1], parent=parent)
        sub, command, rest = group.resolve_command(ctx, args[i:])
        if not isinstance(command, click.Group):
            return command.make_context(sub, rest, parent=ctx)
        group, name, parent, args = command, sub, ctx, rest


def option(args: list[str], name: str) -> str | None:
    for i, word in enumerate(args):
        if word == name and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


GUIDE_COMMANDS = [(p, args) for p in (README, *DOCS) for args in commands(p)]


def test_the_readme_has_its_commands():
    """The command lines are found at all (the README's data section, first)."""
    found = commands(README)
    assert ["datasets", "check"] in found and ["run", "--matrix", "paper", "--out", "runs/paper"] in found, found


@pytest.mark.parametrize("path,args", GUIDE_COMMANDS,
                         ids=[f"{p.relative_to(ROOT)}: {' '.join(a)}" for p, a in GUIDE_COMMANDS])
def test_guide_commands_parse(path, args):
    ctx = parse(args)
    matrix = option(args, "--matrix")
    if matrix is not None and "/" not in matrix:
        assert (ROOT / "configs" / "matrices" / f"{matrix}.yaml").exists(), f"no matrix {matrix!r}"
    if ctx.command.name == "train":
        assert (ROOT / "configs" / "train" / f"{ctx.params['config']}.yaml").exists(), ctx.params


@pytest.mark.parametrize("args,error,says", [
    (["run", "--matrix"], click.BadOptionUsage, "requires an argument"),  # an option without its value
    (["report", "runs/x", "--format", "xml"], click.BadParameter, "'xml' is not one of"),  # a value of a wrong type
    (["report", "runs/x", "--no-such-option"], click.NoSuchOption, "--no-such-option"),
    (["datasets", "chek"], click.UsageError, "No such command 'chek'"),  # a sub-command that does not exist
    (["logs"], click.MissingParameter, "job_id"),  # a required argument left out
])
def test_the_parse_check_refuses_a_wrong_command(args, error, says):
    with pytest.raises(error) as raised:
        parse(args)
    assert says in str(raised.value), raised.value
