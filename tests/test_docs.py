"""The documentation's examples must not rot.

How the examples in docs/*.md are checked:

* Python examples are ``{doctest}`` blocks, run by ``sphinx-build -b doctest`` (docs/build.sh).
  Here: no page may hold a plain Python block that nothing runs; the only exception is a block
  whose first line is ``# not run: <why>`` (a cluster we do not have), which must still compile.
* ``console`` blocks are run here, command by command (``$ `` lines), in a fresh folder per
  page, and their output is compared with what the page shows (``...`` matches anything).
* ``bash`` blocks are shown, not run (installs, cluster commands); every ``cumbatch`` command in
  them must parse with the real argument parser, and every ``pip install`` extra must exist.
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP = {"api-contract.md", "_perf_table.md"}  # contributor notes; the measured table
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name not in SKIP)
PYTHON_LANGS = {"python", "py", "python3", "pycon", "ipython", "ipython3"}
SHELL_RUN = {"console"}
SHELL_SHOW = {"bash", "sh", "shell"}
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,}|~{3,})(?P<info>[^`]*)$")


def blocks(path: Path):
    """``(info, first line number, lines)`` of every fenced block of a Markdown page."""
    out = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        ticks, info = m.group("ticks"), m.group("info").strip()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^ *{re.escape(ticks[0])}{{{len(ticks)},}} *$", lines[j]):
            body.append(lines[j])
            j += 1
        out.append((info, i + 1, body))
        i = j + 1
    return out


def _lang(info: str) -> str:
    return info.split()[0].lower() if info else ""


def _ids(pages):
    return [p.name for p in pages]


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_no_unchecked_python(page):
    """Python examples are {doctest} blocks; a plain block must say why it is not run, and compile."""
    for info, line, body in blocks(page):
        lang = _lang(info)
        if lang.startswith("{"):
            continue
        if lang in PYTHON_LANGS:
            first = body[0].strip() if body else ""
            assert first.startswith("# not run:") and len(first) > len("# not run:") + 3, (
                f"{page.name}:{line}: a Python block that nothing runs; make it a ```{{doctest}} "
                "block, or start it with '# not run: <why>'"
            )
            compile("\n".join(body), f"{page.name}:{line}", "exec")


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_doctest_blocks_parse(page):
    parser = doctest.DocTestParser()
    for info, line, body in blocks(page):
        if info.startswith("{doctest}"):
            examples = parser.get_examples("\n".join(body))
            assert examples, f"{page.name}:{line}: an empty doctest block"


def _cumbatch_argv(words):
    """The arguments after ``cumbatch``/``python -m dask_cumbatch``, or None for other commands."""
    if words[:1] == ["cumbatch"]:
        return words[1:]
    if words[:3] in (["python", "-m", "dask_cumbatch"], ["python3", "-m", "dask_cumbatch"]):
        return words[3:]
    return None


def _commands(text: str):
    """Split a shell line into commands on ``&&`` (and drop ``&`` and comments)."""
    words = shlex.split(text, comments=True)
    cmd = []
    for w in words:
        if w in ("&&", ";", "&"):
            if cmd:
                yield cmd
            cmd = []
        else:
            cmd.append(w)
    if cmd:
        yield cmd


def _extras():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return None
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"].get("optional-dependencies", {}))


def _check_pip(words, where):
    extras = _extras()
    for w in words:
        m = re.match(r"^\.?\[([^\]]+)\]$", w.replace('"', ""))
        if m and extras is not None:
            for extra in m.group(1).split(","):
                assert extra.strip() in extras, f"{where}: extra [{extra}] is not in pyproject.toml"


def _parser():
    from dask_cumbatch.cli import build_parser

    return build_parser()


def _joined(body):
    """Lines with backslash continuations joined."""
    out, cur = [], ""
    for line in body:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return out


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_shell_commands_parse(page):
    """Every cumbatch command shown (run or not) parses; every pip extra exists."""
    for info, line, body in blocks(page):
        lang = _lang(info)
        if lang not in SHELL_RUN | SHELL_SHOW:
            continue
        texts = [t[2:] for t in _joined(body) if t.startswith("$ ")] if lang in SHELL_RUN else _joined(body)
        for text in texts:
            for words in _commands(text):
                where = f"{page.name}:{line}: {' '.join(words)}"
                if words[:2] == ["pip", "install"]:
                    _check_pip(words, where)
                argv = _cumbatch_argv(words)
                if argv is not None:
                    try:
                        _parser().parse_args(argv)
                    except SystemExit as exc:  # argparse reports and exits
                        pytest.fail(f"{where}: does not parse (exit {exc.code})")


CONSOLE_PAGES = [p for p in PAGES if any(_lang(i) in SHELL_RUN for i, _, _ in blocks(p))]


def _sessions(page):
    """``(line, command, expected output)`` of every ``$`` command in the page's console blocks."""
    out = []
    for info, line, body in blocks(page):
        if _lang(info) not in SHELL_RUN:
            continue
        continued = False
        for k, text in enumerate(body):
            if continued:  # a command continued with a backslash
                out[-1][1] = out[-1][1][:-1] + " " + text.strip()
            elif text.startswith("$ "):
                out.append([line + 1 + k, text[2:], []])
            elif out:
                out[-1][2].append(text)
            continued = bool(out) and out[-1][1].endswith("\\") and not out[-1][2]
    return out


@pytest.mark.parametrize("page", CONSOLE_PAGES, ids=_ids(CONSOLE_PAGES))
def test_console_examples_run(page, tmp_path):
    """Run each page's console commands in order in a fresh folder and compare the output."""
    env = dict(os.environ, TMPDIR=str(tmp_path), CUMBATCH_WARNINGS="", MPLBACKEND="Agg")
    env.pop("CUMBATCH_DEBUG", None)
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    work = tmp_path / "work"
    work.mkdir()
    for line, text, expected in _sessions(page):
        output = []
        for words in _commands(text):
            if words[:2] == ["pip", "install"] or words[:1] == ["pytest"]:
                continue  # installing and the test suite itself are not examples to run here
            argv = _cumbatch_argv(words)
            if argv is not None:
                cmd = [sys.executable, "-m", "dask_cumbatch", *argv]
            elif words[:1] in (["python"], ["python3"]):
                cmd = [sys.executable, *words[1:]]
            else:
                cmd = words
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (
                f"{page.name}:{line}: `{text}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
            output.append(proc.stdout)
        want = "\n".join(expected).strip() + "\n" if expected else ""
        got = "".join(output).strip() + "\n" if "".join(output).strip() else ""
        if want:
            assert checker.check_output(want, got, flags), (
                f"{page.name}:{line}: `{text}` printed\n{got}\nbut the page shows\n{want}"
            )
