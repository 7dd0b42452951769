"""Prints the README's model table from the registry (or rewrites it in place with --write).

    python tools/model_table.py            # print the table
    python tools/model_table.py --write    # update README.md between the model-table markers
"""

import argparse
import pathlib
import re

import kres

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"
TABLE_HEADER = ("| model | family | architecture | trainable params | GMACs | input | paper |\n"
                "|---|---|---|---:|---:|---|---|")


def table_row(info):
    """One row of the README's model table, from a :func:`kres.model_info` dict."""
    h, w, c = info["input_shape"]
    return (f"| `{info['name']}` | {info['family']} | {info['architecture']} | "
            f"{info['trainable_params']:,} | {info['macs'] / 1e9:.2f} | {h}x{w}x{c} | "
            f"{info['reference'].split(' (')[0]} |")


def table(pattern="*"):
    rows = [table_row(kres.model_info(name)) for name in kres.list_models(pattern)]
    return "\n".join([TABLE_HEADER, *rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="*", help="fnmatch pattern of model names")
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {README.name}")
    args = parser.parse_args()
    text = table(args.pattern)
    if not args.write:
        print(text)
        return
    readme = README.read_text()
    new = re.sub(f"{re.escape(START)}.*?{re.escape(END)}", f"{START}\n{text}\n{END}", readme,
                 flags=re.S)
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(README)
    print(f"wrote {len(text.splitlines()) - 2} rows to {README}")


if __name__ == "__main__":
    main()
