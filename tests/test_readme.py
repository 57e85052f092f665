"""The README: a short front page whose commands, links and course table are real.

Its quick start is exactly two commands, CI runs exactly its test command (after both ruff
checks and the layers check; then the course tier, then the wheel's demo outside the checkout),
every relative link resolves, and the pinned requirements satisfy the package's own lower bounds.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def quick_start_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README quick start has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def pinned_requirements() -> dict[str, str]:
    """``{name: version}`` of requirements.txt's ``name==version`` lines."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines]
    return dict(pin.split("==", 1) for pin in pins if "==" in pin)


def test_quick_start_is_two_commands_install_then_test() -> None:
    install, test = quick_start_commands()
    assert "pip install -r requirements.txt" in install
    assert "pytest" in test


def test_ci_lints_then_runs_exactly_the_readme_test_command_then_the_wheel_demo() -> None:
    _, test = quick_start_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test in ci_lines
    order = [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/lint-imports",
        test,
        f"{test} -m course",  # the tier the test command leaves out (pyproject's addopts)
        "bash .ci/wheel_demo.sh",
    ]
    assert all(line in ci_lines for line in order), order
    where = [ci_lines.index(line) for line in order]
    assert where == sorted(where), "CI must lint, then test, then build the wheel"
    assert (ROOT / ".ci/wheel_demo.sh").is_file()


def test_requirements_pin_torch_pair_and_install_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = pinned_requirements()
    assert "torch" in pins and "torchvision" in pins  # the pair, both pinned
    assert "`torch` and `torchvision` are pinned as a pair" in " ".join(README.read_text().split())
    assert lines[-1] == "-e ."
    unpinned = [line for line in lines[:-1] if "==" not in line]
    assert not unpinned, f"unpinned requirements: {unpinned}"


def test_pinned_versions_satisfy_the_package_lower_bounds() -> None:
    pins = pinned_requirements()
    block = re.search(
        r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M
    )
    dependencies = re.findall(r'"([^"]+)"', block.group(1))
    assert len(dependencies) >= 10
    for dependency in map(Requirement, dependencies):
        assert dependency.name in pins, f"{dependency.name} is not pinned in requirements.txt"
        assert dependency.specifier.contains(pins[dependency.name]), (dependency, pins)


def test_readme_is_a_short_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 120


def test_every_relative_link_resolves() -> None:
    documents = [README, ROOT / "docs" / "training.md", ROOT / "benchmarks" / "README.md"]
    for document in documents:
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
        local = [link for link in links if "://" not in link]
        missing = [link for link in local if not (document.parent / link).exists()]
        assert not missing, f"{document.relative_to(ROOT)}: broken links {missing}"
    readme_links = re.findall(r"\]\(([^)#\s]+)", README.read_text())
    for page in ("docs/training.md", "benchmarks/README.md", "docs/demo_similarity_matrix.png"):
        assert page in readme_links, f"README does not link {page}"


def test_course_table_names_modules_that_exist() -> None:
    rows = re.findall(r"^\|[^|\n]*\| `\d\d_\w+` \| (.*) \|$", README.read_text(), re.M)
    assert len(rows) >= 9
    for row in rows:
        for module in re.findall(r"`([^`]+)`", row):
            assert (ROOT / "simpleclip" / module).exists(), f"simpleclip/{module} does not exist"


def test_moved_sections_keep_their_facts() -> None:
    training = (ROOT / "docs" / "training.md").read_text()
    for fact in ("torchrun --standalone", "micro_batch_size", "image.weights=", "unfreeze_last"):
        assert fact in training, fact
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text()
    assert "31.5/63.0/74.4" in benchmarks and "| MPNet | frozen, linear head, one positive |" in (
        benchmarks
    )
