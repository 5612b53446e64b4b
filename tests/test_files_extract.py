"""File extraction: every kind on real files made in code, and every way a file is refused."""

from __future__ import annotations

import codecs
import io
import itertools
import random
import zipfile
from collections.abc import Callable

import pypdf
import pypdf._encryption
import pytest
from pypdf._crypt_providers import _fallback

from core.files import extract as extract_module
from core.files.extract import detect_kind, display_name, extract
from core.files.types import (
    CorruptFile,
    DecompressionBomb,
    EmptyFile,
    EncryptedFile,
    ExtractedDocument,
    FileRejected,
    FileTooLarge,
    NoTextLayer,
    UnsupportedFileType,
)
from tests import files_factory as make

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def rejected(name: str, mime: str, data: bytes, **kwargs: int) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        extract(name, mime, data, **kwargs)
    return caught.value


def assert_one_line_for_the_person(error: FileRejected, name: str) -> None:
    message = error.user_message
    assert message.startswith(f"I can't read {name}: "), message
    assert "\n" not in message
    assert message.count(". ") >= 1, f"says what is wrong and what to do: {message}"
    assert "Error" not in message and "Traceback" not in message  # no library text


# -- PDF ---------------------------------------------------------------------------------------


def test_pdf_pages_are_numbered_right_even_with_an_empty_page_between() -> None:
    data = make.make_pdf(["Alpha page text.", "", "Gamma page (three) text."])
    doc = extract("report.pdf", PDF, data)
    assert doc.kind == "pdf"
    assert doc.pages == 3
    assert [s.location for s in doc.sections] == ["page 1", "page 3"]
    assert doc.sections[0].text == "Alpha page text."
    assert doc.sections[1].text == "Gamma page (three) text."
    assert doc.describe() == "report.pdf (3 pages)"


def test_pdf_with_compressed_streams_and_many_lines() -> None:
    pages = [
        f"Page {n} first line.\nSecond line of page {n}.\n\nA new paragraph." for n in range(1, 6)
    ]
    doc = extract("long.pdf", PDF, make.make_pdf(pages, compress=True))
    assert doc.pages == 5
    assert [s.location for s in doc.sections] == [f"page {n}" for n in range(1, 6)]
    assert "Second line of page 4." in doc.sections[3].text
    assert extract("one.pdf", PDF, make.make_pdf(["Only page."])).describe() == "one.pdf (1 page)"


def test_pdf_is_recognised_by_its_signature_whatever_its_name_says() -> None:
    data = make.make_pdf(["Signature wins."])
    assert extract("scan.txt", "text/plain", data).kind == "pdf"
    assert extract("download", "application/octet-stream", data).kind == "pdf"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_password_protected_pdf_is_refused_with_what_to_do(algorithm: str) -> None:
    error = rejected("report.pdf", PDF, make.make_encrypted_pdf(algorithm=algorithm))
    assert isinstance(error, EncryptedFile)
    assert error.user_message == (
        "I can't read report.pdf: it is password-protected. Share a copy without a password."
    )


def test_pdf_with_only_an_owner_password_opens() -> None:
    doc = extract("open.pdf", PDF, make.make_encrypted_pdf(["Readable."], user_password=""))
    assert [s.text for s in doc.sections] == ["Readable."]


@pytest.mark.parametrize(
    ("algorithm", "user_password"),
    [("AES-256", "pw"), ("AES-128", "")],  # fails on opening / fails on the page content
)
def test_aes_pdf_without_the_crypto_dependency_is_an_unreadable_encryption(
    monkeypatch: pytest.MonkeyPatch, algorithm: str, user_password: str
) -> None:
    data = make.make_encrypted_pdf(algorithm=algorithm, user_password=user_password)
    for name in ("CryptAES", "aes_cbc_decrypt", "aes_cbc_encrypt", "aes_ecb_decrypt"):
        monkeypatch.setattr(pypdf._encryption, name, getattr(_fallback, name))
    error = rejected("vault.pdf", PDF, data)
    assert isinstance(error, EncryptedFile)
    assert "encrypted in a way I can't open" in error.user_message
    assert isinstance(error.__cause__, pypdf.errors.DependencyError)
    assert_one_line_for_the_person(error, "vault.pdf")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_pdf_is_corrupt(fraction: float) -> None:
    data = make.truncate(make.make_pdf(["Some text.", "More text."]), fraction)
    error = rejected("cut.pdf", PDF, data)
    assert isinstance(error, CorruptFile)
    assert "damaged or incomplete" in error.user_message
    assert_one_line_for_the_person(error, "cut.pdf")


def test_pdf_named_file_that_is_not_a_pdf_is_corrupt() -> None:
    error = rejected("invoice.pdf", PDF, b"<html><body>Sign in to continue</body></html>")
    assert isinstance(error, CorruptFile)
    assert "not a valid PDF" in error.user_message


def test_garbage_after_a_pdf_header_is_corrupt() -> None:
    assert isinstance(rejected("x.pdf", PDF, b"%PDF-1.7\n" + bytes(range(256)) * 4), CorruptFile)


def test_scanned_pdf_says_no_text_layer_and_no_ocr() -> None:
    error = rejected("scan.pdf", PDF, make.make_scanned_pdf(3))
    assert isinstance(error, NoTextLayer)
    assert "no text layer" in error.user_message
    assert "scanned" in error.user_message
    assert "no OCR" in error.user_message
    assert_one_line_for_the_person(error, "scan.pdf")


def test_a_page_that_fails_to_extract_costs_only_that_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = pypdf.PageObject.extract_text

    def flaky(self: pypdf.PageObject, *args: object, **kwargs: object) -> str:
        if "Broken" in real(self):
            raise KeyError("/Font")
        return real(self)

    monkeypatch.setattr(pypdf.PageObject, "extract_text", flaky)
    doc = extract("partly.pdf", PDF, make.make_pdf(["Fine one.", "Broken.", "Fine three."]))
    assert [s.location for s in doc.sections] == ["page 1", "page 3"]
    assert doc.pages == 3
    error = rejected("all.pdf", PDF, make.make_pdf(["Broken.", "Broken too."]))
    assert isinstance(error, CorruptFile)


def test_randomly_damaged_pdfs_are_read_or_refused_never_crash() -> None:
    original = make.make_pdf([f"Page {n} has some words on it." for n in range(1, 6)])
    rng = random.Random(1234)
    outcomes: set[str] = set()
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            doc = extract("fuzz.pdf", PDF, bytes(data))
        except FileRejected as error:
            assert_one_line_for_the_person(error, "fuzz.pdf")
            outcomes.add(type(error).__name__)
        else:
            assert doc.sections and all(s.text for s in doc.sections)
            outcomes.add("read")
    assert "read" in outcomes  # the check is real: some damage is survivable


# -- size, emptiness, type ---------------------------------------------------------------------


def test_file_over_the_limit_says_its_size_and_the_limit() -> None:
    error = rejected("huge.pdf", PDF, b"%PDF-" + b"0" * (26 * 1024 * 1024 - 5))
    assert isinstance(error, FileTooLarge)
    assert error.user_message == (
        "I can't read huge.pdf: it is 26 MB, over the 25 MB limit. "
        "Share a smaller file or split it into parts."
    )


def test_size_limit_is_configurable_and_never_shows_an_equal_size() -> None:
    limit = 1024 * 1024
    error = rejected("notes.txt", "text/plain", b"a" * (limit + 1), max_bytes=limit)
    assert isinstance(error, FileTooLarge)
    assert "it is 1.1 MB, over the 1 MB limit" in error.user_message
    assert extract("notes.txt", "text/plain", b"a" * limit, max_bytes=limit).kind == "text"
    error = rejected("tiny.txt", "text/plain", b"a" * 3000, max_bytes=2048)
    assert "it is 3 KB, over the 2 KB limit" in error.user_message


@pytest.mark.parametrize("name", ["empty.pdf", "empty.docx", "empty.csv", "empty.txt", "x.png"])
def test_zero_byte_file_is_empty(name: str) -> None:
    error = rejected(name, "", b"")
    assert isinstance(error, EmptyFile)
    assert error.user_message.startswith(f"I can't read {name}: the file is empty (0 bytes).")


@pytest.mark.parametrize(
    ("name", "data"), [("blank.txt", b" \n\t\r\n"), ("blank.md", b"\n\n"), ("b.html", b"<p> </p>")]
)
def test_text_file_with_no_text_is_empty(name: str, data: bytes) -> None:
    error = rejected(name, "", data)
    assert isinstance(error, EmptyFile)
    assert "no text" in error.user_message


@pytest.mark.parametrize(
    ("name", "mime", "data", "says"),
    [
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n....", ".png files are not supported"),
        ("tool.exe", "application/octet-stream", b"MZ\x90\x00", ".exe files are not supported"),
        ("blob", "application/octet-stream", b"\x01\x02", "this type of file is not supported"),
        ("old.doc", "application/msword", b"\xd0\xcf\x11\xe0", "Save it as .docx"),
        ("data.txt", "text/plain", b"PK\x03\x04rest", "zip archives are not supported"),
        ("image.txt", "text/plain", b"GIF89a\x00\x00\x01", "binary data, not text"),
    ],
)
def test_unsupported_types_say_what_is_supported(
    name: str, mime: str, data: bytes, says: str
) -> None:
    error = rejected(name, mime, data)
    assert isinstance(error, UnsupportedFileType)
    assert says in error.user_message
    assert "I can read PDF, Word (.docx), plain text, Markdown, CSV and HTML files." in (
        error.user_message
    )
    assert_one_line_for_the_person(error, name)


def test_kind_comes_from_extension_then_mime() -> None:
    assert detect_kind("notes.md", "text/plain", b"# x") == "markdown"
    assert detect_kind("README", "text/markdown; charset=utf-8", b"# x") == "markdown"
    assert detect_kind("data", "text/csv", b"a,b") == "csv"
    assert detect_kind("page.HTM", "", b"<p>") == "html"
    assert detect_kind("report", DOCX, make.make_docx()) == "docx"


def test_file_name_is_shown_on_one_short_line() -> None:
    assert display_name("bad\nname\t.txt") == "bad name .txt"
    assert display_name("dir/inner.pdf") == "inner.pdf"
    assert len(display_name("x" * 300 + ".pdf")) == 80
    assert display_name("") == "this file"
    error = rejected("two\nlines.pdf", PDF, b"")
    assert error.user_message.startswith("I can't read two lines.pdf: ")


# -- text, Markdown, HTML, CSV -----------------------------------------------------------------


def test_plain_text_is_one_section() -> None:
    doc = extract("notes.txt", "text/plain", b"Line one.\r\nLine two.\r\n\r\n\r\n\r\nEnd.\x07")
    assert doc.kind == "text"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("text", "Line one.\nLine two.\n\nEnd.")
    ]
    assert doc.describe() == "notes.txt (1 section)"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (codecs.BOM_UTF8 + "café ünïcode".encode(), "café ünïcode"),
        ("café ünïcode".encode("utf-16"), "café ünïcode"),
        ("café à la crème".encode("cp1252"), "café à la crème"),  # Windows-1252, not UTF-8
        (b"ok text " * 300 + b"\xff", "ok text " * 299 + "ok text \ufffd"),  # one bad byte
    ],
)
def test_text_encodings(data: bytes, expected: str) -> None:
    assert extract("t.txt", "text/plain", data).sections[0].text == expected.strip()


def test_markdown_sections_follow_atx_headings() -> None:
    doc = extract("guide.md", "text/markdown", make.MARKDOWN.encode())
    assert doc.kind == "markdown"
    assert [s.location for s in doc.sections] == [
        "section (start)",
        "section Installation",
        "section Configuration",
        "section Usage",
    ]
    install = doc.sections[1].text
    assert install.startswith("# Installation")
    assert "# not a heading: inside a code fence" in install  # fenced code stays in its section
    assert doc.sections[2].text.startswith("## Configuration")
    assert doc.describe() == "guide.md (4 sections)"


def test_markdown_heading_with_nothing_under_it_joins_the_next_section() -> None:
    doc = extract("m.md", "", b"# Guide\n\n## Install\n\nRun it.\n\n#NotAHeading\n\n# Tail\n")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("section Install", "# Guide\n## Install\n\nRun it.\n\n#NotAHeading"),
        ("section Tail", "# Tail"),
    ]


def test_html_drops_scripts_and_splits_at_headings() -> None:
    doc = extract("handbook.html", "text/html", make.HTML.encode())
    assert doc.kind == "html"
    assert [s.location for s in doc.sections] == [
        "section (start)",
        "section Onboarding",
        "section Accounts",
    ]
    text = "\n".join(s.text for s in doc.sections)
    for hidden in ("secret", "color: red", "Handbook", "enable javascript"):
        assert hidden not in text
    assert doc.sections[0].text == "Welcome to the handbook & guide."
    assert doc.sections[1].text == (
        "Onboarding\nGet a laptop.\nThen get coffee.\n- first item\n- second item"
    )
    assert doc.sections[2].text == "Accounts\nSystem | Owner\nEmail | IT"


def test_html_without_head_or_closing_tags() -> None:
    doc = extract("frag.htm", "", b"<h2>Only <b>bold</b> title<p>para one<p>para two")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("section Only bold title", "Only bold title\npara one\npara two")
    ]


def test_csv_rows_are_grouped_with_row_ranges() -> None:
    doc = extract("people.csv", "text/csv", make.make_csv(120))
    assert doc.kind == "csv"
    assert doc.rows == 120
    assert doc.describe() == "people.csv (120 rows)"
    assert [s.location for s in doc.sections] == ["rows 1-50", "rows 51-100", "rows 101-120"]
    first = doc.sections[0].text.split("\n")
    assert len(first) == 50
    assert first[0] == "id: 1; name: person1; city: Lyon"
    assert first[1] == "id: 2; name: person2; city: Nantes, Loire"  # a quoted comma stays


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiter_is_sniffed(delimiter: str) -> None:
    doc = extract("d.csv", "text/csv", make.make_csv(3, delimiter=delimiter))
    assert doc.sections[0].text.split("\n")[0] == "id: 1; name: person1; city: Lyon"


def test_csv_ragged_blank_and_wide_rows() -> None:
    data = b"a,b,,d\n\n1,2\n,,,\n3,4,5,6,7\n" + b"8,".join([b"x" * 300] * 4) + b"\n"
    doc = extract("r.csv", "", data)
    lines = doc.sections[0].text.split("\n")
    assert lines[:2] == ["a: 1; b: 2", "a: 3; b: 4; column 3: 5; d: 6; column 5: 7"]
    assert doc.rows == 3
    wide = make.make_csv(40, columns=[f"col{i}" for i in range(12)])
    doc = extract("wide.csv", "", wide)
    assert len(doc.sections) > 1  # sections also end by size, so locations stay tight
    ranges = [s.location.removeprefix("rows ").split("-") for s in doc.sections]
    assert ranges[0][0] == "1" and ranges[-1][1] == "40"
    assert all(int(b[0]) == int(a[1]) + 1 for a, b in itertools.pairwise(ranges))
    assert all(len(s.text) < 2500 for s in doc.sections)
    assert extract("one.csv", "", b"h\nv\n").sections[0].location == "row 1"


def test_csv_with_only_a_header_is_empty() -> None:
    error = rejected("head.csv", "text/csv", b"a,b,c\n")
    assert isinstance(error, EmptyFile)
    assert "header row but no data rows" in error.user_message


def test_unparseable_csv_is_corrupt() -> None:
    data = b'a,b\n1,"' + b"x" * 200_000 + b'"\n'  # over the csv module's field limit
    error = rejected("big.csv", "text/csv", data)
    assert isinstance(error, CorruptFile)
    assert "not valid CSV" in error.user_message
    assert_one_line_for_the_person(error, "big.csv")


# -- Word --------------------------------------------------------------------------------------


def test_docx_sections_follow_heading_styles_and_keep_tables() -> None:
    doc = extract("report.docx", DOCX, make.make_docx())
    assert doc.kind == "docx"
    assert [s.location for s in doc.sections] == [
        "section (start)",
        "section Quarterly Report",
        "section Regional Results",
        "section Outlook",
    ]
    assert doc.sections[2].text == (
        "Regional Results\nThe north region led the growth.\nRegion | Revenue\nNorth | 120\n"
        "South | 95"
    )
    assert doc.describe() == "report.docx (4 sections)"


def test_docx_merged_cells_are_read_once() -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Merged header"
    for c, value in enumerate(("a", "b", "c")):
        table.cell(1, c).text = value
    out = io.BytesIO()
    document.save(out)
    doc = extract("m.docx", DOCX, out.getvalue())
    assert doc.sections[0].text == "Merged header\na | b | c"


def test_docx_decompression_bomb_is_refused_before_opening() -> None:
    error = rejected("bomb.docx", DOCX, make.make_docx_bomb(50))
    assert isinstance(error, DecompressionBomb)
    assert "zip bomb" in error.user_message
    assert_one_line_for_the_person(error, "bomb.docx")


def test_docx_with_too_much_or_too_many_inside_is_a_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    many = make.make_zip({f"word/part{i}.xml": b"<x/>" for i in range(2001)})
    assert isinstance(rejected("many.docx", DOCX, many), DecompressionBomb)
    monkeypatch.setattr(extract_module, "MAX_DOCX_UNCOMPRESSED_BYTES", 100_000)
    big = make.make_zip({"word/document.xml": random.Random(1).randbytes(150_000)})
    assert isinstance(rejected("big.docx", DOCX, big), DecompressionBomb)


@pytest.mark.parametrize(
    ("make_data", "kind"),
    [
        (lambda: b"PK\x03\x04" + b"not really a zip" * 10, CorruptFile),
        (lambda: make.make_zip({"[Content_Types].xml": b"<Types/>"}), CorruptFile),
        (lambda: make.truncate(make.make_docx(), 0.7), CorruptFile),
        (lambda: make.make_zip({"xl/workbook.xml": b"<workbook/>"}), UnsupportedFileType),
        (lambda: b"just text named docx", CorruptFile),
        (lambda: _docx_with_document_xml(b"<w:document><unclosed"), CorruptFile),
    ],
)
def test_damaged_docx(make_data: Callable[[], bytes], kind: type[FileRejected]) -> None:
    error = rejected("memo.docx", DOCX, make_data())
    assert type(error) is kind
    assert_one_line_for_the_person(error, "memo.docx")


def _docx_with_document_xml(xml: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(make.make_docx()))
    members = {info.filename: source.read(info) for info in source.infolist()}
    members["word/document.xml"] = xml
    return make.make_zip(members)


def test_docx_with_no_text_is_empty() -> None:
    import docx

    out = io.BytesIO()
    docx.Document().save(out)
    error = rejected("blank.docx", DOCX, out.getvalue())
    assert isinstance(error, EmptyFile)


# -- every refusal, one line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("a.pdf", lambda: b"%PDF" + b"0" * 40, FileTooLarge, {"max_bytes": 10}),
        ("a.pdf", lambda: b"", EmptyFile, {}),
        ("a.pdf", make.make_encrypted_pdf, EncryptedFile, {}),
        ("a.pdf", lambda: make.truncate(make.make_pdf(["x"])), CorruptFile, {}),
        ("a.pdf", make.make_scanned_pdf, NoTextLayer, {}),
        ("a.xyz", lambda: b"data", UnsupportedFileType, {}),
        ("a.docx", lambda: make.make_docx_bomb(20), DecompressionBomb, {}),
        ("a.docx", lambda: b"PK\x03\x04junk", CorruptFile, {}),
    ],
    ids=lambda case: case[2].__name__,
)
def test_every_refusal_is_one_line_naming_the_file(
    case: tuple[str, Callable[[], bytes], type[FileRejected], dict[str, int]],
) -> None:
    name, make_data, kind, kwargs = case
    error = rejected(name, "", make_data(), **kwargs)
    assert type(error) is kind
    assert error.cause == kind.cause
    assert_one_line_for_the_person(error, name)
    assert str(error) and name not in str(error)  # the log detail, without the file's name


def test_result_sections_are_never_empty() -> None:
    docs: list[ExtractedDocument] = [
        extract("a.pdf", PDF, make.make_pdf(["x", "", " ", "y"])),
        extract("a.md", "", make.MARKDOWN.encode()),
        extract("a.html", "", make.HTML.encode()),
        extract("a.csv", "", make.make_csv(7)),
        extract("a.docx", "", make.make_docx()),
    ]
    for doc in docs:
        assert doc.sections
        assert all(s.text and s.text == s.text.strip() and s.location for s in doc.sections)
