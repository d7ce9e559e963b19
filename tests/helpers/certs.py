"""A test certificate authority for C2PA signing, made with ``cryptography`` (no files
from anywhere else): a root CA and a leaf with what C2PA asks of a signer (v3,
digitalSignature key usage, the emailProtection EKU, not a CA, key identifiers).
``bad_leaf`` makes a certificate c2pa refuses (a self-signed CA certificate used to sign)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


@dataclass
class TestCA:
    root: Path  # the root certificate (trust anchor), PEM
    chain: Path  # leaf then root, PEM
    key: Path  # the leaf's private key, PEM


def _name(cn: str):
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sam-age tests")]
    )


def _usage(sign_certs: bool):
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key, fmt) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def make_ca(folder: Path, kind: str = "ec", key_format: str = "pkcs8") -> TestCA:
    """``kind``: the leaf's key (``ec`` P-256, ``rsa`` 2048 (PSS), ``ed25519``);
    ``key_format``: ``pkcs8`` or ``sec1``/``pkcs1`` (the "traditional" OpenSSL form)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("sam-age test root"))
        .issuer_name(_name("sam-age test root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA384())
    )
    if kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(kind)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("sam-age test signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    (folder / "root.pem").write_bytes(root.public_bytes(pem))
    (folder / "chain.pem").write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    fmt = serialization.PrivateFormat.PKCS8 if key_format == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
    (folder / "key.pem").write_bytes(_pem_key(key, fmt))
    return TestCA(folder / "root.pem", folder / "chain.pem", folder / "key.pem")


def bad_leaf(folder: Path) -> TestCA:
    """A self-signed CA certificate (keyCertSign, no signer EKU) and its key: C2PA refuses
    to sign with a CA certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("not a signer"))
        .issuer_name(_name("not a signer"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(True), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "chain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(_pem_key(key, serialization.PrivateFormat.PKCS8))
    return TestCA(folder / "chain.pem", folder / "chain.pem", folder / "key.pem")
