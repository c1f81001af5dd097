"""report.html: the Markdown report rendered as one self-contained page, figures embedded as data URIs.

The page loads nothing: no script, no stylesheet and no image from outside the file, so it opens in a
browser without network access.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; line-height: 1.45; }
body > h1, body > h2, body > h3, body > p, body > ul, body > nav { max-width: 72rem; }
table { border-collapse: collapse; margin: 0.8rem 0 1.4rem; font-size: 0.82rem; display: block; overflow-x: auto;
        max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 0.2rem; border-radius: 3px; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
nav ul { columns: 2; }
"""

# A table cell that contains a number, with the report's marks: a sign, thousands commas, an exponent, a
# spread (± 0.003), a unit suffix (%, x) and the flags ! and †. "-" (not measured) counts as a number.
_NUMBER_CELL = re.compile(
    r"-|[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?: ± \d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?)?%?x?(?: ?[!†])*"
)

_IMAGE_SOURCE = re.compile(r'src="(figures/[A-Za-z0-9_.-]+\.png)"')


def render_html(markdown_text: str, out_dir: Path, title: str = "twinbench results") -> str:
    """Render `markdown_text` (the report's README.md) as a standalone page; images under out_dir are inlined."""
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = parser.render(markdown_text)
    body = _IMAGE_SOURCE.sub(lambda match: f'src="{_data_uri(Path(out_dir) / match.group(1))}"', body)
    headings = []

    def anchor(match: re.Match) -> str:
        headings.append((_slug(match.group(1), {slug for slug, _ in headings}), match.group(1)))
        return f'<h2 id="{headings[-1][0]}">{match.group(1)}</h2>'

    body = re.sub(r"<h2>(.*?)</h2>", anchor, body)
    # Numbers align right, text left, as GitHub renders Markdown columns without an alignment.
    body = re.sub(r"<td>(.*?)</td>", _cell, body)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # The page may load nothing from anywhere: images are data URIs, the style is inline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{_after_title(body, _contents(headings))}</body>\n</html>\n"
    )


def _slug(heading_html: str, taken: set[str]) -> str:
    """Make an anchor from a heading's text ("Claim check" -> "claim-check"), unique among `taken`."""
    text = html.unescape(re.sub(r"<[^>]+>", "", heading_html)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "section"
    candidate, number = slug, 2
    while candidate in taken:
        candidate, number = f"{slug}-{number}", number + 1
    return candidate


def _cell(match: re.Match) -> str:
    content = match.group(1)
    text = html.unescape(re.sub(r"<[^>]+>", "", content)).strip()
    return f'<td class="n">{content}</td>' if _NUMBER_CELL.fullmatch(text) else f"<td>{content}</td>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _after_title(body: str, navigation: str) -> str:
    """Put the section list after the page's first heading, or first when it has none."""
    head, found, rest = body.partition("</h1>\n")
    return f"{head}{found}{navigation}{rest}" if found else navigation + body


def _contents(headings: list[tuple[str, str]]) -> str:
    """Link each level-2 heading; markdown-it's commonmark preset gives headings no id of their own."""
    if not headings:
        return ""
    # The heading text is already HTML, escaped by markdown-it.
    items = "".join(f'<li><a href="#{anchor}">{text}</a></li>' for anchor, text in headings)
    return f"<nav><strong>Sections</strong><ul>{items}</ul></nav>\n"
