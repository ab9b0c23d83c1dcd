"""The organisation's signature on evidence packs (PAdES B-B with pyHanko, offline).

A signed pack shows in any PDF reader whether it was changed after export, and
``validate_pack`` checks a PDF against the app's own root, so HR can tell an untampered
pack of ours from anything else.

Where the certificate comes from:

- production: ``EVIDENCE_SIGNING_KEY`` and ``EVIDENCE_SIGNING_CERT`` (PEM files; the key
  may be encrypted with ``EVIDENCE_SIGNING_KEY_PASSWORD``) and ``EVIDENCE_SIGNING_CHAIN``
  (PEM file with the intermediates and the root; its self-signed certificates are the
  roots packs are validated against);
- the embedded default: on first use a self-signed root and a signing certificate
  issued by it (key usage digitalSignature + nonRepudiation) are generated under
  ``EVIDENCE_SIGNING_DIR`` (default ``instance/evidence-signing``, mode 0700; key file
  0600). The root's private key is discarded once it has issued the signing
  certificate: nothing can issue another certificate under that root. Two processes
  generating at once cannot mix their files (each writes a directory of its own and
  renames it into place; the loser reads the winner's).

No Flask and no database here: settings come in as a ``SigningSettings``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

T = TypeVar("T")

__all__ = [
    "PackCheck",
    "SigningError",
    "SigningMaterial",
    "SigningSettings",
    "load_material",
    "sign_pdf",
    "validate_pack",
]

DEFAULT_ORG = "合规学堂 Compliance Academy"
FIELD_NAME = "EvidencePackSignature"
PACK_KEYWORD = "evidence-pack:"
ROOT_FILE, CERT_FILE, KEY_FILE = "root-cert.pem", "signing-cert.pem", "signing-key.pem"
ROOT_YEARS, CERT_YEARS = 30, 10
KEY_BITS = 3072

# pyHanko logs a traceback for every pack that fails validation; the result says it all.
# (Records still reach handlers the application configures.)
logging.getLogger("pyhanko").addHandler(logging.NullHandler())
logging.getLogger("pyhanko_certvalidator").addHandler(logging.NullHandler())


class SigningError(RuntimeError):
    """The signing certificate or key cannot be loaded or made (the message says which)."""


@dataclass(frozen=True)
class SigningSettings:
    key_path: str | None = None
    cert_path: str | None = None
    chain_path: str | None = None
    key_password: str | None = None
    default_dir: str = "instance/evidence-signing"
    organisation: str = DEFAULT_ORG

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instance_path: str | os.PathLike[str]
                    ) -> SigningSettings:
        """From the Flask config, else the environment (``EVIDENCE_SIGNING_*``)."""
        def get(name: str) -> str | None:
            value = config.get(name) or os.environ.get(name)
            return str(value) if value else None
        return cls(key_path=get("EVIDENCE_SIGNING_KEY"), cert_path=get("EVIDENCE_SIGNING_CERT"),
                   chain_path=get("EVIDENCE_SIGNING_CHAIN"),
                   key_password=get("EVIDENCE_SIGNING_KEY_PASSWORD"),
                   default_dir=get("EVIDENCE_SIGNING_DIR")
                   or str(Path(instance_path) / "evidence-signing"),
                   organisation=get("EVIDENCE_ORG_NAME") or DEFAULT_ORG)


@dataclass(frozen=True)
class SigningMaterial:
    key: Any  # a cryptography private key
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates and roots, without ``cert``
    roots: tuple[x509.Certificate, ...]  # what packs are validated against
    source: str  # "generated" or "configured"

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


# --- loading and making the certificate -----------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"{what} {path}: cannot be read ({exc.strerror})") from exc


def _certs(path: str, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, what))
    except ValueError as exc:
        raise SigningError(f"{what} {path}: not a PEM certificate file ({exc})") from exc
    return certs


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _configured(settings: SigningSettings) -> SigningMaterial:
    if not (settings.key_path and settings.cert_path):
        raise SigningError("set both EVIDENCE_SIGNING_KEY and EVIDENCE_SIGNING_CERT "
                           "(PEM files), or neither to use the generated default")
    password = settings.key_password.encode() if settings.key_password else None
    try:
        key = serialization.load_pem_private_key(_read(settings.key_path, "signing key"),
                                                 password=password)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"signing key {settings.key_path}: cannot be loaded ({exc}); "
                           "is EVIDENCE_SIGNING_KEY_PASSWORD right?") from exc
    certs = _certs(settings.cert_path, "signing certificate")
    cert = certs[0]
    chain = certs[1:] + (_certs(settings.chain_path, "certificate chain")
                         if settings.chain_path else [])
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise SigningError(f"signing certificate {settings.cert_path} does not belong to the "
                           f"key {settings.key_path}")
    roots = [c for c in chain if _self_signed(c)]
    if not roots:  # no self-signed root given: the top of the chain (or the cert) anchors
        roots = [chain[-1] if chain else cert]
    return SigningMaterial(key, cert, tuple(chain), tuple(roots), "configured")


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64]),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _key_usage(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def make_certificates(organisation: str, now: datetime | None = None
                      ) -> tuple[x509.Certificate, x509.Certificate, Any]:
    """(root, signing certificate, signing key): a self-signed root that may issue only
    end-entity certificates, and a signing certificate for digital signatures with
    non-repudiation (content commitment), as PDF readers expect of a document signer."""
    now = now or datetime.now(UTC)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    root_name = _name(organisation, f"{organisation} 证据包根证书 Evidence root")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365 * ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(_name(organisation, f"{organisation} 证据包签名 Evidence signing"))
            .issuer_name(root_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365 * CERT_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, content_commitment=True),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    return root, cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _generate(directory: Path, organisation: str) -> None:
    """Make the default certificates in a private directory, then rename it into place
    (atomic: a concurrent first use either wins or reads the winner's files)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.{secrets.token_hex(6)}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        root, cert, key = make_certificates(organisation)
        pem = serialization.Encoding.PEM
        _write(tmp / ROOT_FILE, root.public_bytes(pem), 0o644)
        _write(tmp / CERT_FILE, cert.public_bytes(pem), 0o644)
        _write(tmp / KEY_FILE, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), 0o600)
        try:
            tmp.rename(directory)
        except OSError:
            if not (directory / CERT_FILE).exists():
                raise
    except OSError as exc:
        raise SigningError(f"cannot create the evidence signing certificate in {directory}: "
                           f"{exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _default(settings: SigningSettings) -> SigningMaterial:
    directory = Path(settings.default_dir)
    if not (directory / CERT_FILE).exists():
        _generate(directory, settings.organisation)
    material = _configured(SigningSettings(
        key_path=str(directory / KEY_FILE), cert_path=str(directory / CERT_FILE),
        chain_path=str(directory / ROOT_FILE)))
    return SigningMaterial(material.key, material.cert, material.chain, material.roots,
                           "generated")


def _stamp(*paths: str | None) -> tuple[Any, ...]:
    out: list[Any] = []
    for path in paths:
        try:
            st = Path(path).stat() if path else None
        except OSError:
            st = None
        out.append((path, st.st_mtime_ns if st else None, st.st_size if st else None))
    return tuple(out)


@lru_cache(maxsize=4)
def _load(settings: SigningSettings, _stamps: tuple[Any, ...]) -> SigningMaterial:
    if settings.key_path or settings.cert_path:
        return _configured(settings)
    return _default(settings)


def load_material(settings: SigningSettings) -> SigningMaterial:
    """The configured certificate, or the generated default (made on first use). Cached
    per file version, so a replaced certificate is picked up without a restart."""
    directory = Path(settings.default_dir)
    return _load(settings, _stamp(settings.key_path, settings.cert_path, settings.chain_path,
                                  str(directory / CERT_FILE)))


# --- signing and validating -----------------------------------------------------------------


def _asn1(material: SigningMaterial):
    from asn1crypto import keys as akeys
    from asn1crypto import x509 as ax509

    der = serialization.Encoding.DER
    cert = ax509.Certificate.load(material.cert.public_bytes(der))
    chain = [ax509.Certificate.load(c.public_bytes(der)) for c in material.chain]
    roots = [ax509.Certificate.load(c.public_bytes(der)) for c in material.roots]
    key = akeys.PrivateKeyInfo.load(material.key.private_bytes(
        der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert, chain, roots, key


@lru_cache(maxsize=1)
def _signer_class() -> type:
    """pyHanko's SimpleSigner parses (and validates) the private key again for every
    signature, half a second for RSA-3072; this one signs with the key loaded once."""
    from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from pyhanko.sign.general import get_pyca_cryptography_hash
    from pyhanko.sign.signers import SimpleSigner

    class LoadedKeySigner(SimpleSigner):
        def __init__(self, loaded_key: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._loaded_key = loaded_key

        def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
            try:
                algorithm = self.get_signature_mechanism_for_digest(
                    digest_algorithm).signature_algo
            except ValueError:
                algorithm = None
            digest = get_pyca_cryptography_hash(digest_algorithm)
            if algorithm == "rsassa_pkcs1v15":
                return self._loaded_key.sign(data, PKCS1v15(), digest)
            if algorithm == "ecdsa":
                return self._loaded_key.sign(data, ECDSA(digest))
            return super().sign_raw(data, digest_algorithm)

    return LoadedKeySigner


def sign_pdf(pdf: bytes, material: SigningMaterial, *, reason: str, location: str,
             field_name: str = FIELD_NAME) -> bytes:
    """``pdf`` with an invisible PAdES B-B signature (SHA-256, no timestamp, no network)
    by the organisation's certificate, its chain embedded for the readers."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert, chain, _roots, key = _asn1(material)
    # Roots are not embedded: a reader trusts a root it already has, and an embedded copy
    # is bytes nobody checks (the validator takes the root from its own trust list).
    signer = _signer_class()(material.key, signing_cert=cert, signing_key=key,
                             cert_registry=SimpleCertificateStore.from_certs(chain),
                             embed_roots=False)
    meta = signers.PdfSignatureMetadata(
        field_name=field_name, subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256",
        reason=reason, location=location, name=material.cert.subject.rfc4514_string())
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    return _outside_event_loop(lambda: signers.sign_pdf(writer, meta, signer=signer).getvalue())


def _outside_event_loop(call: Callable[[], T]) -> T:
    """Run ``call`` where no asyncio loop is running: pyHanko's synchronous API calls
    ``asyncio.run``, which refuses to start inside a running loop (an async server, or
    Playwright's sync API in the same thread), so then it runs on a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyhanko") as pool:
        return pool.submit(call).result()


@dataclass
class PackCheck:
    """What ``validate_pack`` found. ``status`` is one of STATUSES; ``ok`` only for
    "valid" (one signature, intact, by a certificate under our root, covering every
    byte of the file)."""

    status: str
    detail: str = ""
    signer: str | None = None
    signer_fingerprint: str | None = None
    signed_at: datetime | None = None
    pack_id: str | None = None
    file_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "valid"


STATUSES = ("valid", "not_pdf", "unsigned", "several_signatures", "altered",
            "bad_signature", "untrusted", "modified_after_signing")


def _pack_id(reader: Any) -> str | None:
    """The pack id we wrote into the document's keywords ("evidence-pack:<id>")."""
    try:
        keywords = reader.document_meta_view.keywords or []
    except Exception:  # a broken info dictionary just has no pack id
        return None
    for word in keywords:
        word = str(word).strip()
        if word.startswith(PACK_KEYWORD):
            return word[len(PACK_KEYWORD):] or None
    return None


def _padding_untouched(contents: bytes) -> bool:
    """The signature blob is reserved larger than the CMS it holds; the rest must still be
    zeros (a changed padding byte would otherwise change the file, not the verdict)."""
    if len(contents) < 2 or contents[0] != 0x30:
        return False
    first = contents[1]
    if first < 0x80:
        end = 2 + first
    else:
        size = first & 0x7F
        end = 2 + size + int.from_bytes(contents[2:2 + size], "big")
    return end <= len(contents) and not any(contents[end:])


def validate_pack(pdf: bytes, material: SigningMaterial) -> PackCheck:
    """Whether ``pdf`` is a pack signed by us and not changed by a single byte since."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    digest = hashlib.sha256(pdf).hexdigest()
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:  # pyHanko raises many kinds on a broken file
        return PackCheck("not_pdf", f"{type(exc).__name__}: {exc}", file_sha256=digest)
    if not signatures:
        return PackCheck("unsigned", file_sha256=digest, pack_id=_pack_id(reader))
    if len(signatures) > 1:
        return PackCheck("several_signatures", f"{len(signatures)} signatures",
                         file_sha256=digest, pack_id=_pack_id(reader))
    _cert, _chain, roots, _key = _asn1(material)
    context = ValidationContext(trust_roots=roots, allow_fetching=False)
    try:
        status = _outside_event_loop(lambda: validate_pdf_signature(
            signatures[0], signer_validation_context=context))
    except Exception as exc:  # a mangled CMS blob fails in many ways
        return PackCheck("bad_signature", f"{type(exc).__name__}: {exc}", file_sha256=digest,
                         pack_id=_pack_id(reader))
    cert = status.signing_cert
    check = PackCheck("valid", file_sha256=digest, pack_id=_pack_id(reader),
                      signer=cert.subject.human_friendly if cert is not None else None,
                      signer_fingerprint=cert.sha256.hex() if cert is not None else None,
                      signed_at=status.signer_reported_dt)
    if not status.intact:
        check.status, check.detail = "altered", "the signed bytes do not match their digest"
    elif not _padding_untouched(bytes(signatures[0].sig_object["/Contents"])):
        check.status = "altered"
        check.detail = "bytes after the signature value were changed"
    elif not status.valid:
        check.status, check.detail = "bad_signature", "the signature value is not valid"
    elif not status.trusted:
        check.status = "untrusted"
        check.detail = "the signer's certificate does not chain to this system's root"
    elif status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        check.status = "modified_after_signing"
        check.detail = f"the signature covers {status.coverage.name}, not the entire file"
    return check
