"""The documentation: generated tables match their JSON, README stays short, pages exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from mentor.registry import model_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _render():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render():  # type: ignore[no-untyped-def]
    return _render()


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_every_table_matches_its_json(render) -> None:  # type: ignore[no-untyped-def]
    """The drift test: every region between ``<!-- table:NAME -->`` and ``<!-- /table -->`` is
    what ``python benchmarks/render.py`` produces from benchmarks/results/*.json now."""
    stale = render.check()
    hint = "tables differ from their JSON; run python benchmarks/render.py:\n"
    assert not stale, hint + "\n".join(stale)


def test_every_region_names_a_renderer(render) -> None:  # type: ignore[no-untyped-def]
    opened = closed = 0
    for page in _pages():
        text = page.read_text()
        opened += text.count("<!-- table:")
        closed += text.count("<!-- /table -->")
        for match in render.REGION.finditer(text):
            assert match["name"] in render.RENDERERS, f"{page.name}: {match['name']}"
    assert opened == closed and opened > 0


def test_results_tables_carry_their_source(render) -> None:  # type: ignore[no-untyped-def]
    """A region that reads a result file ends with the file, its version, date and machine."""
    for page in _pages():
        for match in render.REGION.finditer(page.read_text()):
            body = match["body"]
            if "benchmarks/results/" not in body:
                continue
            for line in re.findall(r"`benchmarks/results/[^`]+\.json`: [^\n]*", body):
                assert "mentor " in line and re.search(r"\d{4}-\d{2}-\d{2}", line), line


def test_readme_is_short_and_gives_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    assert "bash scripts/test.sh" in text and "bash scripts/main.sh" in text


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


NARRATIVE = [
    r"\bthis session\b",
    r"\b(first|second|third|fourth|fifth|sixth|seventh) sessions?\b",
    r"\bsessions'",
    r"\bearlier we\b",
    r"\ba first run\b",
    r"\bnow pads\b",
    r"\bwas rerun\b",
]


def test_no_work_history_narrative() -> None:
    """README and the documentation describe the software as it is, not how it was built."""
    for page in _pages():
        text = page.read_text()
        for pattern in NARRATIVE:
            found = re.search(pattern, text, re.IGNORECASE)
            assert not found, f"{page.relative_to(ROOT)}: '{found[0]}'"


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_a_page(name: str) -> None:
    page = DOCS / "models" / f"{name}.md"
    assert page.is_file(), f"docs/models/{name}.md is missing (see docs/adding-a-model.md)"
    text = page.read_text()
    assert f"<!-- table:model-settings:{name} -->" in text
    assert f"<!-- table:model-results:{name} -->" in text
    assert f"models/{name}.md" in (ROOT / "mkdocs.yml").read_text()


def test_changelog_page_includes_the_one_changelog() -> None:
    assert '--8<-- "CHANGELOG.md"' in (DOCS / "changelog.md").read_text()
