from tests.fixtures.fakeengine import fake_engines  # noqa: F401  (shared fixture)
