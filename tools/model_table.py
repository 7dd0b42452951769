"""Prints the README's model table from the registry (or rewrites it in place with --write).

    python tools/model_table.py            # print the table
    python tools/model_table.py --write    # update README.md between the model-table markers
"""

import argparse
import pathlib
import re

import kres
from kres.analysis import TABLE_HEADER, table_row

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"


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
