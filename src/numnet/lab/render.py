"""The one rendering layer of numnet.lab: HTML whose every value is escaped, Markdown and text
tables, figures as PNG bytes and data URIs, number formats, the pages' stylesheet, and a small
document model (:class:`Doc` of blocks) written once and serialized by :func:`to_html` and
:func:`to_markdown`.

HTML: :func:`html` is ``str.format`` for markup. Every value it interpolates is formatted (its
format spec applied) and then escaped, unless it is already :class:`Html` -- markup made by
:func:`html`, :func:`join` or :func:`escape`. So ``html("<td>{}</td>", name)`` is safe whatever
``name`` holds, and fragments compose: ``html("<tr>{}</tr>", join(cells))``.
"""

from __future__ import annotations

import base64
import html as _html
import io
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Html(str):
    """Markup that is safe as it is: :func:`html` inserts it without escaping."""

    __slots__ = ()


def escape(value: Any) -> Html:
    """``value`` as markup: escaped text (quotes included), or itself if already :class:`Html`."""
    return value if isinstance(value, Html) else Html(_html.escape(str(value)))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        text = format(value, format_spec)
        return text if isinstance(value, Html) else _html.escape(text)


_FORMATTER = _EscapingFormatter()


def html(template: str, /, *args: Any, **values: Any) -> Html:
    """``template.format(*args, **values)`` with every value escaped after formatting (the
    template itself is trusted markup; :class:`Html` values go in as they are)."""
    return Html(_FORMATTER.vformat(template, args, values))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    """The parts (escaped unless :class:`Html`) joined by ``sep`` (trusted markup)."""
    return Html(sep.join(escape(p) for p in parts))


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI: the figure inside the page, nothing fetched."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
<header><h1>{heading}</h1>{header}</header>
<main>
{sections}
</main>
<footer>{footer}</footer>
</body></html>
"""

#: The stylesheet of every numnet page (report.html, compare.html).
CSS = """
:root { --ink:#1d2330; --muted:#5f6b7a; --line:#e3e7ee; --bg:#f6f8fb; --card:#ffffff;
        --accent:#2f5fb3; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color:var(--ink); background:var(--bg); }
header { background:linear-gradient(120deg,#1d3c78,#2f5fb3); color:#fff; padding:28px 40px; }
header h1 { margin:0 0 6px; font-size:26px; font-weight:650; }
header p { margin:2px 0; opacity:.9; }
header code { background:rgba(255,255,255,.15); padding:1px 6px; border-radius:4px; }
.quick { display:inline-block; background:#ffcc00; color:#332b00; font-weight:700;
         padding:2px 10px; border-radius:12px; margin-left:8px; font-size:14px; }
main { max-width:1480px; margin:0 auto; padding:24px 40px 60px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:20px 24px; margin:0 0 22px; box-shadow:0 1px 2px rgba(20,30,50,.04); }
h2 { margin:0 0 14px; font-size:20px; }
h3 { margin:0; font-size:16px; }
.muted { color:var(--muted); }
table.summary { border-collapse:separate; border-spacing:0; margin:6px 0 10px; }
table.summary th, table.summary td { padding:10px 18px; text-align:center;
  border-bottom:1px solid var(--line); }
table.summary th { background:#eef2f9; font-weight:600; }
table.summary td .acc { font-size:20px; font-weight:650; font-variant-numeric:tabular-nums; }
table.summary td .sub { display:block; font-size:12px; color:var(--muted); }
table.summary td.best .acc { color:#1b5e20; }
table.summary td.diverged { background:#fde0e0; color:#c62828; }
table.summary td.missing { color:#aaa; }
.badge { display:inline-block; padding:1px 9px; border-radius:11px; font-size:12px;
         font-weight:600; margin:2px 3px 2px 0; white-space:nowrap; }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(330px,1fr)); gap:16px; }
.card { border:1px solid var(--line); border-radius:9px; padding:14px 16px; background:#fff; }
.card.diverged { border-color:#e9a3a3; background:#fff8f8; }
.card .head { display:flex; justify-content:space-between; align-items:baseline; gap:8px; }
.card table.kv { margin:10px 0; font-variant-numeric:tabular-nums; }
.card ul { margin:8px 0 0; padding-left:18px; font-size:13px; }
.card svg { display:block; margin-top:8px; }
.legend { font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:14px; height:3px; vertical-align:middle;
            margin:0 4px 0 8px; }
table.rules td { padding:4px 10px; vertical-align:top; border-bottom:1px solid var(--line); }
table.kv td { padding:3px 12px 3px 0; vertical-align:top; font-size:13px; }
table.kv td:first-child { color:var(--muted); }
pre { background:#0f1624; color:#d6e2ff; padding:14px 16px; border-radius:8px;
      overflow-x:auto; font-size:12.5px; line-height:1.45; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px; }
"""


# ------------------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Span:
    """Inline text in a style: ``code``, ``b`` (bold), ``badge`` (``style``: its CSS colours;
    bold in Markdown), ``sub`` (a line of its own below, in a table cell) or any other CSS class
    of a ``<span>`` (plain in Markdown)."""

    kind: str
    text: str
    style: str = ""


#: Inline content: a string, a :class:`Span`, or a sequence of them.
Text = str | Span | Sequence[str | Span]


@dataclass
class P:
    text: Text
    muted: bool = False


@dataclass
class Bullets:
    """A list; an item that is itself :class:`Bullets` is a sub-list of the item before."""

    items: list[Any]


@dataclass
class Cell:
    """A table cell with a CSS class."""

    text: Text
    cls: str = ""


@dataclass
class Table:
    """Rows of cells (:data:`Text` or :class:`Cell`). With a ``header`` the first column holds
    row headings when ``header[0]`` is empty; without one it is a key/value list (a bullet
    list ``key: value`` in Markdown)."""

    rows: Sequence[Sequence[Any]]
    header: list[str] | None = None
    cls: str = ""


@dataclass
class Figure:
    """A PNG by its file name: embedded in HTML (click to zoom with ``zoom``, the id of its
    checkbox; left out when the page has no such image), linked in Markdown; ``cls``: the
    ``<figure>``'s classes."""

    name: str
    alt: str
    caption: str = ""
    cls: str = ""
    zoom: str = ""


@dataclass
class Pre:
    text: str
    lang: str = ""


@dataclass
class Raw:
    """Markup for the HTML only (an inline SVG); Markdown leaves it out."""

    html: Html


@dataclass
class Box:
    """A part of a section (``<div class=cls>``): titled (``<h3>``, ``aside`` beside the
    title; a run's card, a model's comparison) or not (the cards side by side)."""

    title: Text
    blocks: list[Any]
    cls: str = ""
    id: str = ""
    aside: Text = ""


@dataclass
class Section:
    title: str
    blocks: list[Any]
    id: str = ""
    cls: str = ""


@dataclass
class Doc:
    """A page: ``title`` (Markdown's heading and the HTML title), ``heading`` (HTML's
    ``<h1>``, default the title), ``header`` blocks, sections, a footer line and the CSS."""

    title: str
    header: list[Any]
    sections: list[Any]
    footer: Text = ""
    css: str = ""
    heading: Text = ""


def _inline_html(text: Text) -> Html:
    if isinstance(text, str):
        return escape(text)
    if isinstance(text, Span):
        if text.kind in ("code", "b"):
            return html(f"<{text.kind}>{{}}</{text.kind}>", text.text)
        style = html(' style="{}"', text.style) if text.style else ""
        return html('<span class="{}"{}>{}</span>', text.kind, style, text.text)
    return join(_inline_html(t) for t in text)


def _inline_md(text: Text) -> str:
    if isinstance(text, str):
        return text
    if isinstance(text, Span):
        return {"code": "`{}`", "b": "**{}**", "badge": "**{}**",
                "sub": "<br>{}"}.get(text.kind, "{}").format(text.text)
    return "".join(_inline_md(t) for t in text)


def _cell_html(tag: str, cell: Any) -> Html:
    cls = html(' class="{}"', cell.cls) if isinstance(cell, Cell) and cell.cls else ""
    return html("<{}{}>{}</{}>", Html(tag), cls,
                _inline_html(cell.text if isinstance(cell, Cell) else cell), Html(tag))


def _attrs(cls: str, id: str = "") -> Html:
    return html("{}{}", html(' class="{}"', cls) if cls else "", html(' id="{}"', id) if id else "")


def block_html(b: Any, images: Mapping[str, bytes]) -> Html:
    """One block as HTML (see the block classes); figures embedded from ``images``."""
    if isinstance(b, P):
        return html("<p{}>{}</p>", Html(' class="muted"') if b.muted else "",
                    _inline_html(b.text))
    if isinstance(b, Bullets):
        items: list[Html] = []
        for t in b.items:
            if isinstance(t, Bullets):  # inside the item before
                items[-1] = html("{}{}</li>", Html(items[-1].removesuffix("</li>")),
                                 block_html(t, images))
            else:
                items.append(html("<li>{}</li>", _inline_html(t)))
        return html("<ul>{}</ul>", join(items))
    if isinstance(b, Table):
        head = ""
        if b.header is not None:
            head = html("<thead><tr>{}</tr></thead>", join(_cell_html("th", c) for c in b.header))
        rows = join(html("<tr>{}</tr>", join(
            _cell_html("th" if k == 0 and b.header and not b.header[0] else "td", c)
            for k, c in enumerate(row))) for row in b.rows)
        return html('<table class="{}">{}<tbody>{}</tbody></table>', b.cls, head, rows)
    if isinstance(b, Figure):
        if b.name not in images:
            return Html("")
        image = html('<img src="{}" alt="{}">', data_uri(images[b.name]), b.alt)
        if b.zoom:  # a hidden checkbox and its label: no script, no second copy of the image
            image = html('<input type="checkbox" class="zoom" id="{}"><label class="zoom" '
                         'for="{}">{}</label>', b.zoom, b.zoom, image)
        caption = html("<figcaption>{}</figcaption>", b.caption) if b.caption else ""
        return html("<figure{}>{}{}</figure>", _attrs(b.cls), image, caption)
    if isinstance(b, Pre):
        return html("<pre>{}</pre>", b.text)
    if isinstance(b, Raw):
        return b.html
    if isinstance(b, Box):
        head = html('<div class="head"><h3>{}</h3><div>{}</div></div>', _inline_html(b.title),
                    _inline_html(b.aside)) if b.title else ""
        return html("<div{}>{}{}</div>", _attrs(b.cls, b.id), head,
                    join(block_html(x, images) for x in b.blocks))
    return html("<section{}><h2>{}</h2>{}</section>", _attrs(b.cls, b.id), b.title,
                join(block_html(x, images) for x in b.blocks))


def to_html(doc: Doc, images: Mapping[str, bytes]) -> str:
    """The self-contained page: figures embedded from ``images`` (``{file name: PNG}``)."""
    return html(PAGE, title=doc.title, css=Html(doc.css),
                heading=_inline_html(doc.heading or doc.title),
                header=join(block_html(b, images) for b in doc.header),
                sections=join((block_html(b, images) for b in doc.sections), "\n"),
                footer=_inline_html(doc.footer))


def _block_md(b: Any) -> list[str]:
    """One block as Markdown lines, each block followed by an empty line."""
    if isinstance(b, P):
        return [_inline_md(b.text), ""]
    if isinstance(b, Bullets):  # a sub-list indented under its item
        return [*(line for t in b.items for line in (
            [f"  {x}" for x in _block_md(t)[:-1]] if isinstance(t, Bullets)
            else [f"- {_inline_md(t)}"])), ""]
    if isinstance(b, Table):
        cells = [[_inline_md(c.text if isinstance(c, Cell) else c) for c in row]
                 for row in b.rows]
        if b.header is None:
            return [*(f"- {': '.join(row)}" for row in cells), ""]
        return ["|" + "".join(f" {c} |" if c else " |" for c in b.header),  # "| |": a corner
                "|" + "---|" * len(b.header), *("| " + " | ".join(row) + " |" for row in cells),
                ""]
    if isinstance(b, Figure):
        return [f"![{b.alt}]({b.name})", "", *([b.caption, ""] if b.caption else [])]
    if isinstance(b, Pre):
        return [f"```{b.lang}", b.text.rstrip(), "```", ""]
    if isinstance(b, Raw):
        return []
    if isinstance(b, Box):
        aside = f": {_inline_md(b.aside)}" if b.aside else ""
        head = [f"### {_inline_md(b.title)}{aside}", ""] if b.title else []
        return [*head, *(line for x in b.blocks for line in _block_md(x))]
    return [f"## {b.title}", "", *(line for x in b.blocks for line in _block_md(x))]


def to_markdown(doc: Doc) -> str:
    """The page as Markdown, its figures linked by file name."""
    lines = [f"# {doc.title}", ""]
    for b in (*doc.header, *doc.sections):
        lines += _block_md(b)
    if doc.footer:
        lines += [_inline_md(doc.footer), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ text


def text_table(rows: Sequence[Sequence[str]], rstrip: bool = False) -> str:
    """Rows (header first) as left-aligned text columns two spaces apart, for terminals; a
    cell of several lines (``"0.9861\nover-fitting"``) makes its row as many lines tall.
    ``rstrip`` drops the padding at the end of each line."""
    split = [[cell.split("\n") for cell in row] for row in rows]
    widths = [max(len(line) for row in split for line in row[c]) for c in range(len(rows[0]))]
    lines = []
    for row in split:
        for k in range(max(len(cell) for cell in row)):
            line = "  ".join((cell[k] if k < len(cell) else "").ljust(w)
                             for cell, w in zip(row, widths, strict=True))
            lines.append(line.rstrip() if rstrip else line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------ numbers


def fmt_acc(x: float | None) -> str:
    """An accuracy with 4 decimals, or a dash when there is none."""
    return "—" if x is None else f"{x:.4f}"


def fmt_time(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


# ------------------------------------------------------------------------------ figures


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes at ``dpi`` (pixel size = inches x dpi, no cropping)."""
    # Every text is drawn as it reads: names and ids come from results.json, where a "$" is
    # a dollar sign, not matplotlib mathtext (an odd number of them would not even parse).
    for text in fig.findobj(lambda artist: hasattr(artist, "set_parse_math")):
        text.set_parse_math(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
