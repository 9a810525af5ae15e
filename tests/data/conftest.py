from __future__ import annotations

from pathlib import Path

import pytest

from cdr.data.records import CrossDomainDataset
from cdr.data.synthetic import SyntheticConfig, generate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def tiny_synthetic() -> CrossDomainDataset:
    """The tiny synthetic preset without images (milliseconds to generate)."""
    return generate(SyntheticConfig(size="tiny", images=False))[0]
