"""mpkit: build, push and verify containerized management packs without a Docker daemon."""

__version__ = "0.1.0"
