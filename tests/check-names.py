#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Stale names: every name docs/design.md (and README.md, the other
docs/*.md, docs/targets/*.md and tests/*/README.md) quotes and every
function or ndm_/NDM_ name a comment in core/, include/, plugin/ or
tools/ gives must exist, so a rename or a move cannot leave the prose
behind.

    tests/check-names.py [--unit-tests DIR]

What is checked, and against what:

  README.md, docs/*.md, docs/targets/*.md and tests/*/README.md, in
  `backticks` (and in design.md's plain ``` blocks, its diagrams):
    - paths (core/..., include/..., plugin/..., tools/..., tests/...,
      docs/...; test-*.sh anywhere under tests/): the file exists (a '*'
      is a glob);
    - ndm_*, NDM_* (a trailing '*' is a prefix), struct ndm_*, name(),
      a->field, struct.field and any other snake_case word: a C
      identifier of the tree (comments stripped, so a stale comment does
      not vouch for itself), a word of a string literal (dm's message and
      feature names), or a word of the build and test scripts;
    - g_test paths (/area/...; a trailing '*' is a prefix), when
      --unit-tests names the directory of the built unit tests: a case
      that `test-<area> -l` lists;
    - "`f` (`core/x.c`)", "`f`, `g` (`core/x.c`...)": a function defined
      in the tree is defined in that file (it did not move away).
  Comments in core/, include/, plugin/, tools/:
    - ndm_*, NDM_*, name(), a->field: a C identifier of the tree;
    - any other snake_case word: the same, or a word of a string literal.
  A name that is the tail of an identifier of ours counts as that one
  (try_get for ndm_budget_try_get, DELAY_REQUEUE for
  NDM_MAPIO_DELAY_REQUEUE).

Names that are not ours are accepted when a system header declares them
(libnbd, nbdkit, GLib, libc) or when tests/check-names.allow lists them
(dm's kernel names and the like; one a line, '#' comments).

Output: one line per stale name, "file:line: `name` not found" (or "not
in FILE (defined in ...)"), and exit status 1 if there is any.
"""

import argparse
import glob
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMENTED_DIRS = ("core", "include", "plugin", "tools")
CODE_DIRS = COMMENTED_DIRS + ("tests",)
PATH_ROOTS = ("core/", "include/", "plugin/", "tools/", "tests/", "docs/")
SYSTEM_HEADERS = (
    "/usr/include/libnbd.h",
    "/usr/include/nbdkit-*.h",
    "/usr/include/glib-2.0/**/*.h",
    "/usr/lib/x86_64-linux-gnu/glib-2.0/include/*.h",
    "/usr/include/*.h",
    "/usr/include/sys/*.h",
    "/usr/include/linux/*.h",
    "/usr/include/x86_64-linux-gnu/sys/*.h",
    "/usr/include/x86_64-linux-gnu/bits/*.h",
)

IDENT = re.compile(r"[A-Za-z_]\w*")
# One C token that matters for stripping: a comment or a literal.
C_LEXEME = re.compile(r"//[^\n]*|/\*.*?\*/"
                      r"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""", re.S)
SNAKE = r"[A-Za-z][A-Za-z0-9]*_\w*[A-Za-z0-9]"


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def tree_files(dirs, exts):
    for d in dirs:
        for root, subdirs, files in os.walk(os.path.join(TOP, d)):
            subdirs[:] = [s for s in subdirs
                          if not s.startswith(("build", "."))]
            for f in files:
                if f.endswith(exts):
                    yield os.path.join(root, f)


def split_c(text):
    """(code without comments or literals, literal texts, comments with
    the line each starts on)."""
    code, literals, comments = [], [], []
    pos = 0
    for m in C_LEXEME.finditer(text):
        code.append(text[pos:m.start()])
        lexeme = m.group()
        if lexeme.startswith("/"):
            comments.append((text.count("\n", 0, m.start()) + 1, lexeme))
            code.append(" " + "\n" * lexeme.count("\n"))
        else:
            literals.append(lexeme)
            code.append(" ")
        pos = m.end()
    code.append(text[pos:])
    return "".join(code), literals, comments


class Names:
    def __init__(self):
        self.code = set()       # C identifiers of the tree
        self.words = set()      # words of literals and scripts
        self.comments = {}      # path -> [(line, text)]
        self.defined = {}       # function -> the files defining it
        for path in tree_files(CODE_DIRS, (".c", ".h")):
            code, literals, comments = split_c(read(path))
            self.code.update(IDENT.findall(code))
            # House style: a definition's name starts its line.
            for f in re.findall(r"^(\w+) \(", code, re.M):
                self.defined.setdefault(f, set()).add(
                    os.path.relpath(path, TOP))
            for lit in literals:
                self.words.update(IDENT.findall(lit))
            rel = os.path.relpath(path, TOP)
            if rel.startswith(COMMENTED_DIRS):
                self.comments[rel] = comments
        for path in tree_files(("",), ("CMakeLists.txt", ".cmake", ".sh",
                                       ".py", ".syms")):
            self.words.update(IDENT.findall(read(path)))
        self.system = set()
        for pattern in SYSTEM_HEADERS:
            for h in glob.glob(pattern, recursive=True):
                self.system.update(IDENT.findall(read(h)))
        # name -> the files it is allowed in (empty: everywhere)
        self.allowed = {}
        allow = os.path.join(TOP, "tests", "check-names.allow")
        for line in read(allow).splitlines():
            words = line.split("#", 1)[0].split()
            if words:
                self.allowed[words[0]] = set(words[1:])

    def is_allowed(self, name, rel):
        files = self.allowed.get(name)
        return files is not None and (not files or rel in files)

    def known(self, name, words_too):
        if name.endswith("*"):
            prefix = name[:-1]
            pool = self.code | (self.words if words_too else set())
            return any(n.startswith(prefix) for n in pool)
        if not name.lower().startswith("ndm_"):
            # Short for a longer name: DELAY_REQUEUE for
            # NDM_MAPIO_DELAY_REQUEUE, try_get for ndm_budget_try_get.
            suffix = "_" + name
            if any(n.endswith(suffix) for n in self.code):
                return True
        return (name in self.code or (words_too and name in self.words) or
                name in self.system)


def path_exists(p):
    p = p.rstrip("/.,:;")
    if "*" in p or "<" in p:
        return bool(glob.glob(os.path.join(TOP, re.sub(r"<[^>]*>", "*", p))))
    return os.path.exists(os.path.join(TOP, p))


def unit_test_paths(unit_dir):
    paths = set()
    for exe in glob.glob(os.path.join(unit_dir, "test-*")):
        if not os.access(exe, os.X_OK) or not os.path.isfile(exe):
            continue
        out = subprocess.run([exe, "-l"], capture_output=True, text=True,
                             check=False).stdout
        paths.update(l for l in out.splitlines() if l.startswith("/"))
    return paths


def check_doc(names, test_paths, rel, report):
    # The other docs' plain blocks are example tables and output.
    diagrams = rel == "docs/design.md"
    in_plain_block = False
    spans_re = re.compile(r"`([^`\n]+)`")
    text = read(os.path.join(TOP, rel))
    check_placed(names, rel, text, report)
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_plain_block = (not in_plain_block and line.strip() == "```")
            continue
        if in_plain_block:
            if not diagrams:
                continue
            # The diagrams: their snake_case words name code.
            for w in re.findall(r"(?<![\w/.-])(" + SNAKE + r")(?![\w/-])",
                                line):
                if not names.known(w, True):
                    report(rel, n, w)
            continue
        for span in spans_re.findall(line):
            check_span(names, test_paths, rel, n, span.strip(), report)


# "`a`, `b` (`core/x.c`": the names, then the file they are said to be in.
PLACED = re.compile(r"((?:`\w+`(?:,\s*|\s*/\s*|\s+and\s+|\s+or\s+))*`\w+`)"
                    r"\s+\(`((?:" + "|".join(PATH_ROOTS) + r")[\w/.-]+\.[ch])`")


def check_placed(names, rel, text, report):
    for m in PLACED.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        path = m.group(2)
        for f in re.findall(r"`(\w+)`", m.group(1)):
            where = names.defined.get(f)
            if where and path not in where:
                report(rel, line, f, "not in %s (defined in %s)"
                       % (path, ", ".join(sorted(where))))


def check_span(names, test_paths, rel, n, span, report):
    if span.startswith(PATH_ROOTS):
        if not path_exists(span.split()[0]):
            report(rel, n, span)
        return
    if re.fullmatch(r"test-[\w-]+\.sh", span):
        if not glob.glob(os.path.join(TOP, "tests", "*", span)):
            report(rel, n, span)
        return
    if re.fullmatch(r"(/[\w^*.-]+){2,}", span):
        # A g_test path: its first part is an area of the unit tests
        # (/tmp/a.sock is not one).
        if test_paths is None or span.split("/")[1] not in {
                p.split("/")[1] for p in test_paths}:
            return
        if span.endswith("*"):
            ok = any(p.startswith(span[:-1]) for p in test_paths)
        else:
            ok = span in test_paths
        if not ok:
            report(rel, n, span)
        return
    m = re.fullmatch(r"struct (ndm_\w+)", span)
    if m:
        span = m.group(1)
    m = re.fullmatch(r"(\w+) ?\(\)", span)
    if m:
        span = m.group(1)
    # a->b->c, a.b: each part is a name (the first may be a variable).
    m = re.fullmatch(r"\w+((->|\.)\w+)+", span)
    if m and not re.fullmatch(r"[\w.]+\.(c|h|md|sh|py|txt)", span):
        for part in re.split(r"->|\.", span)[1:]:
            if not names.known(part, False):
                report(rel, n, span)
                return
        return
    if re.fullmatch(r"NDM_\w+\*?|ndm_\w+\*?|" + SNAKE, span):
        if not names.known(span, True):
            report(rel, n, span)


def check_comments(names, report):
    # snake_case words (ndm_ and NDM_ ones with a '*' as a prefix), x()
    # but not man page references (accept(2)), and a->field.
    snake = re.compile(r"(?<![\w/.<>-])(" + SNAKE + r"\*?)(?![\w/-])")
    func = re.compile(r"(?<![\w.>-])(\w+)\(\)")
    field = re.compile(r"\b\w+(?:->\w+)+")
    for rel in sorted(names.comments):
        for start, text in names.comments[rel]:
            for i, line in enumerate(text.split("\n")):
                seen = set()
                # A plain word may be one of dm's (a string literal);
                # ours, functions and fields must be code.
                for w, words_too in ([(w, not w.lower().startswith("ndm_"))
                                      for w in snake.findall(line)] +
                                     [(w, False) for w in func.findall(line)
                                      + field.findall(line)]):
                    if w in seen:
                        continue
                    seen.add(w)
                    # a->b->c: the fields must be code (a is a variable).
                    parts = w.split("->")[1:] if "->" in w else [w]
                    if not all(names.known(p, words_too) for p in parts):
                        report(rel, start + i, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--unit-tests", metavar="DIR",
                    help="the built unit tests, to check g_test paths")
    args = ap.parse_args()
    names = Names()
    test_paths = unit_test_paths(args.unit_tests) if args.unit_tests else None
    stale = []

    def report(rel, line, name, why="not found"):
        if names.is_allowed(name, rel):
            return
        stale.append("%s:%d: `%s` %s" % (rel, line, name, why))

    docs = ([os.path.join(TOP, "README.md")] +
            sorted(glob.glob(os.path.join(TOP, "docs", "*.md"))) +
            sorted(glob.glob(os.path.join(TOP, "docs", "targets", "*.md"))) +
            sorted(glob.glob(os.path.join(TOP, "tests", "*", "README.md"))))
    for doc in docs:
        check_doc(names, test_paths, os.path.relpath(doc, TOP), report)
    check_comments(names, report)
    for s in stale:
        print(s)
    if stale:
        print("%d stale name(s): rename them to what the code calls them "
              "now, or, for a name that is not ours, add it to "
              "tests/check-names.allow" % len(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
