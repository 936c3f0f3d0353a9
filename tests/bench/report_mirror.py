#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Turn one bench-mirror.sh result dir into tables on stdout and, with
--doc, the MIRROR section of docs/performance.md.

    report_mirror.py OUTDIR [--doc docs/performance.md]

Only the text between <!-- MIRROR:BEGIN --> and <!-- MIRROR:END --> is
replaced (markers included); without them the section is appended at the
end.  The analysis inside it, between the MIRROR-ANALYSIS markers, is
human-written and kept.

Per part and config: the median over reps (ratios are ratios of medians;
spread = (max - min) / median of the key metric: IOPS in parts A and B,
MiB/s in C, p99 in L, MiB/s in R).  Latencies are fio's completion
latencies (clat).  See bench-mirror.sh's header for the parts.
"""
import glob
import json
import os
import re
import sys

from reportlib import (BUILD, MIRROR_BEGIN, MIRROR_END, busy_before, caution,
                       find_section, fmt, med, parse_args, read_fio, read_json,
                       read_meta, seconds, spread, spread_cell, verdict, write_section)

READ_TARGET = 1.8       # part A: mirror (queue-length) over 2 slow legs vs linear over 1
WRITE_TARGET = 0.8      # part B: mirror over 2 fast legs vs linear over 1
MIB = 1024.0 * 1024.0

A_BEGIN = "<!-- MIRROR-ANALYSIS:BEGIN (human-written; kept when this section is regenerated) -->"
A_END = "<!-- MIRROR-ANALYSIS:END -->"
PLACEHOLDER = "_Not written yet: what the figures mean, whether each target is met, and why._"

LABELS = {
    "dm-linear": "nbd-dm linear over one leg",
    "dm-mirror-ql": "**nbd-dm mirror, 2 legs, read_balance queue-length**",
    "dm-mirror-rr": "nbd-dm mirror, 2 legs, read_balance round-robin",
    "dm-mirror-dl": "nbd-dm mirror, 2 legs, read_balance default_leg",
    "dm-mirror": "**nbd-dm mirror, 2 legs, core log**",
    "dm-mirror-disk": "nbd-dm mirror, 2 legs, disk log",
    "insync": "in-sync mirror (loaded with nosync)",
    "nocap": "during the resync, no cap",
    "cap": "during the resync, resync-rate={rate}",
}
ORDER = ["dm-linear", "dm-mirror-ql", "dm-mirror-rr", "dm-mirror-dl", "dm-mirror",
         "dm-mirror-disk", "insync", "nocap", "cap"]


def label(cfg, meta):
    return LABELS.get(cfg, cfg).format(rate=meta.get("RATE", "?"))


def tags(d, part):
    """cfg -> sorted tags PART.cfg.rN of the runs that left any file."""
    out = {}
    for f in glob.glob(os.path.join(d, part + ".*.r*.*")):
        p = os.path.basename(f).split(".")
        if len(p) > 3 and re.fullmatch(r"r\d+", p[2]):
            out.setdefault(p[1], set()).add(".".join(p[:3]))
    return {c: sorted(t, key=lambda x: int(x.split(".r")[-1])) for c, t in out.items()}


def clat(path):
    """fio's completion latency percentiles of the busier side, µs."""
    txt = open(path).read()
    # the nbd engine may print "fio: connected to NBD server" before the JSON
    j = json.loads(txt[txt.index("{"):])["jobs"][0]
    side = j["write"] if j["write"]["io_bytes"] > j["read"]["io_bytes"] else j["read"]
    pct = side["clat_ns"].get("percentile", {})
    return {k: pct.get(q, 0) / 1000.0
            for k, q in (("p50", "50.000000"), ("p99", "99.000000"), ("p999", "99.900000"))}


# ---- fio parts (A, B, C, L) ------------------------------------------------

def load_fio(d, part, key):
    """cfg -> {"n", "failed", key metrics' medians, "spread" of key, "all"}"""
    rows = {}
    for cfg, ts in tags(d, part).items():
        ok, failed = [], 0
        for tag in ts:
            fj = os.path.join(d, tag + ".json")
            if os.path.exists(os.path.join(d, tag + ".failed")) or not os.path.exists(fj):
                failed += 1
                continue
            f = read_fio(fj)
            f.update(clat(fj))
            c = read_json(os.path.join(d, tag + ".cpu.json"), {})
            f.update({"px": c.get("proxy_cpu"), "legs": c.get("backend_cpu"),
                      "busy": c.get("machine_busy"), "wall": c.get("wall")})
            # nbd-dm CPU time per request, µs (CPU% is over the run's wall time)
            f["us_op"] = (f["px"] / 100.0 / f["iops"] * 1e6
                          if f["px"] is not None and f["iops"] else None)
            # ... and of every process of the run (fio, nbd-dm, legs): what
            # a write costs the box when they share its cores
            f["all_op"] = ((f["px"] + f["legs"] + f["fio"]) / 100.0 / f["iops"] * 1e6
                           if f["us_op"] is not None and f["legs"] is not None else None)
            f["cover"], f["rs_rate"] = resync_during(d, tag)
            ok.append(f)
        row = {"n": len(ok), "failed": failed, "spread": spread([r[key] for r in ok]),
               "all": [r[key] for r in ok]}
        for k in ("iops", "mib", "p50", "p99", "p999", "px", "legs", "busy", "us_op",
                  "all_op", "cover", "rs_rate"):
            row[k] = med([r[k] for r in ok])
        rows[cfg] = row
    return rows


def read_poll(path):
    """bench-mirror.sh's poll file: [(t, copied, in_sync, regions)]."""
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        p = line.split()
        if len(p) == 4:
            out.append((float(p[0]), int(p[1]), int(p[2]), int(p[3])))
    return out


def resync_during(d, tag):
    """For a client run during a resync: the share of the run the resync
    covered (1.0: still running at its end) and the resync's MiB/s over
    the polls within the run; (None, None) without polls."""
    polls = read_poll(os.path.join(d, tag + ".poll"))
    ev = read_json(os.path.join(d, tag + ".events.json"))
    if not polls or not ev:
        return None, None
    t0, t1 = ev["fio_start"], ev["fio_end"]
    done = next((p[0] for p in polls if p[2] == p[3]), None)
    cover = (min(done if done is not None else t1, t1) - t0) / (t1 - t0)
    inside = [p for p in polls if p[0] <= t1]
    rate = None
    if len(inside) > 1 and inside[-1][0] > inside[0][0]:
        rate = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) / MIB
    return max(0.0, min(1.0, cover)), rate


# ---- part R: the resync alone ------------------------------------------------

def resync_rep(d, tag):
    """{"secs": launch -> N/N, "rate": MiB/s over the polls' span, "bytes"}
    or None if the resync did not reach N/N."""
    polls = read_poll(os.path.join(d, tag + ".poll"))
    ev = read_json(os.path.join(d, tag + ".events.json"))
    done = next((p for p in polls if p[2] == p[3]), None)
    if done is None or ev is None:
        return None
    first = polls[0]
    secs = done[0] - ev["launch"]
    if done[0] > first[0] and done[1] > first[1]:
        rate = (done[1] - first[1]) / (done[0] - first[0]) / MIB
    else:
        rate = done[1] / secs / MIB
    return {"secs": secs, "rate": rate, "bytes": done[1], "regions": done[3]}


def load_resync(d):
    rows = {}
    for cfg, ts in tags(d, "R").items():
        reps = [resync_rep(d, t) for t in ts]
        ok = [r for r in reps if r]
        rows[cfg] = {"n": len(ok), "failed": len(reps) - len(ok),
                     "secs": med([r["secs"] for r in ok]), "rate": med([r["rate"] for r in ok]),
                     "spread": spread([r["rate"] for r in ok]), "all": [r["rate"] for r in ok],
                     "bytes": med([r["bytes"] for r in ok]),
                     "regions": med([r["regions"] for r in ok])}
    return rows


# ---- figures -------------------------------------------------------------------

def ceiling(meta, cfg):
    """Part A, Little's law: min(QD, requests the legs serve at once) / delay."""
    try:
        qd, t = int(meta.get("QD", "32")), int(meta.get("DTHREADS", "8"))
    except ValueError:
        return None
    dl = seconds(meta.get("DELAY"))
    m = re.search(r"(?:^|\s)connections=(\d+)", meta.get("DM_EXTRA", ""))
    conns = int(m.group(1)) if m else 2
    if not dl:
        return None
    legs = 2 if cfg in ("dm-mirror-ql", "dm-mirror-rr") else 1
    return min(qd, legs * conns * t) / dl


def ratio_to(rows, cfg, base, key):
    a, b = rows.get(cfg), rows.get(base)
    if not a or not b or not a.get(key) or not b.get(key):
        return None, None
    r = a[key] / b[key]
    return r, max(a["spread"] or 0, b["spread"] or 0) * r


def ordered(rows):
    return sorted(rows, key=lambda c: ORDER.index(c) if c in ORDER else len(ORDER))


def failed_row(cfg, meta, r, ncols):
    return f"| {label(cfg, meta)} | failed ({r['failed']} reps) |" + " |" * (ncols - 2)


def fio_lines(rows, meta, key, reads=False):
    """The table of part A (reads: a ceiling column) or B and C (a MiB/s
    column); ratios of key to dm-linear."""
    extra = "ceiling IOPS" if reads else "MiB/s"
    out = [f"| config | IOPS | {extra} | p50 µs | p99 µs | × nbd-dm linear | spread (n) | "
           "nbd-dm CPU% | nbd-dm µs/op | all µs/op | legs CPU% | machine busy% |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ordered(rows):
        r = rows[c]
        if r["n"] == 0:
            out.append(failed_row(c, meta, r, 12))
            continue
        out.append("| " + " | ".join([
            label(c, meta), fmt(r["iops"], "{:,.0f}"),
            fmt(ceiling(meta, c), "{:,.0f}") if reads else fmt(r["mib"]),
            fmt(r["p50"]), fmt(r["p99"]), fmt(ratio_to(rows, c, "dm-linear", key)[0], "{:.2f}"),
            spread_cell(r), fmt(r["px"]), fmt(r["us_op"], "{:.1f}"), fmt(r["all_op"], "{:.1f}"),
            fmt(r["legs"]), fmt(r["busy"])]) + " |")
    return out


def resync_lines(rows, meta):
    out = ["| resync | start → N/N s | MiB/s | spread (n) |", "|---|---:|---:|---:|"]
    for c in ordered(rows):
        r = rows[c]
        name = "no cap" if c == "nocap" else f"resync-rate={meta.get('RATE', '?')}"
        if r["n"] == 0:
            out.append(f"| {name} | did not reach N/N ({r['failed']} reps) | | |")
            continue
        out.append(f"| {name} | {fmt(r['secs'], '{:.2f}')} | {fmt(r['rate'])} | "
                   f"{spread_cell(r)} |")
    return out


def client_lines(rows, meta):
    out = ["| client | IOPS | p50 µs | p99 µs | p99.9 µs | p99 × in sync | spread of p99 (n) | "
           "resync ran for % of the run | resync MiB/s meanwhile |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ordered(rows):
        r = rows[c]
        if r["n"] == 0:
            out.append(failed_row(c, meta, r, 9))
            continue
        out.append("| " + " | ".join([
            label(c, meta), fmt(r["iops"], "{:,.0f}"), fmt(r["p50"]), fmt(r["p99"]),
            fmt(r["p999"]), fmt(ratio_to(rows, c, "insync", "p99")[0], "{:.2f}"),
            spread_cell(r), "–" if c == "insync" else fmt(None if r["cover"] is None else
                                                          100 * r["cover"]),
            "–" if c == "insync" else fmt(r["rs_rate"])]) + " |")
    return out


def verdict_line(what, rows, cfg, key, target):
    ratio, noise = ratio_to(rows, cfg, "dm-linear", key)
    if ratio is None:
        return f"- {what}: not measured."
    return (f"- {what} = **{ratio:.2f}×** (target ≥ {target}×): "
            f"{verdict(ratio >= target, ratio - target, noise)}.")


def ratio_line(what, rows, cfg, key):
    ratio, _ = ratio_to(rows, cfg, "dm-linear", key)
    return f"- {what} = **{fmt(ratio, '{:.2f}')}×** (reported, no target)."


# ---- output -----------------------------------------------------------------------

def render(d, meta, parts, analysis):
    g = meta.get
    a, b, c, r, lat = (parts[k] for k in "ABCRL")
    o = [MIRROR_BEGIN, "## Mirror (issue 11)", ""] + caution(meta)
    o += [f"Measured {g('date', '?')} with `tests/bench/bench-mirror.sh` (raw results: "
          f"`{g('outdir', os.path.basename(os.path.normpath(d)))}/`), from the top of the "
          "repository:", "", "```sh", BUILD, g("command", "tests/bench/bench-mirror.sh"), "```", "",
          f"{g('cpu', '?')}, {g('cores', '?')} cores, {g('kernel', '?')}; {g('nbdkit', '?')}, "
          f"libnbd {g('libnbd', '?')}, {g('fio', '?')}; plugin `{g('plugin', '?')}` "
          f"({g('plugin_build', '?')}); machine busy before the start: "
          f"{busy_before(meta)}; load average at the end: "
          f"{' '.join(g('loadavg_after', '?').split()[:3])}.", "",
          f"fio's nbd engine, one job on one connection; each part's configurations ran "
          f"{g('REPS', '?')} times, interleaved; medians, ratios of medians. Mirrors: a core "
          f"log, regions of {g('REGION', '?')} sectors, `nosync` unless said otherwise; nbd-dm "
          "opens 2 connections per leg"
          + (f"; extra parameters `{g('DM_EXTRA')}`" if g("DM_EXTRA") else "")
          + ". Latencies: fio's completion latency (clat). *CPU%*: of one core over the run; "
          "*µs/op*: CPU time per request of nbd-dm, and of *all* the run's processes (fio, "
          "nbd-dm, the legs), i.e. what a request costs the box when they share its cores.",
          "", "### Analysis", "", A_BEGIN, analysis, A_END, ""]
    if a:
        o += [f"### Reads over 2 slow legs — 4 KiB random read, QD{g('QD', '?')}", "",
              f"Legs: `nbdkit -t {g('DTHREADS', '?')} --filter=delay memory {g('DSIZE', '?')}`, "
              f"delay-read {g('DELAY', '?')}, prefilled with one pattern; nbd-dm `-t "
              f"{g('WTHREADS', '?')}`; {g('RUNTIME', '?')} s runs (+{g('RAMP', '?')} s ramp). "
              "*ceiling* = min(QD, requests the legs serve at once) / delay (Little's law): "
              "a connection serves `-t` requests at once, so 2 legs can give at most 2×.",
              ""] + fio_lines(a, meta, "iops", reads=True) + [""]
        o += [verdict_line("mirror (queue-length) / linear over one leg", a, "dm-mirror-ql",
                           "iops", READ_TARGET),
              ratio_line("mirror (round-robin) / linear", a, "dm-mirror-rr", "iops"),
              ratio_line("mirror (default_leg, dm's reads) / linear", a, "dm-mirror-dl", "iops"),
              ""]
    if b or c:
        o += ["### Writes over 2 fast legs", "",
              f"Legs: `nbdkit memory {g('SIZE', '?')}`, prefilled; the disk log on an `nbdkit "
              f"memory 1M`; nbd-dm `-t {g('DM_THREADS', '?')}`; {g('RUNTIME', '?')} s runs "
              f"(+{g('RAMP', '?')} s ramp).", ""]
    if b:
        o += [f"4 KiB random write, QD{g('WQD', '?')}:", ""] + fio_lines(b, meta, "iops") + [""]
        o += [verdict_line("mirror (core log) / linear over one leg", b, "dm-mirror", "iops",
                           WRITE_TARGET),
              ratio_line("mirror (disk log) / linear", b, "dm-mirror-disk", "iops"), ""]
    if c:
        o += [f"1 MiB sequential write, QD{g('SQD', '?')}:", ""] + fio_lines(c, meta, "mib")
        o += ["", ratio_line("mirror (core log) / linear, MiB/s", c, "dm-mirror", "mib"),
              ratio_line("mirror (disk log) / linear, MiB/s", c, "dm-mirror-disk", "mib"), ""]
    if r or lat:
        o += ["### Resync", "",
              f"Legs: two `nbdkit memory {g('RSIZE', '?')}`, the first prefilled, the second "
              "empty; a fresh nbd-dm per run loads a mirror with a core log and no `nosync`, "
              f"so every region is copied from the first leg at once (nbd-dm `-t "
              f"{g('DM_THREADS', '?')}`). `nbd-dmsetup --json status` is polled every "
              f"{g('POLL', '?')} s: *start → N/N* runs from nbd-dm's start to the first poll "
              "that saw every region in sync; *MiB/s* is the copied bytes over the polls' span."
              + ("" if g("CAP") == "yes" else
                 " **This plugin has no `resync-rate` key: only the uncapped resync was "
                 "measured.**"), ""]
    if r:
        o += ["The resync alone:", ""] + resync_lines(r, meta) + [""]
    if lat:
        o += [f"A client during the resync: 4 KiB random reads, QD{g('RQD', '?')}, "
              f"{g('RRUNTIME', '?')} s from the moment nbd-dm serves (no ramp), against the "
              "same mirror loaded in sync; *resync ran for*: the share of the client's run "
              "before the resync reached N/N (100: it outlasted the run).", ""]
        o += client_lines(lat, meta) + [""]
    o.append(MIRROR_END)
    return "\n".join(o) + "\n"


def keep_analysis(path):
    sec = find_section(path, MIRROR_BEGIN, MIRROR_END)
    if sec:
        m = re.search(re.escape(A_BEGIN) + r"\n?(.*?)\n?" + re.escape(A_END), sec, re.S)
        if m and m.group(1).strip():
            return m.group(1).strip("\n")
    return PLACEHOLDER


def short(name, rows, key, base, fmtv="{:.0f}"):
    if not rows:
        return
    print(name)
    for c in ordered(rows):
        r = rows[c]
        if r["n"] == 0:
            print(f"  {c:<16} failed")
            continue
        rt = rows.get(base, {}).get(key)
        print(f"  {c:<16} {fmt(r[key], fmtv):>9} {key:<5} "
              f"x{base} {fmt(r[key] / rt if rt else None, '{:.2f}'):>5}  "
              f"spread {fmt(None if r['spread'] is None else 100 * r['spread'], '{:.0f}%'):>4}  "
              + " ".join(fmt(x, fmtv) for x in r["all"]))


def main(argv):
    d, doc = parse_args(argv, "--doc", "report_mirror.py OUTDIR [--doc docs/performance.md]")
    meta = read_meta(d)
    parts = {"A": load_fio(d, "A", "iops"), "B": load_fio(d, "B", "iops"),
             "C": load_fio(d, "C", "mib"), "L": load_fio(d, "L", "p99"), "R": load_resync(d)}
    if not any(parts.values()):
        sys.exit(f"report_mirror.py: no results in {d}")
    short(f"reads: 4 KiB randread QD{meta.get('QD', '?')}, slow legs", parts["A"], "iops",
          "dm-linear")
    short(f"writes: 4 KiB randwrite QD{meta.get('WQD', '?')}", parts["B"], "iops", "dm-linear")
    short(f"writes: 1 MiB write QD{meta.get('SQD', '?')}", parts["C"], "mib", "dm-linear")
    short("resync alone, MiB/s", parts["R"], "rate", "nocap")
    short(f"client p99 us, 4 KiB randread QD{meta.get('RQD', '?')}", parts["L"], "p99", "insync")
    for c, row in parts["L"].items():
        if c != "insync" and row["n"]:
            print(f"  {c}: resync ran for {fmt(None if row['cover'] is None else 100 * row['cover'])}%"
                  f" of the run at {fmt(row['rs_rate'])} MiB/s")
    if doc:
        write_section(doc, MIRROR_BEGIN, MIRROR_END, render(d, meta, parts, keep_analysis(doc)))
        print(f"wrote the MIRROR section of {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
