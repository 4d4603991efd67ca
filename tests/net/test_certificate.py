"""The engine's TLS certificate: made once into the data dir, reused on restart, fingerprinted, loaded."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from engine.net.certificate import (
    CertificateError,
    CertificateFiles,
    default_certificate,
    fingerprint,
    server_context,
)

NOW = 1_796_601_600.0  # 2026-12-07 00:00 UTC


def test_the_default_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    files, made = default_certificate(tmp_path, ("127.0.0.1", "pbx.example"), NOW)
    assert made
    cert_bytes, key_bytes = files.cert.read_bytes(), files.key.read_bytes()
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600  # the key is its owner's alone
    assert not list(files.cert.parent.glob(".*.tmp"))  # written atomically: no temp file left

    again, made_again = default_certificate(tmp_path, ("127.0.0.2",), NOW)
    assert (again, made_again) == (files, False)
    assert (again.cert.read_bytes(), again.key.read_bytes()) == (cert_bytes, key_bytes)

    cert = x509.load_pem_x509_certificate(cert_bytes)
    assert cert.not_valid_before_utc.timestamp() == NOW - 86400  # from the day before "now", ten years
    assert cert.not_valid_after_utc.timestamp() == NOW - 86400 + 3650 * 86400
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["pbx.example"]
    expected = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert fingerprint(files.cert) == ":".join(expected[i:i + 2] for i in range(0, 64, 2))


def test_a_certificate_without_its_key_is_made_anew(tmp_path: Path) -> None:
    files, _ = default_certificate(tmp_path, ("127.0.0.1",), NOW)
    old = files.cert.read_bytes()
    files.key.unlink()
    files2, made = default_certificate(tmp_path, ("127.0.0.1",), NOW)
    assert made and files2.cert.read_bytes() != old
    server_context(files2)  # the new pair matches


def test_the_server_context_speaks_tls_1_2_or_later_only(tmp_path: Path) -> None:
    files, _ = default_certificate(tmp_path, ("127.0.0.1",), NOW)
    context = server_context(files)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_NONE  # phones authenticate by digest


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    first, _ = default_certificate(tmp_path / "a", ("127.0.0.1",), NOW)
    second, _ = default_certificate(tmp_path / "b", ("127.0.0.1",), NOW)
    with pytest.raises(CertificateError, match="cannot load"):
        server_context(CertificateFiles(first.cert, second.key))
    with pytest.raises(CertificateError, match="cannot load"):
        server_context(CertificateFiles(tmp_path / "missing.pem", first.key))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CertificateError, match="no PEM certificate"):
        fingerprint(tmp_path / "junk.pem")
