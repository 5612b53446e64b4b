"""Makes real files in code for the extraction tests: no binary fixtures in the repo.

The PDFs are written by hand (objects, a Helvetica font, one content stream per page, an xref
table with real byte offsets), so pypdf parses them as it would any producer's and extracts the
text back. Everything else is made with the standard library or the library the product reads
it with (python-docx).
"""

from __future__ import annotations

import io
import textwrap
import zipfile
import zlib
from collections.abc import Iterator, Sequence

from pypdf import PdfReader, PdfWriter

# -- PDF -------------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    """A PDF literal string in WinAnsi (Latin-1 is close enough for tests)."""
    raw = text.encode("latin-1", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _text_stream(text: str, *, width: int = 90) -> bytes:
    """A content stream showing ``text`` line by line (wrapped at ``width`` characters)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    ops = [b"BT", b"/F1 11 Tf", b"14 TL", b"72 760 Td"]
    for line in lines:
        if line:
            ops.append(_pdf_string(line) + b" Tj")
        ops.append(b"T*")
    ops.append(b"ET")
    return b"\n".join(ops)


_IMAGE_STREAM = b"q 468 0 0 648 72 72 cm /Im1 Do Q"


def _assemble(objects: Sequence[bytes]) -> bytes:
    """Objects numbered from 1, an xref table with their offsets, the trailer. Object 1 is the
    catalog."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _stream(content: bytes, extra: bytes = b"", *, compress: bool = False) -> bytes:
    if compress:
        content = zlib.compress(content)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(content), extra) + content + b"\nendstream"


def make_pdf(pages: Sequence[str], *, compress: bool = False) -> bytes:
    """A PDF with one page per item, each showing that text (an empty string makes a page with
    no text). pypdf extracts the text back line by line."""
    # 1 catalog, 2 pages, 3 font, 4 image (for scanned pages), then per page: page, content.
    kids = b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(len(pages)))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        _stream(
            b"\x80\x40" * 32,
            b" /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray"
            b" /BitsPerComponent 8",
        ),
    ]
    for i, text in enumerate(pages):
        content_ref = 6 + 2 * i
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >>"
            b" /Contents %d 0 R >>" % content_ref
        )
        objects.append(_stream(_text_stream(text), compress=compress))
    return _assemble(objects)


def make_scanned_pdf(page_count: int = 3) -> bytes:
    """Pages that only paint an image: what a scanner makes, with no text layer."""
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(page_count))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, page_count),
        _stream(
            b"\x80\x40" * 32,
            b" /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray"
            b" /BitsPerComponent 8",
        ),
    ]
    for i in range(page_count):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /XObject << /Im1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(_stream(_IMAGE_STREAM))
    return _assemble(objects)


def make_encrypted_pdf(
    pages: Sequence[str] = ("Secret plans.",),
    *,
    user_password: str = "hunter2",  # noqa: S107 - a test file's password
    algorithm: str = "AES-128",
) -> bytes:
    """The text PDF, encrypted by pypdf. ``user_password=""`` makes one that opens without a
    password (only an owner password is set), as many "protected" PDFs are."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password=user_password, owner_password="owner-pw", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def truncate(data: bytes, fraction: float = 0.5) -> bytes:
    """The first part of a file, as an interrupted download leaves it."""
    return data[: int(len(data) * fraction)]


# -- text formats ----------------------------------------------------------------------------


def make_csv(
    rows: int, *, columns: Sequence[str] = ("id", "name", "city"), delimiter: str = ","
) -> bytes:
    lines = [delimiter.join(columns)]
    cities = ("Paris", "Lyon", "Nantes, Loire")  # one needs quoting
    for r in range(1, rows + 1):
        values = [str(r), f"person{r}", cities[r % 3]][: len(columns)]
        values += [f"v{r}-{c}" for c in range(len(values), len(columns))]
        lines.append(delimiter.join(f'"{v}"' if delimiter in v else v for v in values))
    return ("\n".join(lines) + "\n").encode()


MARKDOWN = """\
Intro line before any heading.

# Installation

Run the installer. It takes a minute.

```
# not a heading: inside a code fence
pip install thing
```

## Configuration ##

Set `TOKEN` in the environment.

# Usage

Ask the bot a question.
"""

HTML = """\
<!doctype html>
<html><head><title>Handbook</title>
<style>body { color: red }</style>
<script>var secret = "do not index";</script></head>
<body>
<p>Welcome to the handbook &amp; guide.</p>
<h1>Onboarding</h1>
<p>Get a laptop.<br>Then get coffee.</p>
<ul><li>first item</li><li>second item</li></ul>
<h2>Accounts</h2>
<table><tr><th>System</th><th>Owner</th></tr><tr><td>Email</td><td>IT</td></tr></table>
<noscript>enable javascript</noscript>
</body></html>
"""


# -- DOCX ------------------------------------------------------------------------------------


def make_docx() -> bytes:
    """A Word document with a title, headings, paragraphs and a table, made by python-docx."""
    import docx  # the product's own reader library

    document = docx.Document()
    document.add_paragraph("Preface text before any heading.")
    document.add_heading("Quarterly Report", level=0)  # style "Title"
    document.add_paragraph("Revenue grew in every region.")
    document.add_heading("Regional Results", level=1)
    document.add_paragraph("The north region led the growth.")
    table = document.add_table(rows=3, cols=2)
    for r, (region, amount) in enumerate(
        (("Region", "Revenue"), ("North", "120"), ("South", "95"))
    ):
        table.cell(r, 0).text = region
        table.cell(r, 1).text = amount
    document.add_heading("Outlook", level=2)
    document.add_paragraph("We expect steady demand.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _zeros(total: int, block: int = 1 << 20) -> Iterator[bytes]:
    while total > 0:
        yield b"\0" * min(block, total)
        total -= block


def make_docx_bomb(inflated_mb: int = 50) -> bytes:
    """A zip that looks like a .docx and holds one member that inflates ``inflated_mb`` MB of
    zeros from about 1/1000 of that: written block by block, never held whole in memory."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        with archive.open("word/media/padding.bin", "w", force_zip64=True) as member:
            for block in _zeros(inflated_mb << 20):
                member.write(block)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()
