"""Execute the book's notebooks and render them as a static HTML book, offline.

    python book/_tools/build.py [--jobs 2] [--only NAME ...] [--no-html]

1. Executes every chapter listed in ``book/_toc.txt`` with nbclient (in parallel,
   one kernel per job, working directory ``book/``) into ``book/_build/executed/``.
   ``NUMBANET_CI=1`` in the environment selects the chapters' small settings.
2. Renders each executed notebook to ``book/_build/html/<name>.html`` with
   nbconvert (template ``_tools/templates/book``: code cells tagged ``answers`` are
   shown in closed ``<details>``), plus ``index.html`` with the table of contents and prev/next links.
   Math is typeset by a local MathJax 2 copy (installed once from the npm
   registry into ``book/_build/npm``), so the pages need no network.

Exits non-zero, naming the notebook and the failing cell, if any chapter fails.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

BOOK = Path(__file__).resolve().parents[1]
BUILD = BOOK / "_build"
MATHJAX_VERSION = "2.7.9"
MATHJAX_QUERY = "?config=TeX-AMS_CHTML-full,Safe"


def chapters() -> list[Path]:
    """The notebooks named in _toc.txt, in order; every listed file must exist."""
    names = [line.strip() for line in (BOOK / "_toc.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    missing = [n for n in names if not (BOOK / n).exists()]
    if missing:
        raise SystemExit(f"book/_toc.txt lists notebooks that do not exist: {missing}")
    return [BOOK / n for n in names]


def execute(path: Path) -> tuple[str, float, str | None]:
    """Run one notebook top to bottom; write the executed copy; return (name, seconds, error)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(BOOK)}})
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc)[-3000:]
    out = BUILD / "executed" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return path.name, time.perf_counter() - start, error


def ensure_mathjax() -> Path:
    """A local MathJax 2 (npm package), installed on first use."""
    root = BUILD / "npm" / "node_modules" / "mathjax"
    if not (root / "MathJax.js").exists():
        (BUILD / "npm").mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix",
                        str(BUILD / "npm"), f"mathjax@{MATHJAX_VERSION}"], check=True)
    return root


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "Untitled"


def nav(prev: tuple[str, str] | None, nxt: tuple[str, str] | None) -> str:
    links = ['<a href="index.html">Contents</a>']
    if prev:
        links.insert(0, f'<a href="{prev[0]}">&larr; {html.escape(prev[1])}</a>')
    if nxt:
        links.append(f'<a href="{nxt[0]}">{html.escape(nxt[1])} &rarr;</a>')
    return ('<nav class="book-nav" style="display:flex;gap:2em;justify-content:center;'
            'padding:0.8em;font-family:sans-serif;border-bottom:1px solid #ddd">' + " | ".join(links) + "</nav>")


def render(executed: list[Path]) -> Path:
    from nbconvert import HTMLExporter

    html_dir = BUILD / "html"
    html_dir.mkdir(parents=True, exist_ok=True)
    mathjax = html_dir / "mathjax"
    if not mathjax.exists():
        shutil.copytree(ensure_mathjax(), mathjax)
    # templates/book: JupyterLab's template with the "check yourself" answers in closed <details>
    exporter = HTMLExporter(template_name="book", extra_template_basedirs=[str(BOOK / "_tools" / "templates")],
                            mathjax_url="mathjax/MathJax.js" + MATHJAX_QUERY, require_js_url="")
    notebooks = [nbformat.read(p, as_version=4) for p in executed]
    titles = [title_of(nb) for nb in notebooks]
    pages = [p.with_suffix(".html").name for p in executed]
    for i, (nb, page) in enumerate(zip(notebooks, pages)):
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": titles[i]}})
        prev = (pages[i - 1], titles[i - 1]) if i > 0 else None
        nxt = (pages[i + 1], titles[i + 1]) if i + 1 < len(pages) else None
        bar = nav(prev, nxt)
        start = body.index(">", body.index("<body")) + 1
        end = body.rindex("</body>")
        body = body[:start] + bar + body[start:end] + bar + body[end:]
        (html_dir / page).write_text(body, encoding="utf-8")
    items = "\n".join(f'<li><a href="{p}">{html.escape(t)}</a></li>' for p, t in zip(pages, titles))
    (html_dir / "index.html").write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>numbanet — Convolutional Networks from Scratch</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:3em auto;line-height:1.5}}</style></head>
<body><h1>Convolutional Networks from Scratch</h1>
<p>The numbanet book: each chapter pairs a derivation with library code and a check that runs.</p>
<h2>Contents</h2><ol start="0">
{items}
</ol></body></html>
""", encoding="utf-8")
    (html_dir / "toc.json").write_text(json.dumps([{"page": p, "title": t} for p, t in zip(pages, titles)]))
    return html_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="execute only these notebook names")
    parser.add_argument("--no-html", action="store_true", help="execute only, do not render")
    args = parser.parse_args()
    paths = chapters()
    if args.only:
        paths = [p for p in paths if p.name in args.only or p.stem in args.only]
    # One Numba thread per kernel when several notebooks run at once on the same cores.
    os.environ.setdefault("NUMBA_NUM_THREADS", "1" if args.jobs > 1 else str(os.cpu_count()))
    failures = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, seconds, error in pool.map(execute, paths):
            print(f"{'FAILED' if error else 'ok':>6s}  {seconds:6.1f} s  {name}", flush=True)
            if error:
                failures.append((name, error))
    for name, error in failures:
        print(f"\n=== {name} failed ===\n{error}", file=sys.stderr)
    if failures:
        return 1
    if not args.no_html:
        out = render([BUILD / "executed" / p.name for p in paths])
        print(f"book written to {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
