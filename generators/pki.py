"""The lab's PKI: one CA, and per node an apiserver serving certificate whose SANs are exactly that node's
rendered k3s ``tls-san`` (IP entries as IP SANs, the rest as DNS SANs).

Idempotent: an existing CA is reused, and a node certificate is rewritten only when it is missing, not
signed by the CA, has different SANs, or expires within 30 days. A second run changes no file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from generators.errors import InputError

SECRET_MODE = 0o600  # private keys and tokens, on the host and inside the lab's containers
SECRET_DIR_MODE = 0o700  # the directories that hold them
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


class PkiError(InputError):
    """A PKI file that exists but cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class NodeCert:
    cert_path: Path
    key_path: Path
    ca_path: Path


def san_entries(sans: list[str] | tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            out.append(x509.DNSName(san))
    return out


def cert_sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """(IP SANs, DNS SANs) of a certificate."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return ({str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}, set(ext.get_values_for_type(x509.DNSName)))


def write_private(path: Path, data: bytes) -> None:
    """Write a secret: mode 0600 from the start (never world-readable, not even for a moment)."""
    _write_private(path, data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_signing_key(pki_dir: str | Path, name: str) -> tuple[Path, Path]:
    """An EC P-256 key pair ``<name>.key`` (0600) / ``<name>.pub`` (e.g. service-account token signing)."""
    pki = Path(pki_dir)
    ensure_ca(pki)
    key_path, pub_path = pki / f"{name}.key", pki / f"{name}.pub"
    if not key_path.is_file():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(key_path, _key_pem(key))
        _write(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def ensure_ssh_key(path: str | Path, comment: str) -> str:
    """An Ed25519 key pair in OpenSSH's format, ``path`` (0600, in a 0700 directory) and ``path.pub``, made
    once; returns the public key line (``ssh-ed25519 AAAA... comment``)."""
    key_path = Path(path)
    pub_path = key_path.with_name(key_path.name + ".pub")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.chmod(SECRET_DIR_MODE)
    if not key_path.is_file() or not pub_path.is_file():
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                   serialization.NoEncryption()))
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        _write(pub_path, public + f" {comment}\n".encode())
    return pub_path.read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ensure_ca(pki_dir: str | Path, name: str = "k3s-bgp-lab CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the lab CA from ``pki_dir``, creating it (and the directory) when absent."""
    pki = Path(pki_dir)
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(SECRET_DIR_MODE)
    cert_path, key_path = pki / CA_CERT, pki / CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except ValueError as exc:
            raise PkiError(
                f"{pki}: {CA_CERT}/{CA_KEY} cannot be read ({exc}); delete both to create a new lab CA"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_path}: not an EC key; delete {CA_CERT} and {CA_KEY} to create a new lab CA")
        return cert, key
    if cert_path.exists() != key_path.exists():
        raise PkiError(f"{pki}: only one of {CA_CERT} and {CA_KEY} exists; delete it to create a new lab CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _current(cert_path: Path, key_path: Path, ca: x509.Certificate, sans: list[str]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return False
    wanted_ips = {str(e.value) for e in san_entries(sans) if isinstance(e, x509.IPAddress)}
    wanted_dns = {e.value for e in san_entries(sans) if isinstance(e, x509.DNSName)}
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (
        same_key
        and _signed_by(cert, ca)
        and cert_sans(cert) == (wanted_ips, wanted_dns)
        and cert.not_valid_after_utc - _now() > RENEW_BEFORE
    )


def ensure_node_cert(pki_dir: str | Path, node: str, sans: list[str] | tuple[str, ...]) -> NodeCert:
    """``<node>-apiserver.crt``/``.key`` in ``pki_dir`` with exactly ``sans``; reused when already right."""
    if not sans:
        raise PkiError(f"node {node}: its k3s config has no tls-san; the node's apiserver needs at least one SAN")
    pki = Path(pki_dir)
    ca, ca_key = ensure_ca(pki)
    cert_path, key_path = pki / f"{node}-apiserver.crt", pki / f"{node}-apiserver.key"
    if not _current(cert_path, key_path, ca, list(sans)):
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node} apiserver")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(san_entries(sans)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return NodeCert(cert_path=cert_path, key_path=key_path, ca_path=pki / CA_CERT)


def is_secret(path: str | Path) -> bool:
    """A private key or a token, by name (``*.key``, ``*token*``): what must be mode 0600."""
    name = Path(path).name
    return name.endswith(".key") or "token" in name


def split_secrets(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, int]]:
    """(other files, secret files, the secrets' directories with SECRET_DIR_MODE) for copying into a container."""
    secret = {p: b for p, b in files.items() if is_secret(p)}
    other = {p: b for p, b in files.items() if p not in secret}
    return other, secret, {str(Path(p).parent): SECRET_DIR_MODE for p in secret}


def _holds_private_key(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"PRIVATE KEY-----" in fh.read(4096)
    except OSError:
        return False


def tighten_secrets(root: str | Path) -> list[str]:
    """Make every private key and token under ``root`` 0600 and its directory 0700; returns what changed."""
    changed = []
    for path in sorted(Path(root).rglob("*")):
        if path.is_symlink() or not path.is_file() or not (is_secret(path) or _holds_private_key(path)):
            continue
        for target, mode in ((path, SECRET_MODE), (path.parent, SECRET_DIR_MODE)):
            if target.stat().st_mode & 0o777 != mode:
                target.chmod(mode)
                changed.append(f"chmod {mode:o} {target}")
    return changed
