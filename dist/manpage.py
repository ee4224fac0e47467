#!/usr/bin/env python3
"""manpage.py — builds a man page from its scdoc template and the README.

The README's tables are the user contract; the man pages take their command
list (certsync(8)) and configuration keys (certsync.conf(5)) from them at
build time, so the two never drift.  A template line @COMMANDS@ or @KEYS@
is replaced by the table as an scdoc list; the result goes through scdoc and
is written gzipped (no timestamp, so builds are reproducible).

usage: manpage.py SCDOC README TEMPLATE OUTPUT.gz
"""

import gzip
import re
import subprocess
import sys

TABLES = {
    "@COMMANDS@": ["command", "what it does"],
    "@KEYS@": ["section", "key", "required", "meaning"],
}


def table(readme, header):
    """The rows (lists of cells) of the README table with this header."""
    lines = readme.splitlines()
    for i, line in enumerate(lines):
        if cells(line) == header:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            if rows:
                return rows
    sys.exit("manpage.py: the README has no table headed | %s |; keep the man pages' "
             "source tables in the README" % " | ".join(header))


def cells(line):
    if not line.startswith("|"):
        return None
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def escape(text):
    return re.sub(r"([\\*_])", r"\\\1", text)


def scd(md):
    """Markdown inline text (code, bold) as scdoc."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", md)):
        if i % 2:
            out.append("*%s*" % escape(part))
        else:
            part = escape(part)
            out.append(re.sub(r"\\\*\\\*(.+?)\\\*\\\*", r"*\1*", part))
    return "".join(out)


def commands(rows):
    out = []
    for command, what in rows:
        out += [scd(command), "\t" + scd(what), ""]
    return out


def keys(rows):
    out = []
    for section, key, required, meaning in rows:
        where = "[%s]" % section
        need = {"yes": "required", "no": "optional"}.get(required, required)
        out += ["*%s* in %s (%s)" % (escape(key), escape(where), scd(need)),
                "\t" + scd(meaning), ""]
    return out


def main():
    scdoc, readme_path, template_path, output = sys.argv[1:5]
    readme = open(readme_path, encoding="utf-8").read()
    page = []
    for line in open(template_path, encoding="utf-8").read().splitlines():
        if line == "@COMMANDS@":
            page += commands(table(readme, TABLES[line]))
        elif line == "@KEYS@":
            page += keys(table(readme, TABLES[line]))
        else:
            page.append(line)
    roff = subprocess.run([scdoc], input="\n".join(page) + "\n", capture_output=True,
                          text=True)
    if roff.returncode != 0:
        sys.exit("manpage.py: scdoc refused %s: %s" % (template_path, roff.stderr.strip()))
    with open(output, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(roff.stdout.encode("utf-8"))


if __name__ == "__main__":
    main()
