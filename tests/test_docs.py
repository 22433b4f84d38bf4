"""The README and docs/: size, working links, the documented commands, and project-only wording.

The README is user documentation (at most 12 KB); reference material lives in docs/. Every
relative link must lead to a file (and an anchor to a heading of it), the two commands the
README promises must be Makefile targets that CI runs, and no text of the project speaks of how
it was developed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lib.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS_DIR = REPO_ROOT / "docs"
README_MAX_BYTES = 12_000

# Words about the development process rather than about the toolkit (case-insensitive).
PROCESS_WORDS: tuple[str, ...] = (
    r"\bsessions?\b",
    r"\bissue notes?\b",
    r"\bwork periods?\b",
    r"\blent\b",
    r"\bhelper\b",
    r"\bthis commit\b",
)

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_TARGET = re.compile(r"^([A-Za-z0-9_.-]+)[ \t]*:(?!=)", re.MULTILINE)


def markdown_files() -> list[Path]:
    """README.md and every Markdown page of docs/."""
    return [README, *sorted(DOCS_DIR.glob("*.md"))]


def without_code(text: str) -> str:
    """``text`` with fenced code blocks and inline code spans removed (links there are examples)."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """Every heading anchor of the Markdown file ``path``."""
    return {heading_anchor(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))}


def relative_links(path: Path) -> list[str]:
    """The link targets of ``path`` that point inside the repository."""
    targets = _LINK.findall(without_code(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_docs_pages_exist() -> None:
    names = {p.name for p in DOCS_DIR.glob("*.md")}
    assert {"data.md", "cache.md", "vae.md", "classifiers.md", "study.md", "results.md"} <= names


def test_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move reference material to docs/"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor.lower() not in anchors_of(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_readme_links_every_docs_page() -> None:
    linked = {Path(t.partition("#")[0]).name for t in relative_links(README)}
    assert {p.name for p in DOCS_DIR.glob("*.md")} <= linked


def test_the_two_commands_are_makefile_targets_and_ci_runs_the_test_command() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "make study" in readme and "make test" in readme
    targets = set(_TARGET.findall((REPO_ROOT / "Makefile").read_text(encoding="utf-8")))
    assert {"study", "test"} <= targets
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci_lines


def prose_files() -> list[Path]:
    """README, docs pages, params files, lib/ sources (minus the excluded ones) and notebooks."""
    lib_files = sorted((REPO_ROOT / "lib").rglob("*.py"))
    return [*markdown_files(), *sorted((REPO_ROOT / "params").glob("*.yaml")), *lib_files,
            *sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))]


def prose_of(path: Path) -> str:
    """The text of ``path`` as a reader sees it; for a notebook, its cells' sources."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return text
    cells = json.loads(text)["cells"]
    return "\n".join("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                     for cell in cells)


def test_no_development_process_words() -> None:
    found = []
    for path in prose_files():
        for number, line in enumerate(prose_of(path).splitlines(), start=1):
            for pattern in PROCESS_WORDS:
                if re.search(pattern, line, re.IGNORECASE):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "development-process words: " + "; ".join(found)
