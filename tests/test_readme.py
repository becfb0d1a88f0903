"""README is short, its links resolve, and its demo block is what `make demo` prints (numbers and CPU masked)."""

from __future__ import annotations

import re

import pytest

from onebyone.runtime.core.cpu import this_cpu
from tests.readme_demo import README, REPO, masked, readme_block, readme_cpu

README_LIMIT = 12_000


def test_readme_is_short():
    assert len(README.read_text()) <= README_LIMIT


def test_every_relative_link_in_readme_and_docs_resolves():
    broken = []
    for page in [README, *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert broken == []


@pytest.mark.slow
def test_the_demo_block_is_what_make_demo_prints(demo):
    block = readme_block()
    printed = demo.printed
    cpu = this_cpu()
    described, cpu_class = readme_cpu(block)
    same_class = cpu.cpu_class == cpu_class
    expected = masked(block, described, cpu_class, same_class)
    assert masked(printed[-len(block):], cpu.describe(), cpu.cpu_class, same_class) == expected
