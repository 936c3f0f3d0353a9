#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Turn one bench.sh result dir into docs/performance.md (or stdout).

    report.py OUTDIR [--out docs/performance.md]

Per workload and config the value shown is the median over reps of the key
metric: MiB/s (W1, W1n, W2), IOPS (W3, W4, W6), p50 latency (W5).  Ratios are
ratios of medians.  For W5 the ratio is a latency ratio (config p50 / base
p50): lower is better there, higher everywhere else.  Spread = (max - min) /
median of the key metric across reps.  The "Analysis" section of an existing
output file (between the ANALYSIS markers, or a plain "## Analysis" section)
is carried over, since a human writes it.
"""
import glob
import os
import re
import sys

from reportlib import (BUILD, MIRROR_BEGIN, MIRROR_END, MP_BEGIN, MP_END, busy_before,
                       caution, find_section, fmt, med, parse_args, read_fio, read_json,
                       read_meta, seconds, spread, spread_cell, verdict, write_file)

KEY = {"W1": "mib", "W1n": "mib", "W2": "mib", "W3": "iops", "W4": "iops",
       "W5": "p50", "W6": "iops"}
UNIT = {"mib": "MiB/s", "iops": "IOPS", "p50": "p50 µs"}
ORDER = ["W1", "W1n", "W2", "W3", "W4", "W5", "W6"]
CFG_ORDER = ["direct", "nbdkit-nbd", "qemu-nbd", "dm-linear", "dm-striped2", "dm-striped4"]
LABEL = {"direct": "direct (the device)", "nbdkit-nbd": "nbdkit nbd", "qemu-nbd": "qemu-nbd",
         "dm-linear": "**nbd-dm linear**", "dm-striped2": "nbd-dm striped ×2",
         "dm-striped4": "nbd-dm striped ×4"}
LABEL_W6 = dict(LABEL, **{"direct": "one slow device (direct)",
                          "dm-striped4": "nbd-dm striped ×4 (4 slow devices)"})
BEGIN = "<!-- ANALYSIS:BEGIN (human-written; kept when this file is regenerated) -->"
END = "<!-- ANALYSIS:END -->"
PLACEHOLDER = "_Not written yet: the lead adds the analysis of the numbers here._"
LINEAR_TARGET = 1.0     # nbd-dm linear vs nbdkit nbd, every workload
STRIPE_TARGET = 3.6     # nbd-dm striped over 4 slow devices vs one slow device


def describe(w, meta):
    return {"W1": "1 MiB sequential read, QD8",
            "W1n": "nbdcopy of the whole export to null:",
            "W2": "1 MiB sequential write, QD8",
            "W3": "4 KiB random read, QD32",
            "W4": "4 KiB random write, QD32",
            "W5": "4 KiB random read, QD1 (latency)",
            "W6": f"4 KiB random read, QD{meta.get('W6_QD', '64')}, slow devices "
                  f"(delay {meta.get('DELAY', '?')} per request, nbdkit -t "
                  f"{meta.get('DTHREADS', '?')})"}[w]


def load_rep(d, tag):
    """One rep: dict with the metrics, or None if it has no result file."""
    w, cfg, rep = tag.split(".")
    r = {"w": w, "cfg": cfg, "rep": rep, "failed": os.path.exists(os.path.join(d, tag + ".failed"))}
    c = read_json(os.path.join(d, tag + ".cpu.json"), {})
    r.update(dev=c.get("backend_cpu"), px=c.get("proxy_cpu"), busy=c.get("machine_busy"))
    fj = os.path.join(d, tag + ".json")
    nj = os.path.join(d, tag + ".nbdcopy.json")
    if r["failed"]:
        return r
    if os.path.exists(fj):
        r.update(read_fio(fj))
    elif os.path.exists(nj):
        n = read_json(nj)
        r.update(mib=n["bytes"] / n["nbdcopy_s"] / 2**20, iops=None, p50=None, p99=None,
                 fio=n.get("cpu", 0.0))
    else:
        r["failed"] = True
        return r
    if r["busy"] is not None:
        r["other"] = max(0.0, r["busy"] - (r["fio"] or 0) - (r["dev"] or 0) - (r["px"] or 0))
    return r


def load(d):
    """(w, cfg) -> medians over the successful reps, n, failures, spread."""
    reps = {}
    for f in glob.glob(os.path.join(d, "W*.r*.*")):
        tag = ".".join(os.path.basename(f).split(".")[:3])
        if tag.count(".") == 2 and tag not in reps:
            reps[tag] = load_rep(d, tag)
    by = {}
    for r in reps.values():
        by.setdefault((r["w"], r["cfg"]), []).append(r)
    rows = {}
    for k, lst in by.items():
        ok = [r for r in lst if not r["failed"]]
        row = {"n": len(ok), "failed": len(lst) - len(ok)}
        for m in ("mib", "iops", "p50", "p99", "px", "dev", "other"):
            row[m] = med(r.get(m) for r in ok)
        row["spread"] = spread(r.get(KEY[k[0]]) for r in ok)
        rows[k] = row
    return rows


def ratio(rows, w, cfg, base):
    a, b = rows.get((w, cfg)), rows.get((w, base))
    k = KEY[w]
    if a and b and a.get(k) and b.get(k):
        return a[k] / b[k]
    return None


def fmt_num(v):
    if v is None:
        return "–"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def cfgs_of(rows, w):
    return sorted({c for (ww, c) in rows if ww == w},
                  key=lambda c: CFG_ORDER.index(c) if c in CFG_ORDER else 99)


def workload_table(rows, w, meta):
    k = KEY[w]
    lat = k == "p50"
    out = [f"### {w} — {describe(w, meta)}", ""]
    if w == "W6":
        g = meta.get
        out += [f"Slow device: `nbdkit -t {g('DTHREADS', '?')} --filter=delay memory` prefilled, "
                f"delay-read/write {g('DELAY', '?')}; one of {g('DSIZE', '?')}, or four of a "
                f"quarter of that for striped ×4 (chunk {g('CHUNK', '?')} sectors). nbd-dm and "
                f"nbdkit nbd run with `nbdkit -t {g('WTHREADS', '?')}`. nbdkit's `-t` is per "
                "connection, so a slow device serves that many requests at once *per "
                "connection*, and nbd-dm opens `connections` (default 2) per device. By "
                "Little's law no configuration can exceed QD / delay = "
                f"{fmt(little(meta), '{:,.0f}', '?')} IOPS, and the one slow device on fio's one "
                f"connection serves min(QD, -t) at a time, so with these settings the scaling "
                f"ratio can reach at most {fmt(scaling_ceiling(meta), '{:.1f}', '?')}×.", ""]
    cols = ["config", UNIT[k]]
    if k != "p50" and w != "W1n":
        cols.append("p50 µs")
    if w != "W1n":
        cols.append("p99 µs")
    rl = "p50 " if lat else ""
    cols += [f"{rl}× direct", f"{rl}× nbdkit nbd", "spread (n)", "proxy CPU%"]
    if w != "W1n":      # nbdcopy's request count is unknown
        cols.append("proxy µs/op")
    cols += ["devices CPU%", "other CPU%"]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|---|" + "---:|" * (len(cols) - 1))
    labels = LABEL_W6 if w == "W6" else LABEL
    for c in cfgs_of(rows, w):
        r = rows[(w, c)]
        name = labels.get(c, c)
        if r["n"] == 0:
            out.append(f"| {name} | failed ({r['failed']} of {r['failed']} reps) |"
                       + " |" * (len(cols) - 2))
            continue
        direct = c == "direct"
        iops = r.get("iops")
        usop = r["px"] / 100.0 * 1e6 / iops if (not direct and iops and r["px"] is not None) else None
        cells = [name, fmt_num(r[k])]
        if k != "p50" and w != "W1n":
            cells.append(fmt(r["p50"]))
        if w != "W1n":
            cells.append(fmt(r["p99"]))
        cells += [fmt(ratio(rows, w, c, "direct"), "{:.2f}"),
                  fmt(ratio(rows, w, c, "nbdkit-nbd"), "{:.2f}"),
                  spread_cell(r), "–" if direct else fmt(r["px"])]
        if w != "W1n":
            cells.append(fmt(usop, "{:.1f}"))
        cells += [fmt(r["dev"]), fmt(r["other"])]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if w == "W6":
        s = ratio(rows, "W6", "dm-striped4", "direct")
        sl = ratio(rows, "W6", "dm-striped4", "dm-linear")
        out.append(f"Scaling: nbd-dm striped ×4 / one slow device = **{fmt(s, '{:.2f}×')}** "
                   f"(target ≥ {STRIPE_TARGET}×); striped ×4 / nbd-dm linear over one slow "
                   f"device = {fmt(sl, '{:.2f}×')}.")
        out.append("")
    return out


def little(meta):
    """QD / delay: the IOPS ceiling of W6 for any configuration."""
    try:
        qd = int(meta.get("W6_QD", "64"))
    except ValueError:
        return None
    sec = seconds(meta.get("DELAY", ""))
    return qd / sec if sec else None


def scaling_ceiling(meta):
    """QD / min(QD, device threads): best possible striped / one slow device."""
    try:
        qd, t = int(meta.get("W6_QD", "64")), int(meta.get("DTHREADS", ""))
    except ValueError:
        return None
    return qd / min(qd, t)


def rfmt(r, threshold):
    """Two decimals, or three when two would round onto the threshold."""
    return f"{r:.3f}" if round(r, 2) == threshold and r != threshold else f"{r:.2f}"


def targets(rows):
    """Targets table computed from the numbers; returns lines and (met, total)."""
    out = ["| target | workload | measured | status |", "|---|---|---:|---|"]
    met = total = 0
    for w in ORDER:
        lin = rows.get((w, "dm-linear"))
        if lin and lin["n"] == 0:       # nbd-dm failed every rep: that is a verdict too
            total += 1
            out.append(f"| nbd-dm linear ≥ {LINEAR_TARGET:.1f}× nbdkit nbd | {w} | failed | "
                       "**not met** |")
            continue
        r = ratio(rows, w, "dm-linear", "nbdkit-nbd")
        if r is None:
            continue
        a, b = rows[(w, "dm-linear")], rows[(w, "nbdkit-nbd")]
        noise = max(x["spread"] or 0 for x in (a, b)) if a["n"] > 1 and b["n"] > 1 else None
        if KEY[w] == "p50":     # latency: linear's p50 must not exceed nbdkit nbd's
            ok, what = r <= LINEAR_TARGET, f"p50 {rfmt(r, LINEAR_TARGET)}× (≤ 1.00 wanted)"
            margin = LINEAR_TARGET - r
        else:
            ok, what = r >= LINEAR_TARGET, f"{rfmt(r, LINEAR_TARGET)}×"
            margin = r - LINEAR_TARGET
        total += 1
        met += ok
        out.append(f"| nbd-dm linear ≥ {LINEAR_TARGET:.1f}× nbdkit nbd | {w} | {what} | "
                   f"{verdict(ok, margin, noise)} |")
    s = ratio(rows, "W6", "dm-striped4", "direct")
    st = rows.get(("W6", "dm-striped4"))
    if st and st["n"] == 0:
        total += 1
        out.append(f"| nbd-dm striped over 4 slow devices ≥ {STRIPE_TARGET}× one slow device | "
                   "W6 | failed | **not met** |")
    elif s is not None:
        a, b = rows[("W6", "dm-striped4")], rows[("W6", "direct")]
        noise = (max(x["spread"] or 0 for x in (a, b)) * s) if a["n"] > 1 and b["n"] > 1 else None
        ok = s >= STRIPE_TARGET
        total += 1
        met += ok
        out.append(f"| nbd-dm striped over 4 slow devices ≥ {STRIPE_TARGET}× one slow device | "
                   f"W6 | {rfmt(s, STRIPE_TARGET)}× | {verdict(ok, s - STRIPE_TARGET, noise)} |")
    return out, met, total


def keep_analysis(path):
    """The human-written analysis of an existing file, or the placeholder."""
    if not path or not os.path.exists(path):
        return PLACEHOLDER
    txt = open(path).read()
    m = re.search(re.escape(BEGIN) + r"\n?(.*?)\n?" + re.escape(END), txt, re.S)
    if m:
        return m.group(1).strip("\n") or PLACEHOLDER
    m = re.search(r"^## Analysis[^\n]*\n(.*?)(?=^## |\Z)", txt, re.S | re.M)
    if m and m.group(1).strip():
        return m.group(1).strip("\n")
    return PLACEHOLDER


def render(d, rows, meta, analysis):
    g = meta.get
    o = ["# nbd-dm performance", "",
         f"<!-- Generated by tests/bench/report.py from {os.path.basename(os.path.normpath(d))}; "
         "regenerate it instead of editing, except the Analysis section, which is kept. -->", ""]
    o += caution(meta)
    o += [f"Measured {g('date', '?')} with `tests/bench/bench.sh`: fio's nbd engine (one job, "
          "one connection) and nbdcopy against the device itself, the reference proxies and "
          "nbd-dm, all in one run with the repetitions interleaved, so the ratios are what "
          "to read; absolute numbers move with the machine.", ""]

    o += ["## Reproduce", "", "From the top of the repository:", "", "```sh",
          BUILD, g("command", "tests/bench/bench.sh"), "```", ""]

    o += ["## Machine", "",
          f"- {g('cpu', '?')}, {g('cores', '?')} cores, {g('memory', '?')} RAM, "
          f"{g('kernel', '?')}, virtualization: {g('virt', '?')}",
          f"- {g('nbdkit', '?')}, libnbd {g('libnbd', '?')}, {g('fio', '?')}, {g('qemu_nbd', '?')}",
          f"- plugin: `{g('plugin', '?')}` ({g('plugin_build', '?')})",
          f"- machine busy before the start: {busy_before(meta)}"]
    ref = os.path.join(d, "REF.txt")
    if os.path.exists(ref):
        o.append("- ceilings (REF):")
        for line in open(ref):
            if line.strip():
                o.append(f"  - `{line.strip()}`")
    o.append("")

    tl, met, total = targets(rows)
    o += ["## Targets", ""]
    if total:
        o += [f"{met} of {total} met (computed from the medians below; \"within the spread\" "
              "means the margin is smaller than the spread across reps, so another run may "
              "decide otherwise).", ""] + tl + [""]
    else:
        o += ["No target could be evaluated: the run lacks nbd-dm linear and nbdkit nbd, "
              "or W6 striped ×4 and direct.", ""]

    o += ["## Analysis", "", BEGIN, analysis, END, ""]

    main_w = any(w != "W6" for (w, _) in rows)
    o += ["## Results", "",
          f"Median of {g('REPS', '?')} interleaved reps of {g('RUNTIME', '?')} s "
          f"(+{g('RAMP', '?')} s ramp) each; fio: one job on one connection."]
    if main_w:
        o[-1] += (f" W1-W5 devices: `nbdkit memory` prefilled with a pattern, {g('SIZE', '?')} "
                  "per configuration (striped ×2 over two devices of half that, ×4 over four of "
                  f"a quarter, chunk {g('CHUNK', '?')} sectors); nbd-dm and nbdkit nbd run with "
                  f"`nbdkit -t {g('DM_THREADS', '?')}`.")
    if g("DM_EXTRA"):
        o[-1] += f" nbd-dm extra parameters: `{g('DM_EXTRA')}`."
    o += ["",
          "- **× direct**, **× nbdkit nbd**: ratio of medians of the key metric; higher is "
          "better, except in W5 where it is a latency ratio (lower is better).",
          "- **spread**: (max − min) / median of the key metric across reps; n = reps that ran.",
          "- **CPU%**: percent of one core over the whole fio run (connect and ramp included). "
          "*proxy* = the nbdkit nbd, qemu-nbd or nbd-dm process; *devices* = the device "
          "processes; *other* = machine busy minus the client (fio or nbdcopy), devices and "
          "proxy, i.e. others on the box; **proxy µs/op** = proxy CPU time per request.", ""]
    for w in ORDER:
        if any(ww == w for (ww, _) in rows):
            o += workload_table(rows, w, meta)
    return "\n".join(o).rstrip("\n") + "\n"


def main(argv):
    d, out = parse_args(argv, "--out", "report.py OUTDIR [--out docs/performance.md]")
    rows = load(d)
    if not rows:
        sys.exit(f"report.py: no results in {d}")
    text = render(d, rows, read_meta(d), keep_analysis(out))
    # the sections of bench-multipath.sh and bench-mirror.sh, as they are
    for begin, end in ((MP_BEGIN, MP_END), (MIRROR_BEGIN, MIRROR_END)):
        kept = find_section(out, begin, end)
        if kept:
            text += "\n" + kept + "\n"
    if out:
        write_file(out, text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
