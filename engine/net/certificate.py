"""The engine's TLS certificate and the SSL contexts of SIP over TLS (RFC 3261 §26.2.1, RFC 5630).

``pbx serve --tls`` takes a certificate chain and key (``--tls-cert``/``--tls-key``, PEM). Without them the
embedded default applies: a self-signed certificate made on first start into the data directory
(``tls/sip.crt`` and ``tls/sip.key``: an ECDSA P-256 key, ten years, the advertised address and host name
as subject alternative names), each file written atomically (``engine.files.write_atomic``: a crash leaves
no half a key) and reused as it is on every later start. Its SHA-256 fingerprint is what an operator gives
the phones that pin it, so it is logged at every start.

Only TLS 1.2 and later are spoken (RFC 8996 deprecates 1.0 and 1.1); the ciphers are OpenSSL's defaults
for that floor. A phone's own certificate is not asked for (phones authenticate by digest, as over UDP).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from engine.files import write_atomic

logger = logging.getLogger(__name__)

CERT_DIR: Final = "tls"
CERT_FILE: Final = "sip.crt"
KEY_FILE: Final = "sip.key"
VALID_DAYS: Final = 3650
MIN_TLS_VERSION: Final = ssl.TLSVersion.TLSv1_2


class CertificateError(Exception):
    """The configured certificate or key cannot be used (missing, unreadable, not matching)."""


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A PEM certificate chain and its private key, as files."""

    cert: Path
    key: Path


def default_certificate(data_dir: Path, names: tuple[str, ...], now: float) -> tuple[CertificateFiles, bool]:
    """The data directory's self-signed certificate, made now if there is none.

    Args:
        data_dir: the engine's data directory (the files go into its ``tls/``).
        names: IP addresses and host names for the subject alternative names (the first is the subject).
        now: the wall-clock time (Unix seconds; the clock's ``wall()``): the certificate is valid from the
            day before.

    Returns:
        The files, and True when they were made by this call (False: reused from an earlier start).

    Raises:
        OSError: the directory or a file cannot be written.
    """
    directory = data_dir / CERT_DIR
    files = CertificateFiles(directory / CERT_FILE, directory / KEY_FILE)
    if files.cert.exists() and files.key.exists():
        return files, False
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = make_self_signed(names, datetime.datetime.fromtimestamp(now, datetime.UTC))
    # The key first: a certificate on disk always has its key beside it (a crash in between makes both anew).
    write_atomic(files.key, key_pem)  # mkstemp creates it 0600: the key is readable by its owner only
    write_atomic(files.cert, cert_pem)
    return files, True


def make_self_signed(names: tuple[str, ...], now: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``names`` and its key, both PEM (the key unencrypted PKCS#8).

    Raises:
        ValueError: ``names`` is empty.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not names:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pbx-engine")])
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            alt.append(x509.DNSName(name))
    start = now - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def certificate_names(advertised: str) -> tuple[str, ...]:
    """The names the default certificate carries: the advertised address, then this host's name."""
    return (advertised, socket.gethostname())


def fingerprint(cert_file: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file, as ``AB:CD:...`` (RFC 8122 style).

    Raises:
        CertificateError: the file holds no PEM certificate (or cannot be read).
    """
    try:
        text = cert_file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CertificateError(f"cannot read the certificate {cert_file}: {exc}") from None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise CertificateError(f"{cert_file} holds no PEM certificate")
    der = ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)] + "\n")
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def server_context(files: CertificateFiles) -> ssl.SSLContext:
    """The context of the TLS listener: TLS 1.2 minimum, our certificate, no client certificate asked.

    Raises:
        CertificateError: the certificate or key cannot be loaded (or they do not match).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    context.options |= ssl.OP_NO_COMPRESSION  # CRIME; also the OpenSSL default
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"cannot load the TLS certificate {files.cert} with key {files.key}: "
                               f"{exc}") from None
    return context


def client_context() -> ssl.SSLContext:
    """The context of connections we open (a response whose connection is gone, a request to a TLS
    target): TLS 1.2 minimum, the peer's certificate checked against the system's CAs and its name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MIN_TLS_VERSION
    return context
