"""Book fixtures for the C++ book readers (tests/core/test_book.cpp), written by real libraries:
EPUB archives by Python's zipfile, PDF files by fpdf2.

  book_fixtures.py OUTDIR    writes the books below into OUTDIR, plus OUTDIR/expected.json:
                             {file: {"title", "author", "chapters": [{"title", "starts_with",
                             "page"}], "pages": ["text on page 1", ...], "absent": [...]}}

"starts_with" is the first text of each chapter as a reader should give it (whitespace collapsed);
"absent" lists strings that must not reach the text (scripts, styles, markup).
"""
import json
import sys
import zipfile
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import EncryptionMethod

CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="{opf}" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""


def write_epub(path, files, opf_name="OEBPS/content.opf", container=True):
    """An EPUB as the specification lays it out: an uncompressed 'mimetype' entry first."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip",
                         compress_type=zipfile.ZIP_STORED)
        if container:
            archive.writestr("META-INF/container.xml", CONTAINER.format(opf=opf_name),
                             compress_type=zipfile.ZIP_DEFLATED)
        for name, text in files.items():
            archive.writestr(name, text, compress_type=zipfile.ZIP_DEFLATED)


def manifest_item(id, href, media, props):
    properties = f' properties="{props}"' if props else ""
    return f'    <item id="{id}" href="{href}" media-type="{media}"{properties}/>'


def opf(title, author, items, spine, toc_id=None, version="3.0"):
    manifest = "\n".join(manifest_item(*item) for item in items)
    itemrefs = "\n".join(f'    <itemref idref="{id}"/>' for id in spine)
    toc = f' toc="{toc_id}"' if toc_id else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="{version}" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:12345</dc:identifier>
    <dc:title>{title}</dc:title>
    <dc:creator>{author}</dc:creator>
    <dc:language>en</dc:language>
  </metadata>
  <manifest>
{manifest}
  </manifest>
  <spine{toc}>
{itemrefs}
  </spine>
</package>
"""


def xhtml(title, body, doctype="<!DOCTYPE html>"):
    return f"""<?xml version="1.0" encoding="UTF-8"?>
{doctype}
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>{title}</title>
<style>p {{ color: red; }}</style>
<script>var hidden = "SCRIPT_TEXT";</script>
</head>
<body>
{body}
</body>
</html>
"""


def epub3_files():
    nav = xhtml("Contents", """<nav epub:type="toc"><h1>Contents</h1><ol>
  <li><a href="text/one.xhtml">The Harbour</a></li>
  <li><a href="text/chapter%20two.xhtml">The Storm</a>
    <ol><li><a href="text/chapter%20two.xhtml#wreck">The Wreck</a></li></ol></li>
  <li><a href="text/three.xhtml">The Return</a></li>
</ol></nav>
<nav epub:type="landmarks"><ol><li><a href="text/three.xhtml">Not a chapter</a></li></ol></nav>""")
    one = xhtml("One", """<h1>Chapter One</h1>
<p>The keeper climbed   the stairs
   every evening.</p>
<p>Fish &amp; chips&#160;&#8212; a <em>fine</em> supper.<br/>Second line.</p>
<ul><li>first item</li><li>second item</li></ul>""")
    two = xhtml("Two", """<h1>Chapter Two</h1>
<p>The storm came from the north.</p>
<div><p>Waves broke white against the rocks.</p></div>
<h2 id="wreck">The wreck</h2>
<p>A ship ran aground at dawn.</p>""")
    three = xhtml("Three", """<section><h1>Chapter Three</h1>
<p>She came home in spring.</p>
<pre>  kept   as
  written</pre></section>""")
    items = [
        ("c2", "text/chapter%20two.xhtml", "application/xhtml+xml", ""),
        ("nav", "nav.xhtml", "application/xhtml+xml", "nav"),
        ("c1", "text/one.xhtml", "application/xhtml+xml", ""),
        ("c3", "text/three.xhtml", "application/xhtml+xml", ""),
        ("css", "style.css", "text/css", ""),
    ]
    return {
        "OEBPS/content.opf": opf("The Lighthouse", "Maren Holt", items, ["c1", "c2", "c3"]),
        "OEBPS/nav.xhtml": nav,
        "OEBPS/text/one.xhtml": one,
        "OEBPS/text/chapter two.xhtml": two,
        "OEBPS/text/three.xhtml": three,
        "OEBPS/style.css": "p { color: blue; }",
    }


XHTML11 = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
           '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">')


def epub2_files():
    ncx = """<?xml version="1.0" encoding="UTF-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
  <head/><docTitle><text>Tides</text></docTitle>
  <navMap>
    <navPoint id="p1" playOrder="1"><navLabel><text>Low Tide</text></navLabel><content src="a.html"/></navPoint>
    <navPoint id="p2" playOrder="2"><navLabel><text>High Tide</text></navLabel><content src="b.html"/></navPoint>
  </navMap>
</ncx>
"""
    a = xhtml("A", "<h2>Low</h2><p>The water&nbsp;went out &mdash; far out.</p>", XHTML11)
    b = xhtml("B", "<h2>High</h2><p>The water came back.</p>", XHTML11)
    items = [("a", "a.html", "application/xhtml+xml", ""), ("b", "b.html", "application/xhtml+xml", ""),
             ("ncx", "toc.ncx", "application/x-dtbncx+xml", "")]
    return {
        "content.opf": opf("Tides", "A. Sailor", items, ["a", "b"], toc_id="ncx", version="2.0"),
        "toc.ncx": ncx,
        "a.html": a,
        "b.html": b,
    }


def epub_headings_files():
    first = xhtml("Cover", "<p>A book about gulls.</p>")
    second = xhtml("Second", "<h2>Gulls at Sea</h2><p>They follow the ships.</p>")
    third = xhtml("Gulls Ashore", "<p>They sit on the rocks.</p>")
    items = [("f", "f.xhtml", "application/xhtml+xml", ""), ("s", "s.xhtml", "application/xhtml+xml", ""),
             ("t", "t.xhtml", "application/xhtml+xml", "")]
    return {
        "OPS/package.opf": opf("Gulls", "", items, ["f", "s", "t"]),
        "OPS/f.xhtml": first,
        "OPS/s.xhtml": second,
        "OPS/t.xhtml": third,
    }


def write_epubs(out, expected):
    write_epub(out / "epub3.epub", epub3_files())
    expected["epub3.epub"] = {
        "title": "The Lighthouse",
        "author": "Maren Holt",
        "chapters": [
            {"title": "The Harbour", "starts_with": "Chapter One\n\nThe keeper climbed the stairs every evening."},
            {"title": "The Storm", "starts_with": "Chapter Two\n\nThe storm came from the north."},
            {"title": "The Wreck", "starts_with": "The wreck\n\nA ship ran aground at dawn."},
            {"title": "The Return", "starts_with": "Chapter Three\n\nShe came home in spring."},
        ],
        "contains": ["Fish & chips\u00a0\u2014 a fine supper.\nSecond line.", "first item\nsecond item",
                     "  kept   as\n  written"],
        "absent": ["SCRIPT_TEXT", "color", "Contents", "<p>", "Not a chapter"],
    }
    write_epub(out / "epub2.epub", epub2_files(), opf_name="content.opf")
    expected["epub2.epub"] = {
        "title": "Tides",
        "author": "A. Sailor",
        "chapters": [
            {"title": "Low Tide", "starts_with": "Low\n\nThe water\u00a0went out \u2014 far out."},
            {"title": "High Tide", "starts_with": "High\n\nThe water came back."},
        ],
        "contains": [],
        "absent": ["SCRIPT_TEXT"],
    }
    write_epub(out / "headings.epub", epub_headings_files(), opf_name="OPS/package.opf")
    expected["headings.epub"] = {
        "title": "Gulls",
        "author": "",
        "chapters": [
            {"title": "Cover", "starts_with": "A book about gulls."},
            {"title": "Gulls at Sea", "starts_with": "Gulls at Sea\n\nThey follow the ships."},
            {"title": "Gulls Ashore", "starts_with": "They sit on the rocks."},
        ],
        "contains": [],
        "absent": [],
    }

    # Broken ones: each must be a clear error naming the file and the problem.
    whole = (out / "epub3.epub").read_bytes()
    (out / "truncated.epub").write_bytes(whole[: len(whole) // 2])
    write_epub(out / "no-container.epub", epub3_files(), container=False)
    files = epub3_files()
    del files["OEBPS/content.opf"]
    write_epub(out / "no-package.epub", files)
    files = epub3_files()
    del files["OEBPS/text/three.xhtml"]
    write_epub(out / "missing-spine-item.epub", files)
    files = epub3_files()
    files["OEBPS/text/one.xhtml"] = files["OEBPS/text/one.xhtml"].replace("</p>", "</div>", 1)
    write_epub(out / "malformed.epub", files)
    files = epub3_files()
    files["OEBPS/content.opf"] = opf("Empty", "", [("c1", "text/one.xhtml", "application/xhtml+xml", "")], [])
    write_epub(out / "empty-spine.epub", files)
    files = epub3_files()
    files["OEBPS/content.opf"] = files["OEBPS/content.opf"].replace("</manifest>", "")
    write_epub(out / "malformed-package.epub", files)
    with zipfile.ZipFile(out / "plain.zip.epub", "w") as archive:
        archive.writestr("notes.txt", "just a zip")


def pdf_page_text(number):
    return f"This is page {number} of the book. The tide turns {number} times."


def write_pdfs(out, expected):
    # Five pages; chapters start at the top of page 1, in the middle of page 3 and on page 5.
    # The outline's second level holds a section; a third-level entry is not a chapter.
    pdf = FPDF()
    pdf.set_title("Harbour Lights")
    pdf.set_author("Jon Brae")
    pdf.set_font("Helvetica", size=12)
    chapters = {1: ("Chapter One: The Harbour", 0, False), 3: ("Chapter Two: The Storm", 0, True),
                4: ("A Calm Night", 1, False), 5: ("Chapter Three: Home", 0, False)}
    for number in range(1, 6):
        pdf.add_page()
        if number in chapters and not chapters[number][2]:
            title, level, _ = chapters[number]
            pdf.start_section(title, level=level)
            pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 8, pdf_page_text(number), new_x="LMARGIN", new_y="NEXT")
        if number in chapters and chapters[number][2]:
            title, level, _ = chapters[number]
            pdf.start_section(title, level=level)
            pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
            pdf.multi_cell(0, 8, "The wind rose.", new_x="LMARGIN", new_y="NEXT")
        if number == 4:
            pdf.start_section("Deep Detail", level=2)
        if number == 5:
            pdf.start_section("Not In The Text", level=1)
    pdf.output(str(out / "outline.pdf"))
    expected["outline.pdf"] = {
        "title": "Harbour Lights",
        "author": "Jon Brae",
        "chapters": [
            {"title": "Chapter One: The Harbour", "starts_with": "Chapter One: The Harbour", "page": 1},
            {"title": "Chapter Two: The Storm", "starts_with": "Chapter Two: The Storm\nThe wind rose.", "page": 3},
            {"title": "A Calm Night", "starts_with": "A Calm Night", "page": 4},
            {"title": "Chapter Three: Home", "starts_with": "Chapter Three: Home", "page": 5},
        ],
        "pages": [pdf_page_text(n) for n in range(1, 6)],
        "contains": [],
        "absent": ["Not In The Text", "Deep Detail"],
    }

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for number in range(1, 3):
        pdf.add_page()
        pdf.multi_cell(0, 8, pdf_page_text(number))
    pdf.output(str(out / "plain.pdf"))
    expected["plain.pdf"] = {"title": "", "author": "", "chapters": [],
                             "pages": [pdf_page_text(n) for n in range(1, 3)], "contains": [], "absent": []}

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Secret text.")
    pdf.set_encryption(owner_password="owner", user_password="reader",
                       encryption_method=EncryptionMethod.RC4)
    pdf.output(str(out / "encrypted.pdf"))

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 50)
    pdf.output(str(out / "no-text.pdf"))

    (out / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + bytes((i * 37 + 11) % 256 for i in range(4000)))
    whole = (out / "outline.pdf").read_bytes()
    (out / "truncated.pdf").write_bytes(whole[: len(whole) // 3])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    write_epubs(out, expected)
    write_pdfs(out, expected)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
