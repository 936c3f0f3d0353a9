#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Turn one bench-multipath.sh result dir into a table on stdout and,
with --doc, the MULTIPATH section of docs/performance.md.

    report_multipath.py OUTDIR [--doc docs/performance.md]

Only the text between <!-- MULTIPATH:BEGIN --> and <!-- MULTIPATH:END -->
is replaced (markers included); without them the section is appended at
the end.  Nothing else in the file is touched.

Scaling: per config, the median over reps of fio's IOPS; ratios are ratios
of medians; spread = (max - min) / median.  Failover and reinstate: per rep
from the probe's I/O log (failover_probe.py) and the script's timestamps;
see bench-multipath.sh's header for what each column means.
"""
import glob
import os
import re
import sys

from reportlib import (BUILD, MP_BEGIN, MP_END, busy_before, caution, fmt, med,
                       parse_args, read_fio, read_json, read_meta, seconds, spread,
                       spread_cell, verdict, write_section)

TARGET = 1.8            # multipath over 2 paths vs nbd-dm linear over 1


# ---- part 1 -------------------------------------------------------------

def load_scaling(d):
    """cfg -> {"n", "failed", "iops", "p50", "p99", "px", "paths", "busy", "spread"}"""
    reps = {}
    for f in glob.glob(os.path.join(d, "S.*.r*.*")):
        parts = os.path.basename(f).split(".")
        cfg = parts[1]
        tag = ".".join(parts[:3])
        reps.setdefault(cfg, {})[tag] = None
    rows = {}
    for cfg, tags in reps.items():
        ok, failed = [], 0
        for tag in sorted(tags):
            fj = os.path.join(d, tag + ".json")
            if os.path.exists(os.path.join(d, tag + ".failed")) or not os.path.exists(fj):
                failed += 1
                continue
            f = read_fio(fj)
            c = read_json(os.path.join(d, tag + ".cpu.json"), {})
            # the paths are bench-multipath.sh's devices ("paths_cpu" before
            # both scripts shared measure)
            ok.append({"iops": f["iops"], "p50": f["p50"], "p99": f["p99"],
                       "px": c.get("proxy_cpu"), "paths": c.get("backend_cpu", c.get("paths_cpu")),
                       "busy": c.get("machine_busy")})
        row = {"n": len(ok), "failed": failed,
               "spread": spread([r["iops"] for r in ok]),
               "all": [r["iops"] for r in ok]}
        for k in ("iops", "p50", "p99", "px", "paths", "busy"):
            row[k] = med([r[k] for r in ok])
        rows[cfg] = row
    return rows


def cfg_order(c):
    if c == "direct":
        return (0, 0)
    if c == "dm-linear":
        return (1, 0)
    m = re.fullmatch(r"dm-mp-rr(\d+)", c)
    return (2, int(m.group(1))) if m else (3, 0)


def connections(meta):
    m = re.search(r"(?:^|\s)connections=(\d+)", meta.get("DM_EXTRA", ""))
    return int(m.group(1)) if m else 2


def reconnect_ms(meta):
    m = re.search(r"(?:^|\s)reconnect-delay=(\d+)",
                  meta.get("DM_EXTRA", "") + " " + meta.get("FAIL_EXTRA", ""))
    return int(m.group(1)) if m else 1000


def ceiling(meta, cfg):
    """Little's law: min(QD, requests the paths serve at once) / delay."""
    try:
        qd, t = int(meta.get("QD", "64")), int(meta.get("DTHREADS", "16"))
    except ValueError:
        return None
    dl = seconds(meta.get("DELAY"))
    if not dl:
        return None
    conns = {"direct": 1, "dm-linear": connections(meta)}.get(cfg, 2 * connections(meta))
    return min(qd, conns * t) / dl


def label(c):
    if c == "direct":
        return "one path, direct (fio → p1)"
    if c == "dm-linear":
        return "nbd-dm linear over one path"
    m = re.fullmatch(r"dm-mp-rr(\d+)", c)
    if m:
        return f"**nbd-dm multipath, 2 paths, round-robin repeat_count {m.group(1)}**"
    return c


def scaling_lines(rows, meta):
    if not rows:
        return [], []
    base = rows.get("dm-linear", {}).get("iops")
    direct = rows.get("direct", {}).get("iops")
    out = ["| config | IOPS | p50 µs | p99 µs | × one path direct | × nbd-dm linear | "
           "spread (n) | ceiling IOPS | nbd-dm CPU% | paths CPU% | machine busy% |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for c in sorted(rows, key=cfg_order):
        r = rows[c]
        if r["n"] == 0:
            out.append(f"| {label(c)} | failed ({r['failed']} reps) |" + " |" * 9)
            continue
        out.append("| " + " | ".join([
            label(c), fmt(r["iops"], "{:,.0f}"), fmt(r["p50"]), fmt(r["p99"]),
            fmt(r["iops"] / direct if direct else None, "{:.2f}"),
            fmt(r["iops"] / base if base else None, "{:.2f}"),
            spread_cell(r), fmt(ceiling(meta, c), "{:,.0f}"),
            "–" if c == "direct" else fmt(r["px"]), fmt(r["paths"]), fmt(r["busy"])]) + " |")
        if c.startswith("dm-mp-") and base:
            ratio = r["iops"] / base
            noise = max(r["spread"] or 0, rows["dm-linear"]["spread"] or 0) * ratio
            verdicts.append((c, ratio, verdict(ratio >= TARGET, ratio - TARGET, noise)))
    return out, verdicts


# ---- part 2 -------------------------------------------------------------

def failover_rep(d, tag):
    ev = read_json(os.path.join(d, tag + ".events.json"))
    pj = os.path.join(d, tag + ".io.json")
    io = read_json(pj, {"ios": [], "mismatches": []})
    k = ev["kill"]
    ios = io["ios"]
    before = [x[2] - x[1] for x in ios if x[3] is None and k - 1.0 <= x[1] and x[2] < k]
    at_kill = [x for x in ios if x[1] <= k < x[2]]
    around = [x for x in ios if k - 1.0 <= x[1] <= k + 1.0]
    done = sorted(x[2] for x in ios if k - 0.5 <= x[2] <= k + 2.0)
    gaps = [b - a for a, b in zip(done, done[1:])]
    if done and done[0] > k:
        gaps.append(done[0] - k)
    ms = lambda a, b: None if a is None or b is None else (b - a) * 1000
    return {
        "detect": ms(k, ev.get("failed_seen")),
        "n_at_kill": len(at_kill),
        "drain": ms(k, max((x[2] for x in at_kill), default=None)),
        "maxlat": max(((x[2] - x[1]) * 1000 for x in around), default=None),
        "gap": max(gaps, default=None) * 1000 if gaps else None,
        "base_p50": med(before) * 1000 if before else None,
        "base_max": max(before) * 1000 if before else None,
        "ios": len(ios),
        "errors": sum(1 for x in ios if x[3] is not None),
        "first_error": next((x[3] for x in ios if x[3] is not None), None),
        "bad": len(io["mismatches"]),
        "fatal": io.get("fatal"),
        "listen": ms(ev["restart"], ev.get("listening")),
        "reinstate": ms(ev["restart"], ev.get("active_seen")),
        "poll": ev.get("poll"),
    }


def load_failover(d):
    tags = sorted({".".join(os.path.basename(f).split(".")[:2])
                   for f in glob.glob(os.path.join(d, "F.r*.events.json"))},
                  key=lambda t: int(t.split(".r")[1]))
    return [(t, failover_rep(d, t)) for t in tags]


FCOLS = [("detect", "kill → F in status ms"), ("drain", "kill → in-flight done ms"),
         ("maxlat", "max I/O latency ms"), ("gap", "longest no-completion gap ms"),
         ("base_p50", "p50 before ms"), ("errors", "I/O errors"), ("bad", "bad reads"),
         ("listen", "restart → listening ms"), ("reinstate", "restart → A in status ms")]


def failover_lines(reps):
    out = ["| rep | " + " | ".join(h for _, h in FCOLS) + " | I/Os (in flight at kill) |",
           "|---|" + "---:|" * (len(FCOLS) + 1)]
    f = lambda v, k: ("never" if v is None and k in ("detect", "reinstate") else
                      fmt(v, "{:.1f}" if k in ("base_p50",) else "{:.0f}"))
    for t, r in reps:
        out.append(f"| {t.split('.r')[1]} | " + " | ".join(f(r[k], k) for k, _ in FCOLS)
                   + f" | {r['ios']} ({r['n_at_kill']}) |")
    if len(reps) > 1:
        cells = []
        for k, _ in FCOLS:
            v = [r[k] for _, r in reps]
            if k in ("errors", "bad"):
                cells.append(str(sum(v)) + " (sum)")
            elif any(x is None for x in v) and k in ("detect", "reinstate"):
                cells.append(f"{sum(x is None for x in v)} never")
            else:
                cells.append(f(med(v), k))
        out.append("| median | " + " | ".join(cells) + " | |")
    return out


# ---- output ---------------------------------------------------------------

def render(d, meta, rows, reps):
    g = meta.get
    o = [MP_BEGIN, "## Multipath (issue 4)", ""] + caution(meta)
    o += [f"Measured {g('date', '?')} with `tests/bench/bench-multipath.sh` (raw results: "
          f"`{g('outdir', os.path.basename(os.path.normpath(d)))}/`), from the top of the "
          "repository:", "", "```sh",
          BUILD, g("command", "tests/bench/bench-multipath.sh"), "```", "",
          f"{g('cpu', '?')}, {g('cores', '?')} cores, {g('kernel', '?')}; {g('nbdkit', '?')}, "
          f"libnbd {g('libnbd', '?')}, {g('fio', '?')}; plugin `{g('plugin', '?')}` "
          f"({g('plugin_build', '?')}); machine busy before the start: "
          f"{busy_before(meta)}.", "",
          f"Paths: two `nbdkit -t {g('DTHREADS', '?')} --filter=delay file` servers on one "
          f"shared {g('DSIZE', '?')} backing file, delay-read/write {g('DELAY', '?')}. nbd-dm "
          f"runs with `nbdkit -t {g('WTHREADS', '?')}` and opens {connections(meta)} "
          "connections per path (`connections`)"
          + (f", extra parameters `{g('DM_EXTRA')}`" if g("DM_EXTRA") else "") + ".", ""]
    if rows:
        tl, verdicts = scaling_lines(rows, meta)
        o += [f"### Round-robin over 2 slow paths — 4 KiB random read, QD{g('QD', '?')}", "",
              f"fio's nbd engine, one job on one connection; median of {g('REPS', '?')} "
              f"interleaved reps of {g('RUNTIME', '?')} s (+{g('RAMP', '?')} s ramp). "
              "*ceiling* = min(QD, requests the paths serve at once) / delay (Little's law): "
              "one connection to a path serves `-t` requests at once, so nbd-dm over two "
              "paths can reach at most 2× nbd-dm over one. *CPU%*: of one core over the run.",
              ""] + tl + [""]
        for c, ratio, v in verdicts:
            o.append(f"- {label(c).strip('*')} / nbd-dm linear over one path = "
                     f"**{ratio:.2f}×** (target ≥ {TARGET}×): {v}.")
        o.append("")
    if reps:
        o += ["### Failover and reinstate — SIGKILL of one path's server under I/O", "",
              f"nbd-dm multipath, round-robin repeat_count 1, `checker-interval={g('CHECKER', '?')}`"
              + (f" `{g('FAIL_EXTRA')}`" if g("FAIL_EXTRA") else "")
              + f", `control=SOCKET`; a fresh nbd-dm per rep. The probe "
              f"(`tests/bench/failover_probe.py`, libnbd, one connection) keeps "
              f"{g('FQD', '?')} requests in flight, 4 KiB writes and reads, and checks that "
              "each read returns the last completed write of its block. p1's server is "
              f"SIGKILLed after {g('WARM', '?')} s; "
              f"`nbd-dmsetup status` is polled every {g('POLL', '?')} s (so the *status* "
              f"times are upper bounds, ~{fmt(1000 * float(g('POLL', '0') or 0))} ms coarse); "
              f"p1 is restarted {g('HOLD', '?')} s + a random 0–{g('JITTER', '?')} s after "
              "the kill (its stale socket removed first).", "",
              "- *kill → in-flight done*: until the last I/O that was in flight at the kill "
              "completed (those on p1 were requeued to p2).",
              "- *max I/O latency*: the longest I/O submitted within 1 s of the kill; "
              "*longest no-completion gap*: in the 2 s after it; *p50 before*: the second "
              "before it.",
              "- *restart → A*: the checker probes a failed path every checker-interval and "
              "reinstates it once it answers and nbd-dm's own connections to it are back; "
              f"they retry every reconnect-delay ({reconnect_ms(meta)} ms here), so expect "
              "up to reconnect-delay + checker-interval.", ""]
        o += failover_lines(reps) + [""]
        errs = [(t, r) for t, r in reps if r["errors"] or r["bad"] or r["fatal"]]
        for t, r in errs:
            o.append(f"- {t}: {r['errors']} I/O errors (first: `{r['first_error']}`), "
                     f"{r['bad']} bad reads, connection: {r['fatal'] or 'ok'}.")
        if errs:
            o.append("")
    o.append(MP_END)
    return "\n".join(o) + "\n"


def main(argv):
    d, doc = parse_args(argv, "--doc", "report_multipath.py OUTDIR [--doc docs/performance.md]")
    meta, rows, reps = read_meta(d), load_scaling(d), load_failover(d)
    if not rows and not reps:
        sys.exit(f"report_multipath.py: no results in {d}")
    # stdout: the short form
    if rows:
        print(f"scaling: 4 KiB randread QD{meta.get('QD', '?')}, median of {meta.get('REPS', '?')}")
        base = rows.get("dm-linear", {}).get("iops")
        direct = rows.get("direct", {}).get("iops")
        print(f"  {'config':<14} {'IOPS':>8} {'x direct':>9} {'x linear':>9} {'spread':>7} "
              f"{'ceiling':>8} {'dm CPU%':>8}  reps")
        for c in sorted(rows, key=cfg_order):
            r = rows[c]
            if r["n"] == 0:
                print(f"  {c:<14} failed")
                continue
            print(f"  {c:<14} {r['iops']:>8.0f} {fmt(r['iops'] / direct if direct else None, '{:.2f}'):>9} "
                  f"{fmt(r['iops'] / base if base else None, '{:.2f}'):>9} "
                  f"{fmt(None if r['spread'] is None else 100 * r['spread'], '{:.0f}%'):>7} "
                  f"{fmt(ceiling(meta, c), '{:.0f}'):>8} "
                  f"{'-' if c == 'direct' else fmt(r['px']):>8}  "
                  + " ".join(f"{x:.0f}" for x in r["all"]))
        for c, ratio, v in scaling_lines(rows, meta)[1]:
            print(f"  {c} / dm-linear = {ratio:.2f}x (target >= {TARGET}x): {v.replace('*', '')}")
    if reps:
        print(f"failover/reinstate (checker-interval={meta.get('CHECKER', '?')}"
              f"{' ' + meta['FAIL_EXTRA'] if meta.get('FAIL_EXTRA') else ''}), ms:")
        keys = [k for k, _ in FCOLS]
        print("  rep " + " ".join(f"{k:>9}" for k in keys) + "  ios(at kill)")
        for t, r in reps:
            print(f"  {t.split('.r')[1]:>3} " + " ".join(
                f"{fmt(r[k], '{:.1f}' if k == 'base_p50' else '{:.0f}', 'never' if k in ('detect', 'reinstate') else '-'):>9}"
                for k in keys) + f"  {r['ios']}({r['n_at_kill']})")
            if r["errors"] or r["fatal"]:
                print(f"      first error: {r['first_error']}; connection: {r['fatal'] or 'ok'}")
        if len(reps) > 1:
            print("  med " + " ".join(
                f"{fmt(med([r[k] for _, r in reps]), '{:.1f}' if k == 'base_p50' else '{:.0f}'):>9}"
                if k not in ("errors", "bad") else f"{sum(r[k] for _, r in reps):>9}"
                for k in keys) + "  (errors, bad: sums)")
    if doc:
        write_section(doc, MP_BEGIN, MP_END, render(d, meta, rows, reps))
        print(f"wrote the MULTIPATH section of {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
