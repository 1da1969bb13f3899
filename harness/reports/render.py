"""Write a Table as Markdown, LaTeX (booktabs, every special character escaped) and CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from harness.reports.tables import Table

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "§": r"$^{\S}$", "Δ": r"$\Delta$",
                  "–": "--", "−": "$-$", "×": r"$\times$", "<": r"\textless{}", ">": r"\textgreater{}"}
_LATEX_PATTERN = re.compile("|".join(re.escape(k) for k in [*_LATEX_SPECIAL, *_LATEX_SYMBOLS]))


def latex_escape(text: str) -> str:
    """`text` safe inside a LaTeX table: specials escaped, †‡§Δ–−× as math/ASCII, <> as text symbols."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL.get(m.group(0)) or _LATEX_SYMBOLS[m.group(0)], text)


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with its title and footnotes."""
    lines = [f"**{_md_escape(table.title)}**", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_escape(c.display()) for c in row) + " |")
    if table.notes:
        lines.append("")
        lines.extend(f"- {_md_escape(n)}" for n in table.notes)
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    """A standalone `table` environment (booktabs) with caption, label and footnotes."""
    spec = "l" + "r" * (len(table.header) - 1)
    body = [r"\begin{table}[t]", r"\centering", r"\small",
            rf"\caption{{{latex_escape(table.title)}}}",
            rf"\label{{tab:{re.sub(r'[^A-Za-z0-9]+', '-', table.key)}}}",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        if i == len(table.rows) - 1 and row[0].text.lower().startswith(("mean", "average", "task score")):
            body.append(r"\midrule")
        body.append(" & ".join(latex_escape(c.display()) for c in row) + r" \\")
    body += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        body.append(r"\par\smallskip\footnotesize")
        body.append(r"\begin{itemize}")
        body.extend(rf"\item {latex_escape(n)}" for n in table.notes)
        body.append(r"\end{itemize}")
    body.append(r"\end{table}")
    return "\n".join(body) + "\n"


def write_csv(table: Table, path: Path) -> None:
    """The grid as shown (marks kept, so a partial average is never read as complete)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(table.header)
        writer.writerows([c.display() for c in row] for row in table.rows)


def write_long_csv(table: Table, path: Path) -> None:
    """One line per numeric cell: row label, column, value, kind (paper/measured/delta), marks,
    qualifier ("about": the source's own word for an approximate number)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["table", "row", "column", "value", "kind", "marks", "qualifier"])
        for row in table.rows:
            label = "; ".join(c.text for c in row if c.kind == "label" and c.text)
            for column, cell in zip(table.header, row):
                if cell.kind != "label":
                    value = "" if cell.value is None else f"{cell.value:.4f}"
                    writer.writerow([table.key, label, column, value, cell.kind, cell.marks, cell.qualifier])


def write_table(table: Table, folder: Path) -> dict[str, Path]:
    """Write `<key>.md`, `<key>.tex`, `<key>.csv` and `<key>.long.csv` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{table.key}.{ext}" for ext in ("md", "tex", "csv")}
    paths["md"].write_text(to_markdown(table), encoding="utf-8")
    paths["tex"].write_text(to_latex(table), encoding="utf-8")
    write_csv(table, paths["csv"])
    paths["long.csv"] = folder / f"{table.key}.long.csv"
    write_long_csv(table, paths["long.csv"])
    return paths
