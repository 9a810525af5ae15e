from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from cdr.data.records import CrossDomainDataset
from cdr.data.synthetic import SyntheticConfig, generate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def tiny_synthetic() -> CrossDomainDataset:
    """The tiny synthetic preset without images (milliseconds to generate)."""
    return generate(SyntheticConfig(size="tiny", images=False))[0]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Cases tried per input kind by test_bad_inputs.py (when it ran)."""
    for module in list(sys.modules.values()):
        summary = getattr(module, "bad_input_summary", None)
        if Path(getattr(module, "__file__", None) or "").name == "test_bad_inputs.py" and summary:
            lines = summary()
            if lines:
                terminalreporter.section("bad-input cases per input kind")
                for line in lines:
                    terminalreporter.write_line(line)
