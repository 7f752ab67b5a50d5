"""Self-made CAs for the admission webhook (no cert-manager): its serving certificate, and a
client certificate for whoever calls it (the API server, in tests and local runs)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class ServingCert:
    certfile: Path
    keyfile: Path
    cafile: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _signed_pair(
    ca_cn: str, cn: str, usage: x509.ObjectIdentifier, sans: list[str]
) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh CA, and a certificate for `cn` it signs for `usage`: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(_san(sans), critical=False)
    return ca, builder.sign(ca_key, hashes.SHA256()), key


def _write(paths: ServingCert, ca: x509.Certificate, cert: x509.Certificate, key: Any) -> None:
    paths.cafile.parent.mkdir(parents=True, exist_ok=True)
    paths.cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.keyfile.write_bytes(_pem_key(key))
    paths.keyfile.chmod(0o600)


def self_signed(directory: Path, hosts: list[str]) -> ServingCert:
    """Writes ca.crt, tls.crt and tls.key for the given DNS names or IP addresses."""
    ca, cert, key = _signed_pair(
        "inferops-webhook-ca", hosts[0], x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, hosts
    )
    paths = ServingCert(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    _write(paths, ca, cert, key)
    return paths


def client_certificate(directory: Path, name: str) -> ServingCert:
    """Writes ca.crt and a client certificate (client.crt, client.key) for `name` that it
    signs: what an API server presents to a webhook that verifies its callers."""
    ca, cert, key = _signed_pair(
        "inferops-webhook-client-ca", name, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    paths = ServingCert(directory / "client.crt", directory / "client.key", directory / "ca.crt")
    _write(paths, ca, cert, key)
    return paths
