import pytest


@pytest.fixture
def index(redis):  # noqa: ANN001, ANN201
    """The live geo index on the test Redis."""
    from matching import service as engine

    return engine.geo_index(redis)
