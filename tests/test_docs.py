"""The documentation runs: every ```python block of README.md and docs/*.md is
executed, and the site builds with ``mkdocs build --strict``.

Blocks of one page run in order in one namespace, as a reader would type them.
A ```text block directly after a ```python block (only blank lines between)
is that block's output and must match what it prints. A block preceded by
``<!-- skip: why -->`` is not run (only where it truly
cannot run here, e.g. it needs a GPU); there may be only a handful. Every
fenced block must name its language, so a Python example cannot hide in an
unmarked block.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from typing import NamedTuple

import pytest

import kiln.core as mx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
# Languages of blocks that are shown, not run (shell commands, program output).
SHOWN = {"bash", "console", "text", "toml", "yaml"}
MAX_SKIPS = 5

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                    re.M | re.S)
_SKIP = re.compile(r"<!--\s*skip:\s*(?P<why>[^>]+?)\s*-->\s*$")


class Block(NamedTuple):
    line: int           # line of the opening fence
    lang: str           # the info string's language ("" when none)
    code: str           # the body, de-indented
    skip: str | None    # the reason of a ``<!-- skip: ... -->`` line just above, if any
    adjacent: bool      # only blank lines separate it from the block before


def blocks(path: str) -> list:
    """The fenced blocks of a Markdown file, in order, as :class:`Block` tuples."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    out = []
    end = None
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        indent = len(m.group("indent"))
        code = "\n".join(ln[indent:] for ln in m.group("body").split("\n"))
        adjacent = end is not None and not text[end:m.start()].strip()
        out.append(Block(line, m.group("lang"), code, skip.group("why") if skip else None, adjacent))
        end = m.end()
    return out


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def same_output(printed: str, shown: str) -> bool:
    """Whether a block's output matches the output shown in the page.

    The text outside numbers must be equal (trailing spaces aside); numbers may
    differ in the last printed digits (1e-4 relative), since float32 libm results
    vary by an ulp between CPUs.
    """
    a = [ln.rstrip() for ln in printed.strip("\n").split("\n")]
    b = [ln.rstrip() for ln in shown.strip("\n").split("\n")]
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if _NUMBER.sub("#", x) != _NUMBER.sub("#", y):
            return False
        for u, v in zip(_NUMBER.findall(x), _NUMBER.findall(y)):
            if u != v and abs(float(u) - float(v)) > 1e-4 * max(abs(float(u)), abs(float(v))) + 1e-6:
                return False
    return True


@pytest.fixture
def clean_state(tmp_path, monkeypatch):
    # Pages may write files and change global settings; give each a scratch
    # folder and put the settings back afterwards.
    # The outputs shown in the pages are the CPU's (a GPU's last digits may differ).
    monkeypatch.chdir(tmp_path)
    device = mx.default_device()
    mx.set_default_device(mx.cpu)
    mx.random.seed(0)
    yield
    mx.enable_compile()
    mx.set_default_device(device)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, clean_state, capsys):
    namespace = {"__name__": f"docs_{os.path.basename(page)[:-3]}"}
    page_blocks = blocks(page)
    for i, b in enumerate(page_blocks):
        assert b.lang, f"{page}:{b.line}: a fenced block must name its language (python, bash, text, ...)"
        if b.lang != "python":
            assert b.lang in SHOWN, f"{page}:{b.line}: unknown block language {b.lang!r}"
            continue
        if b.skip is not None:
            continue
        capsys.readouterr()
        exec(compile(b.code, f"{page}:{b.line}", "exec"), namespace)  # noqa: S102 - the docs are the test
        printed = capsys.readouterr().out
        # A ```text block right after a python block shows its output: it must be what it prints.
        nxt = page_blocks[i + 1] if i + 1 < len(page_blocks) else None
        if nxt is not None and nxt.lang == "text" and nxt.adjacent:
            assert same_output(printed, nxt.code), (
                f"{page}:{nxt.line}: the output shown differs from what the block at line {b.line} "
                f"prints:\n{printed}")


def test_same_output():
    assert same_output("array([0.909297, -0.756802], dtype=float32)\n",
                       "array([0.909298, -0.756802], dtype=float32)")
    assert not same_output("array([0.9093, -0.75], dtype=float32)", "array([0.9093, -0.76], dtype=float32)")
    assert not same_output("kiln.core.float32", "kiln.core.float16")
    assert not same_output("1\n2", "1")


def test_output_blocks_are_checked():
    # The convention above is in use (so a broken matcher would fail here).
    shown = [(p, b.line) for p in PAGES for a, b in zip(blocks(p), blocks(p)[1:])
             if a.lang == "python" and b.lang == "text" and b.adjacent]
    assert len(shown) >= 10, shown


def test_skips_are_few_and_say_why():
    skipped = [(p, b.line, b.skip) for p in PAGES for b in blocks(p) if b.skip is not None]
    assert len(skipped) <= MAX_SKIPS, skipped
    assert all(len(why) > 5 for _, _, why in skipped), skipped


def test_guide_has_examples():
    # The guide pages teach by example; the generated benchmark tables and the
    # architecture notes for contributors do not need to.
    no_examples = {"docs/benchmarks.md", "docs/benchmarks-gpu.md", "docs/architecture.md"}
    for page in PAGES:
        if page not in no_examples:
            assert any(b.lang == "python" for b in blocks(page)), f"{page} has no python example"


def _nav_pages(text: str) -> set:
    return set(re.findall(r":\s*([\w-]+\.md)\s*$", text, re.M))


def test_every_page_is_in_the_nav():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        nav = _nav_pages(f.read())
    pages = {os.path.basename(p) for p in PAGES if p.startswith("docs")}
    assert pages == nav


def test_site_builds_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                        "-f", os.path.join(ROOT, "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "transforms" / "index.html").exists()
