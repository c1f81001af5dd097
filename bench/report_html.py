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
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8rem 0 1.4rem; font-size: 0.82rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 0.2rem; border-radius: 3px; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
nav ul { columns: 2; }
"""

_IMAGE_SOURCE = re.compile(r'src="(figures/[A-Za-z0-9_.-]+\.png)"')


def render_html(markdown_text: str, out_dir: Path, title: str = "twinbench results") -> str:
    """Render `markdown_text` (the report's README.md) as a standalone page; images under out_dir are inlined."""
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = parser.render(markdown_text)
    body = _IMAGE_SOURCE.sub(lambda match: f'src="{_data_uri(Path(out_dir) / match.group(1))}"', body)
    headings = []

    def anchor(match: re.Match) -> str:
        headings.append((f"section-{len(headings) + 1}", match.group(1)))
        return f'<h2 id="{headings[-1][0]}">{match.group(1)}</h2>'

    body = re.sub(r"<h2>(.*?)</h2>", anchor, body)
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
