"""The organisation's certificate and the PAdES signature of evidence packs, and the CJK
font check, without an app or a database."""

from __future__ import annotations

import io
import stat
import struct
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from lms.evidence.fonts import FontError, check_font, find_font
from lms.evidence.signing import (
    CERT_FILE,
    KEY_FILE,
    ROOT_FILE,
    SigningError,
    SigningSettings,
    load_material,
    make_certificates,
    sign_pdf,
    validate_pack,
)

WQY = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # `make test` installs it


def latin_font() -> Path:
    """ReportLab's bundled Vera: a fine TrueType font without a single Chinese glyph."""
    import reportlab

    return Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    return load_material(SigningSettings(default_dir=str(
        tmp_path_factory.mktemp("org") / "signing"), organisation="测试公司 Test Co"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    return load_material(SigningSettings(default_dir=str(
        tmp_path_factory.mktemp("other") / "signing"), organisation="别的公司 Other Co"))


def a_pdf(text: str = "Evidence") -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=0)
    page.setKeywords(["evidence-pack:20260601-ABCDEF", "employee:E1"])
    page.drawString(72, 720, text)
    page.showPage()
    page.save()
    return out.getvalue()


# --- the generated default ------------------------------------------------------------------


def test_the_default_certificate_is_made_once_with_non_repudiation(tmp_path):
    settings = SigningSettings(default_dir=str(tmp_path / "signing"), organisation="合规学堂")
    material = load_material(settings)
    assert material.source == "generated"
    key_usage = material.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and key_usage.content_commitment  # nonRepudiation
    assert not key_usage.key_cert_sign
    root = material.roots[0]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert material.cert.issuer == root.subject and "合规学堂" in material.subject
    files = {p.name for p in (tmp_path / "signing").iterdir()}
    assert files == {ROOT_FILE, CERT_FILE, KEY_FILE}  # the root's key was not kept
    assert stat.S_IMODE((tmp_path / "signing" / KEY_FILE).stat().st_mode) == 0o600
    assert load_material(settings).fingerprint == material.fingerprint  # not made again


def test_two_first_uses_at_once_agree_on_one_certificate(tmp_path):
    directory = str(tmp_path / "signing")
    seen: list[str] = []

    def first_use(n: int) -> None:
        # distinct settings objects, so the per-process cache does not serialise them
        seen.append(load_material(SigningSettings(default_dir=directory,
                                                  organisation=f"Co {n}")).fingerprint)

    threads = [threading.Thread(target=first_use, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 3 and len(set(seen)) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- a configured certificate -----------------------------------------------------------------


def write_configured(tmp_path: Path, password: bytes | None = b"s3cret") -> SigningSettings:
    root, cert, key = make_certificates("生产公司 Production Co")
    pem = serialization.Encoding.PEM
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, encryption))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "chain.pem").write_bytes(root.public_bytes(pem))
    return SigningSettings(key_path=str(tmp_path / "key.pem"),
                           cert_path=str(tmp_path / "cert.pem"),
                           chain_path=str(tmp_path / "chain.pem"),
                           key_password=password.decode() if password else None,
                           default_dir=str(tmp_path / "unused"))


def test_a_configured_certificate_signs_and_validates(tmp_path):
    material = load_material(write_configured(tmp_path))
    assert material.source == "configured" and "Production Co" in material.subject
    signed = sign_pdf(a_pdf(), material, reason="测试", location="上海")
    check = validate_pack(signed, material)
    assert check.ok, check
    assert not (tmp_path / "unused").exists()  # nothing generated


def test_configuration_mistakes_are_named(tmp_path):
    settings = write_configured(tmp_path)
    with pytest.raises(SigningError, match="EVIDENCE_SIGNING_KEY_PASSWORD"):
        load_material(SigningSettings(key_path=settings.key_path, cert_path=settings.cert_path,
                                      key_password="wrong"))
    with pytest.raises(SigningError, match="both EVIDENCE_SIGNING_KEY and"):
        load_material(SigningSettings(cert_path=settings.cert_path))
    with pytest.raises(SigningError, match="cannot be read"):
        load_material(SigningSettings(key_path=str(tmp_path / "missing.pem"),
                                      cert_path=settings.cert_path))
    _root, other_cert, _key = make_certificates("Other")
    (tmp_path / "other.pem").write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(SigningError, match="does not belong to the key"):
        load_material(SigningSettings(key_path=settings.key_path,
                                      cert_path=str(tmp_path / "other.pem"),
                                      key_password="s3cret"))


# --- validating -------------------------------------------------------------------------------


def test_a_signed_pack_validates_and_names_its_pack(org):
    signed = sign_pdf(a_pdf(), org, reason="证据包", location="合规学堂")
    check = validate_pack(signed, org)
    assert check.ok and check.status == "valid"
    assert check.pack_id == "20260601-ABCDEF"
    assert "测试公司" in check.signer and check.signed_at is not None


def test_one_changed_byte_anywhere_in_the_signed_range_fails(org):
    signed = sign_pdf(a_pdf("Evidence of training"), org, reason="x", location="y")
    start = signed.index(b"Evidence of training")  # the page text itself (uncompressed)
    changed = bytearray(signed)
    changed[start] = ord("e")
    assert validate_pack(bytes(changed), org).status == "altered"
    contents = signed.index(b"/Contents <") + len(b"/Contents <")
    padding = signed.index(b">", contents) - 10  # the zeros reserved after the CMS value
    positions = {10, contents + 100, padding, len(signed) - 100,
                 *range(0, len(signed), len(signed) // 40)}
    for position in sorted(positions):
        flipped = bytearray(signed)
        flipped[position] ^= 0x01
        assert not validate_pack(bytes(flipped), org).ok, position


def test_other_signers_additions_and_junk_are_refused(org, stranger):
    signed = sign_pdf(a_pdf(), org, reason="x", location="y")
    assert validate_pack(sign_pdf(a_pdf(), stranger, reason="x", location="y"),
                         org).status == "untrusted"
    assert validate_pack(signed + b"\n% appended\n", org).status == "modified_after_signing"
    assert validate_pack(a_pdf(), org).status == "unsigned"
    assert validate_pack(b"not a pdf at all", org).status == "not_pdf"
    countersigned = sign_pdf(signed, org, reason="again", location="y", field_name="Second")
    assert validate_pack(countersigned, org).status == "several_signatures"


# --- the CJK font -----------------------------------------------------------------------------


def test_the_debian_font_is_found_and_has_chinese():
    font = find_font(None)
    assert font.path == WQY.resolve() and "WenQuanYi" in font.name
    assert check_font(WQY).family == font.family  # cached per file version


def test_a_configured_font_path_wins_and_is_checked(tmp_path):
    assert find_font(str(WQY)).path == WQY.resolve()
    with pytest.raises(FontError, match="cannot read the font file"):
        find_font(str(tmp_path / "missing.ttf"))
    with pytest.raises(FontError, match="no glyphs for Chinese"):
        find_font(str(latin_font()))


def sfnt(tag: bytes) -> bytes:
    """A table directory with no tables: enough for the outline check."""
    return tag + struct.pack(">HHHH", 0, 0, 0, 0)


def test_cff_fonts_like_noto_cjk_are_refused_with_a_clear_error(tmp_path):
    otf_in_ttf = tmp_path / "NotoSansCJK-Regular.ttf"
    otf_in_ttf.write_bytes(sfnt(b"OTTO"))
    with pytest.raises(FontError, match="PostScript \\(CFF\\) outlines"):
        check_font(otf_in_ttf)
    collection = tmp_path / "NotoSansCJK-Regular.ttc"  # a TTC of CFF faces, as Noto ships
    collection.write_bytes(b"ttcf" + struct.pack(">HHII", 1, 0, 1, 16) + sfnt(b"OTTO"))
    with pytest.raises(FontError, match="CFF"):
        check_font(collection)
    web_or_otf = tmp_path / "font.otf"
    web_or_otf.write_bytes(sfnt(b"OTTO"))
    with pytest.raises(FontError, match=r"\.ttf or \.ttc"):
        check_font(web_or_otf)


def test_no_font_installed_says_what_to_install(tmp_path):
    with pytest.raises(FontError, match="apt-get install fonts-wqy-microhei"):
        find_font(None, candidates=(str(tmp_path / "none.ttc"),))


# --- rendering ----------------------------------------------------------------------------------


def page_html(font, body: str, css: str = "") -> str:
    from lms.evidence.pdf import font_face_css

    return (f"<html><head><style>{font_face_css(font)} body {{ font-family: {font.family}; }} "
            f"{css}</style></head><body>{body}</body></html>")


def test_the_font_outside_the_working_directory_is_embedded(tmp_path, monkeypatch):
    """xhtml2pdf's default policy silently refuses a font outside the working directory
    (every character a box); ours allows the font's folder and nothing else."""
    from pypdf import PdfReader
    from xhtml2pdf import pisa

    from lms.evidence.pdf import render_pdf

    monkeypatch.chdir(tmp_path)
    font = find_font(None)
    html = page_html(font, "<p>员工姓名：李雷</p>")
    default = pisa.pisaDocument(html, dest=io.BytesIO())
    assert font.family not in default.fontList  # the trap
    data = render_pdf(html, font, meta={"keywords": "evidence-pack:X"})
    assert "员工姓名：李雷" in PdfReader(io.BytesIO(data)).pages[0].extract_text()


def test_text_that_would_print_as_boxes_is_refused():
    from lms.evidence.pdf import PdfRenderError, render_pdf

    font = find_font(None)
    with pytest.raises(PdfRenderError, match="boxes"):  # a family nobody embedded
        render_pdf(page_html(font, "<p>李雷</p>", "p { font-family: nosuchfont; }"), font)
    with pytest.raises(PdfRenderError, match="U\\+674E"):  # Chinese in a Latin-only face
        render_pdf(page_html(font, "<p>李雷</p>", "p { font-family: Courier; }"), font)
    assert render_pdf(page_html(font, "<p>李雷 😀</p>"), font).startswith(b"%PDF-")


def test_signing_and_validating_work_inside_a_running_event_loop(org):
    """pyHanko's sync API calls asyncio.run(); inside a running loop (an async server, or
    Playwright's sync API in the same thread) signing must still work."""
    import asyncio
    import threading

    async def inside() -> None:
        signed = sign_pdf(a_pdf(), org, reason="证据包", location="合规学堂")
        assert validate_pack(signed, org).ok

    # on a thread of its own: the suite's main thread may run Playwright's loop already
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(inside())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert not errors, errors
