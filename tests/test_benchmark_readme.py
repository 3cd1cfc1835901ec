"""``benchmarks/README.md`` and the README's headline table are generated from the committed results."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
make_readme = importlib.import_module("make_readme")


@pytest.fixture(scope="module")
def generated() -> tuple[dict[Path, str], object]:
    results = make_readme.Results()
    return make_readme.expected(results), results


def test_the_pages_regenerate_byte_identical(generated):
    for path, text in generated[0].items():
        assert path.read_text() == text, f"{path} is stale: run python benchmarks/make_readme.py"


def test_every_result_file_is_cited_by_a_section(generated):
    results = generated[1]
    uncited = [name for name in results.names() if not results.readers.get(name)]
    assert uncited == []


def test_no_section_types_a_measured_number():
    """Every decimal number on the page comes from the JSON: no section's text holds one."""
    for module in sorted((BENCHMARKS / "report").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.search(r"\d+\.\d+", node.value), f"{module.name}: {node.value!r}"
