"""The README's set-up commands: what CI runs, and how a stock Linux machine gets PyTorch's CPU build."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_blocks() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_ci_runs_exactly_the_readmes_test_command():
    main, tests = setup_blocks()[:2]
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [tests]


def test_both_commands_pin_torch_in_the_same_pip_call_as_vrfer():
    """torch==2.13.0 named beside the package: pip takes that version (and keeps one already installed)."""
    for cmd in setup_blocks()[:2]:
        first_pip = cmd.split(".venv/bin/pip install", 2)[1].split("&&")[0]
        assert "torch==2.13.0" in first_pip and ("-e ." in first_pip or "-e '.[test]'" in first_pip)


def test_a_stock_machine_is_told_to_install_the_cpu_build_first_from_pytorchs_index():
    *_, stock = setup_blocks()
    assert stock.startswith("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 ")
    assert stock.endswith("--index-url https://download.pytorch.org/whl/cpu")
    section = (REPO / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert "stock Linux machine" in section and "CUDA build" in section
