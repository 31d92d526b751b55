"""Tables as text: the one printer behind `eval`, `score`, `plan`, `inspect`, the demo and the reports."""

from __future__ import annotations


def format_table(header: list[str] | None, rows: list[list], *, align: str = "", style: str = "text") -> str:
    """Rows of cells (any values, shown with str) as aligned text or a Markdown table.

    `align` holds one character per column, "l" or "r" (default: left); `style` is "text" (columns
    separated by two spaces) or "markdown".
    """
    cells = [[str(c) for c in r] for r in rows]
    if style == "markdown":
        head = header or [""] * (len(cells[0]) if cells else 0)
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in cells])
    table = ([list(header)] if header else []) + cells
    widths = [max(len(r[j]) for r in table) for j in range(len(table[0]))] if table else []
    def line(r):
        return "  ".join(c.rjust(w) if align[j : j + 1] == "r" else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
    return "\n".join(line(r) for r in table)
