"""The system CA certificates load when the first TLS connection needs them: a registry
spoken to in plain HTTP never pays for them, one spoken to in TLS is verified as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import TLSVerificationError
from mpkit.registry import open_client
from mpkit.registry.tls import SystemTrustContext, default_context
from mpkit.registry.transport import ClientOptions
from tests.fixtures.registry import RegistryServer

NO_CERTS_D = ClientOptions(certs_d=())  # only the system trust, as without certs.d


@pytest.fixture
def fresh_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SystemTrustContext:
    """A context of this test's own (the shared one is keyed by SSL_CERT_FILE)."""
    bundle = tmp_path / "system-bundle.crt"
    bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return default_context()


def test_a_plain_http_registry_never_loads_the_system_certificates(
    registry_open: RegistryServer, fresh_trust: SystemTrustContext
) -> None:
    with open_client(registry_open.host, options=NO_CERTS_D, anonymous=True) as client:
        assert client.head_manifest("library/nothing", "latest") is None
    assert not fresh_trust.cert_store_stats()["x509_ca"]


def test_a_tls_registry_is_verified_against_the_system_certificates(
    registry_tls: RegistryServer,
    fresh_trust: SystemTrustContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (
        open_client(registry_tls.host, options=NO_CERTS_D, anonymous=True) as client,
        pytest.raises(TLSVerificationError),
    ):
        client.head_manifest("library/nothing", "latest")  # an empty system bundle

    assert registry_tls.ca_path is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(registry_tls.ca_path))
    trust = default_context()
    with open_client(registry_tls.host, options=NO_CERTS_D, anonymous=True) as client:
        assert client.head_manifest("library/nothing", "latest") is None
    assert trust.cert_store_stats()["x509_ca"] == 1
