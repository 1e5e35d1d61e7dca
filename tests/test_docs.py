"""The documentation runs: every ```python block of README.md and docs/*.md is
executed, and the site builds with ``mkdocs build --strict``.

Blocks of one page run in order in one namespace, as a reader would type them.
A block preceded by ``<!-- skip: why -->`` is not run (only where it truly
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


def blocks(path: str) -> list:
    """The fenced blocks of a Markdown file.

    Returns:
        ``(line, lang, code, skip_reason)`` tuples in order; ``skip_reason`` is None
        unless the line before the fence is a ``<!-- skip: ... -->`` comment.
    """
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        indent = len(m.group("indent"))
        code = "\n".join(ln[indent:] for ln in m.group("body").split("\n"))
        out.append((line, m.group("lang"), code, skip.group("why") if skip else None))
    return out


@pytest.fixture
def clean_state(tmp_path, monkeypatch):
    # Pages may write files and change global settings; give each a scratch
    # folder and put the settings back afterwards.
    monkeypatch.chdir(tmp_path)
    device = mx.default_device()
    mx.random.seed(0)
    yield
    mx.enable_compile()
    mx.set_default_device(device)


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, clean_state, capsys):
    namespace = {"__name__": f"docs_{os.path.basename(page)[:-3]}"}
    for line, lang, code, skip in blocks(page):
        assert lang, f"{page}:{line}: a fenced block must name its language (python, bash, text, ...)"
        if lang != "python":
            assert lang in SHOWN, f"{page}:{line}: unknown block language {lang!r}"
            continue
        if skip is not None:
            continue
        exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102 - the docs are the test
    capsys.readouterr()


def test_skips_are_few_and_say_why():
    skipped = [(p, line, why) for p in PAGES for line, lang, _, why in blocks(p) if why is not None]
    assert len(skipped) <= MAX_SKIPS, skipped
    assert all(len(why) > 5 for _, _, why in skipped), skipped


def test_guide_has_examples():
    # The guide pages teach by example; the generated benchmark tables and the
    # architecture notes for contributors do not need to.
    no_examples = {"docs/benchmarks.md", "docs/benchmarks-gpu.md", "docs/architecture.md"}
    for page in PAGES:
        if page not in no_examples:
            assert any(lang == "python" for _, lang, _, _ in blocks(page)), f"{page} has no python example"


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
