#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""Check one --json payload of the control socket against its verb's schema.

    check-json.py VERB [FILE]        (FILE default: standard input)

The payload must be exactly one line, valid UTF-8 (checked on the raw
bytes: a reader that replaces bad bytes would hide them), one JSON object
without duplicate members, whose first member is "version": 1, and whose
members are exactly those of the verb's schema below, of the types it
says: no member missing, none extra, enums among their words, numbers as
numbers (booleans are not numbers), table words as arrays of strings.
docs/nbd-dmsetup.pod (JSON) describes the same shapes for people.
Exits 0 if it conforms, else 1 naming the member ("$.targets[2].detail.
legs[0].state") and what is wrong.  A new verb or member is not done
until its schema here says what it is.

Importable: check(verb, data) raises Invalid.
"""
import json
import re
import sys

JSON_VERSION = 1


class Invalid(Exception):
    pass


# ---- the schema language -----------------------------------------------------
#
# A schema is a dict (an object with exactly those members), a list of one
# schema (an array of them), one of the classes below, or a function
# f(value, path) that raises Invalid.

class Const:
    def __init__(self, value):
        self.value = value

    def check(self, v, path):
        if type(v) is not type(self.value) or v != self.value:
            raise Invalid(f"{path}: {v!r}, expected {self.value!r}")


class Enum:
    def __init__(self, *words):
        self.words = words

    def check(self, v, path):
        if not isinstance(v, str) or v not in self.words:
            raise Invalid(f"{path}: {v!r}, expected one of {self.words}")


class Null:
    """The schema, or null."""
    def __init__(self, schema):
        self.schema = schema

    def check(self, v, path):
        if v is not None:
            validate(self.schema, v, path)


class Map:
    """An object whose member names are among keys, each of schema."""
    def __init__(self, keys, schema):
        self.keys, self.schema = keys, schema

    def check(self, v, path):
        if not isinstance(v, dict) or set(v) != set(self.keys):
            raise Invalid(f"{path}: {v!r}, expected an object with the "
                          f"members {self.keys}")
        for k, x in v.items():
            validate(self.schema, x, f"{path}.{k}")


class Array:
    """An array of schema, of length n if given."""
    def __init__(self, schema, n=None):
        self.schema, self.n = schema, n

    def check(self, v, path):
        if not isinstance(v, list):
            raise Invalid(f"{path}: {v!r}, expected an array")
        if self.n is not None and len(v) != self.n:
            raise Invalid(f"{path}: {len(v)} elements, expected {self.n}")
        for i, x in enumerate(v):
            validate(self.schema, x, f"{path}[{i}]")


def Str(v, path):
    if not isinstance(v, str):
        raise Invalid(f"{path}: {v!r}, expected a string")


def NonEmpty(v, path):
    Str(v, path)
    if v == "":
        raise Invalid(f"{path}: empty string")


def Bool(v, path):
    if not isinstance(v, bool):
        raise Invalid(f"{path}: {v!r}, expected true or false")


def Int(v, path):
    if not isinstance(v, int) or isinstance(v, bool):
        raise Invalid(f"{path}: {v!r}, expected an integer")


def UInt(v, path):
    Int(v, path)
    if v < 0:
        raise Invalid(f"{path}: {v!r}, expected an integer >= 0")


def Attr(v, path):
    """dmsetup's attr: (L)ive, (I)nactive, (s)uspended, (r)ead-only or
    (w)ritable."""
    if not isinstance(v, str) or not re.fullmatch("L[I-][s-][rw]", v):
        raise Invalid(f"{path}: {v!r}, expected dmsetup's attr (L--w)")


def Number(v, path):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise Invalid(f"{path}: {v!r}, expected a number")


def validate(schema, v, path):
    if isinstance(schema, dict):
        if not isinstance(v, dict):
            raise Invalid(f"{path}: {v!r}, expected an object")
        missing = [k for k in schema if k not in v]
        extra = [k for k in v if k not in schema]
        if missing or extra:
            raise Invalid(f"{path}: members missing {missing}, unknown "
                          f"{extra}")
        for k, s in schema.items():
            validate(s, v[k], f"{path}.{k}")
    elif isinstance(schema, list):
        Array(schema[0]).check(v, path)
    elif hasattr(schema, "check"):
        schema.check(v, path)
    else:
        schema(v, path)


def state_and_reason(failed_word):
    """An item's state is a word and its reason apart: a string while
    the state is failed_word, null otherwise."""
    def check(v, path):
        failed = v["state"] == failed_word
        if failed and not (isinstance(v["reason"], str) and v["reason"]):
            raise Invalid(f"{path}.reason: {v['reason']!r}, expected why "
                          f"it is {failed_word}")
        if not failed and v["reason"] is not None:
            raise Invalid(f"{path}.reason: {v['reason']!r} while "
                          f"{v['state']!r}, expected null")
    return check


def both(*schemas):
    def check(v, path):
        for s in schemas:
            validate(s, v, path)
    return check


# ---- the payloads -----------------------------------------------------------

# core/stats.c: per kind, requests and bytes; a latency histogram per
# kind (core/latency.c's buckets, the empty ones left out).
CLASSES = ["read", "write", "flush", "trim", "zero", "other"]


def bucket(v, path):
    """{"ge":LO,"lt":HI,"count":N}; the last bucket has no "lt"."""
    if not isinstance(v, dict):
        raise Invalid(f"{path}: {v!r}, expected an object")
    keys = {"ge", "lt", "count"} if "lt" in v else {"ge", "count"}
    validate({k: UInt for k in keys}, v, path)
    if "lt" in v and not v["ge"] < v["lt"]:
        raise Invalid(f"{path}: an empty range {v}")
    if v["count"] == 0:
        raise Invalid(f"{path}: an empty bucket is left out")


def histogram_sums(v, path):
    """The buckets hold count samples, in order; percentiles only then."""
    if sum(b["count"] for b in v["buckets"]) != v["count"]:
        raise Invalid(f"{path}: buckets do not add up to count {v['count']}")
    lows = [b["ge"] for b in v["buckets"]]
    if lows != sorted(set(lows)):
        raise Invalid(f"{path}: buckets out of order")
    for q in ("p50", "p90", "p99", "p999"):
        if (v[q] is None) != (v["count"] == 0):
            raise Invalid(f"{path}.{q}: {v[q]!r} with {v['count']} samples")


HISTOGRAM = both({"count": UInt, "sum": UInt, "p50": Null(Number),
                  "p90": Null(Number), "p99": Null(Number),
                  "p999": Null(Number), "buckets": Array(bucket)},
                 histogram_sums)
IO = {"reads": UInt, "read_bytes": UInt, "writes": UInt, "write_bytes": UInt,
      "flushes": UInt, "flush_bytes": UInt, "trims": UInt, "trim_bytes": UInt,
      "zeroes": UInt, "zero_bytes": UInt, "others": UInt, "other_bytes": UInt,
      "errors": UInt, "requeues": UInt, "in_flight": Int, "seconds": Number,
      "latency_us": Map(CLASSES, HISTOGRAM)}

# command.c's device_json.
DEVICE = {"uri": NonEmpty, "state": Enum("up", "degraded", "down"),
          "reason": Null(Str), "connections": UInt, "connections_up": UInt,
          "quarantined_writes": UInt}


def device_reason(v, path):
    """The reason says why a device is down, and only then."""
    if v["state"] != "down" and v["reason"] is not None:
        raise Invalid(f"{path}.reason: {v['reason']!r} while {v['state']}")
    if v["connections_up"] > v["connections"]:
        raise Invalid(f"{path}: more connections up than there are")


DEVICE_STATE = both(DEVICE, device_reason)
DEVICE_IO = both(dict(DEVICE, io=IO), device_reason)

CHECKED = {"reason": Null(Str), "fail_count": UInt, "damped_ms": UInt,
           "next_check_ms": Null(UInt)}

MULTIPATH = {
    "queue_if_no_path": Bool, "holds_io": Bool, "queueing": Bool,
    "valid_paths": UInt,
    "groups": [{
        "group": UInt, "state": Enum("active", "enabled", "disabled"),
        "selector": Enum("round-robin", "queue-length", "service-time"),
        "paths": [both(dict(CHECKED, path=NonEmpty,
                            state=Enum("active", "failed")),
                       state_and_reason("failed"))],
    }],
}

MIRROR = {
    "regions": UInt, "in_sync": UInt, "region_size": UInt,
    "handle_errors": Bool, "keep_log": Bool,
    "read_balance": Enum("queue-length", "round-robin", "default_leg"),
    "default_leg": Null(NonEmpty),
    "log": {"type": Enum("core", "disk"), "device": Null(NonEmpty),
            "health": Enum("A", "D", "F"), "region_size": UInt,
            "regions": UInt, "in_sync": UInt, "marked": UInt,
            "failed_legs": UInt, "dirty_at_load": UInt, "commits": UInt},
    "resync": {"state": Enum("running", "idle"), "rate_limit": UInt,
               "rate": UInt, "eta_ms": UInt, "copied": UInt},
    "verify": {"state": Enum("running", "idle"), "checked": UInt,
               "mismatches": UInt, "regions": [UInt]},
    "legs": [both(dict(CHECKED, leg=NonEmpty,
                       state=Enum("in_sync", "resyncing", "failed"),
                       health=Enum("A", "D", "S", "R", "F", "U"),
                       write_errors=UInt, read_errors=UInt,
                       read_repairs=UInt, reads=UInt),
                  state_and_reason("failed"))],
}

# The "detail" of each target type that has one; the others' is null.
DETAILS = {"multipath": MULTIPATH, "mirror": MIRROR}
# Members a target type adds to its stats object, named after it.
TARGET_STATS = {"mirror": {"read_repairs": UInt, "resynced": UInt,
                           "verify_mismatches": UInt}}
TARGET_TYPES = Enum("linear", "striped", "zero", "error", "flakey", "delay",
                    "dust", "multipath", "mirror")
HEAD = {"start": UInt, "length": UInt, "type": TARGET_TYPES}


def by_type(members):
    """A target's object: HEAD, members(type) for its type."""
    def check(v, path):
        if not isinstance(v, dict) or not isinstance(v.get("type"), str):
            raise Invalid(f"{path}: {v!r}, expected a target with a type")
        validate(dict(HEAD, **members(v["type"])), v, path)
    return check


def contiguous(v, path):
    """Targets from sector 0, no gap, no overlap (DESIGN.md 2)."""
    at = 0
    for i, t in enumerate(v):
        if t["start"] != at or t["length"] == 0:
            raise Invalid(f"{path}[{i}]: starts at {t['start']}, length "
                          f"{t['length']}; expected to start at {at}")
        at += t["length"]


def targets(members):
    return both([by_type(members)], contiguous)


SCHEMAS = {
    "info": {"name": Str, "state": Enum("active", "suspended"),
             "live_table": Const(True), "inactive_table": Bool,
             "open_count": UInt, "event_nr": UInt, "targets": UInt,
             "size_sectors": UInt, "size_bytes": UInt},
    "table": {"targets": targets(lambda t: {"args": [Str]})},
    "status": {"targets": targets(lambda t: {
        "status": [Str],
        "detail": DETAILS.get(t, Const(None)),
        "devices": [DEVICE_STATE]})},
    "stats": {"targets": targets(lambda t: dict(
                  {"io": IO},
                  **({t: TARGET_STATS[t]} if t in TARGET_STATS else {}))),
              "devices": [DEVICE_IO]},
    "message": {"result": Str},
    "wait": {"event_nr": UInt},
    "version": {"protocol": Const(1), "program": Const("nbd-dm"),
                "program_version": NonEmpty},
    "help": {"verbs": [{"name": NonEmpty, "usage": NonEmpty}]},
    "deps": {"devices": [DEVICE_STATE]},
    "targets": {"targets": [{"name": TARGET_TYPES,
                             "version": Array(UInt, 3)}]},
    # info --columns without -o: one row of every field, dmsetup's.
    "info --columns": {"rows": Array({"name": Str, "attr": Attr,
                                      "open": UInt, "segments": UInt,
                                      "events": UInt}, 1)},
}
# Verbs that only act: no payload, with --json or without.
NO_PAYLOAD = ("suspend", "reload", "resume", "clear")


def cross_checks(verb, doc):
    if verb == "info" and doc["size_bytes"] != doc["size_sectors"] * 512:
        raise Invalid("$.size_bytes is not size_sectors * 512")


def no_duplicates(pairs):
    names = [k for k, _ in pairs]
    dup = {k for k in names if names.count(k) > 1}
    if dup:
        raise Invalid(f"duplicate members {sorted(dup)}")
    return dict(pairs)


def check(verb, data):
    """data: the payload's bytes as the socket sent them."""
    if verb in NO_PAYLOAD:
        if data != b"":
            raise Invalid(f"{verb} prints nothing, got {data[:200]!r}")
        return None
    if verb not in SCHEMAS:
        raise Invalid(f"no schema for verb '{verb}': add one to "
                      "check-json.py")
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise Invalid(f"not exactly one line: {data[:200]!r}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"not UTF-8: {e}: {data[max(0, e.start - 40):e.end + 40]!r}")
    try:
        doc = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise Invalid(f"not JSON: {e}: {text[:200]!r}")
    if not isinstance(doc, dict) or list(doc)[:1] != ["version"]:
        raise Invalid(f"$: expected an object whose first member is "
                      f"\"version\": {text[:200]!r}")
    validate(dict(SCHEMAS[verb], version=Const(JSON_VERSION)), doc, "$")
    cross_checks(verb, doc)
    return doc


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    verb = sys.argv[1]
    f = open(sys.argv[2], "rb") if len(sys.argv) == 3 else sys.stdin.buffer
    data = f.read()
    try:
        check(verb, data)
    except Invalid as e:
        sys.exit(f"{verb} --json: {e}")


if __name__ == "__main__":
    main()
