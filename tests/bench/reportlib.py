# SPDX-License-Identifier: BSD-3-Clause
"""What report.py (bench.sh's results) and report_multipath.py
(bench-multipath.sh's) share: reading a results dir (meta.txt, fio and CPU
JSON), medians and spreads, number formatting, the caution line and the
verdicts, the MULTIPATH and MIRROR markers of docs/performance.md, keeping
and replacing such a section, and the command line.
"""
import json
import os
import re
import statistics
import sys

# bench-multipath.sh's section of docs/performance.md: report_multipath.py
# writes it, report.py keeps it as it is.
MP_BEGIN = "<!-- MULTIPATH:BEGIN -->"
MP_END = "<!-- MULTIPATH:END -->"
# bench-mirror.sh's section: report_mirror.py writes it (keeping the
# analysis between the MIRROR-ANALYSIS markers), report.py keeps it.
MIRROR_BEGIN = "<!-- MIRROR:BEGIN -->"
MIRROR_END = "<!-- MIRROR:END -->"

BUILD = "cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2"


def read_meta(d):
    """meta.txt of results dir d (KEY=VALUE lines) as a dict."""
    meta = {}
    p = os.path.join(d, "meta.txt")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def read_json(path, default=None):
    return json.load(open(path)) if os.path.exists(path) else default


def read_fio(path):
    """fio's JSON output of a one-job run: the side (read or write) that
    moved more bytes, as mib, iops, p50 and p99 (µs), and fio's CPU%."""
    txt = open(path).read()
    # the nbd engine may print "fio: connected to NBD server" before the JSON
    j = json.loads(txt[txt.index("{"):])["jobs"][0]
    side = j["write"] if j["write"]["io_bytes"] > j["read"]["io_bytes"] else j["read"]
    pct = side["lat_ns"].get("percentile") or side["clat_ns"].get("percentile", {})
    return {"mib": side["bw"] / 1024.0, "iops": side["iops"],
            "p50": pct.get("50.000000", 0) / 1000.0, "p99": pct.get("99.000000", 0) / 1000.0,
            "fio": j["usr_cpu"] + j["sys_cpu"]}


def seconds(s):
    """"5ms", "200us", "1s" or "1" as seconds; None if it is none of those."""
    m = re.fullmatch(r"([0-9.]+)(ms|us|s)?", s or "")
    if not m:
        return None
    return float(m.group(1)) * {"ms": 1e-3, "us": 1e-6, "s": 1.0, None: 1.0}[m.group(2)]


def med(v):
    """Median of the values that are not None; None if there are none."""
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def spread(v):
    """(max - min) / median of the non-zero values; None below two."""
    v = [x for x in v if x]
    return (max(v) - min(v)) / statistics.median(v) if len(v) > 1 else None


def fmt(v, f="{:.0f}", none="–"):
    return none if v is None else f.format(v)


def spread_cell(row):
    """A table's "spread (n)" cell of a row with spread, failed and n."""
    sp = fmt(None if row["spread"] is None else 100 * row["spread"], "{:.0f}%")
    if row["failed"]:
        sp += f", {row['failed']} failed"
    return f"{sp} ({row['n']})"


def verdict(ok, margin, noise):
    s = "met" if ok else "**not met**"
    if noise is not None and abs(margin) <= noise:
        s += " (within the spread)"
    return s


def caution(meta):
    """The warning line (and a blank) for a run too short or on a busy box."""
    g = meta.get
    smoke = []
    try:
        if float(g("RUNTIME", "5")) < 5 or int(g("REPS", "3")) < 3:
            smoke.append(f"RUNTIME={g('RUNTIME')} s, REPS={g('REPS')}")
    except ValueError:
        pass
    try:
        if int(g("busy_before", "0")) > 25:
            smoke.append(f"the machine was {g('busy_before')}% of one core busy before the start")
    except ValueError:
        pass
    if not smoke:
        return []
    return [f"> **Caution: not a representative measurement** ({'; '.join(smoke)}).", ""]


def busy_before(meta):
    g = meta.get
    return (f"{g('busy_before', '?')}% of one core "
            f"(load average {' '.join(g('loadavg_before', '?').split()[:3])})")


def parse_args(argv, opt, usage):
    """OUTDIR [OPT FILE] -> (OUTDIR, FILE or None); exits with usage otherwise."""
    path = None
    if opt in argv:
        i = argv.index(opt)
        path = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) != 1:
        sys.exit("usage: " + usage)
    return argv[0], path


def write_file(path, text):
    """Replace path with text atomically (a reader never sees half of it)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def find_section(path, begin, end):
    """The text of path from marker begin to marker end (both included),
    or None if the file or either marker is missing."""
    if not path or not os.path.exists(path):
        return None
    m = re.search(re.escape(begin) + r".*?" + re.escape(end), open(path).read(), re.S)
    return m.group(0) if m else None


def write_section(path, begin, end, section):
    """Replace the text of path from marker begin to marker end with
    section (which carries both markers); append it if they are missing.
    Nothing else in the file is touched."""
    txt = open(path).read() if os.path.exists(path) else ""
    b, e = txt.find(begin), txt.find(end)
    if b != -1 and e != -1 and e > b:
        txt = txt[:b] + section.rstrip("\n") + txt[e + len(end):]
    else:
        if txt and not txt.endswith("\n"):
            txt += "\n"
        txt += ("\n" if txt else "") + section
    write_file(path, txt)
