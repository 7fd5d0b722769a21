import pytest

from trading import engine


@pytest.fixture(autouse=True)
def _fresh_caches():
    engine.forget_limits()
    yield
    engine.forget_limits()
