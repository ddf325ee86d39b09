#!/usr/bin/env python3
"""Per-record checks by identity: every expected record found exactly once. Used by the
container tests (tests/containers) and scripts/load-test.sh.

    records.py loki  --url URL (--expected FILE | --k6-log FILE) --id FIELD [--query Q] [--since-ns NS]
    records.py lines --actual FILE (--expected FILE | --k6-log FILE) --id FIELD

EXPECTED is a JSON array or NDJSON of the records that were sent (each carries FIELD, a value
unique per record). With --k6-log instead, the expected records are those of every batch that
tests/load/ingestion-load-test.js logged as fully accepted (LOG_ACCEPTED=true: "accepted
PREFIX"; the batch's records carry FIELD = PREFIX-0 ... PREFIX-(BATCH-1), --batch as the script's
BATCH, default 100). `loki` reads every entry of URL's query API (Loki's query_range, paged
forward, entries seen twice at a page edge counted once: Loki itself never holds two identical
entries) and parses each line as a record; `lines` reads FILE, one record per line (a Kafka
topic dumped by `testkit topic`). Records whose FIELD is not an expected value are other
traffic and ignored. For each expected record: found exactly once, and with the same service
and message (where the expected record has them). Prints a summary, the first problems, and
one machine-readable line `records expected=N once=N missing=N duplicated=N altered=N`; exit 0
when every record passed, 1 when any is missing, duplicated or altered, 2 on bad input (no
expected record at all is bad input: nothing could be checked).
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request


def load_records(path):
    """The records of a JSON array or NDJSON file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# What the k6 script logs for each fully accepted batch (k6 quotes console output in msg="…").
K6_ACCEPTED = re.compile(r"accepted (k6-[A-Za-z0-9_.-]+)")


def k6_expected(path, field, batch):
    """The records of every batch the k6 script logged as fully accepted, by FIELD only."""
    with open(path, encoding="utf-8", errors="replace") as f:
        prefixes = list(dict.fromkeys(K6_ACCEPTED.findall(f.read())))
    return [{field: f"{p}-{i}"} for p in prefixes for i in range(batch)]


def loki_lines(url, query, since_ns, page):
    """Every line Loki's query API returns for QUERY from SINCE_NS to now, paged forward."""
    seen = set()
    lines = []
    start = since_ns
    while True:
        params = urllib.parse.urlencode(
            {"query": query, "start": start, "end": time.time_ns() + 3_600_000_000_000,
             "limit": page, "direction": "forward"})
        with urllib.request.urlopen(f"{url.rstrip('/')}/loki/api/v1/query_range?{params}",
                                    timeout=30) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise ValueError(f"query failed: {body}")
        new = 0
        last = start
        for stream in body["data"]["result"]:
            labels = json.dumps(stream["stream"], sort_keys=True)
            for ts, line, *_ in stream["values"]:
                key = (labels, ts, line)
                last = max(last, int(ts))
                if key in seen:
                    continue
                seen.add(key)
                lines.append(line)
                new += 1
        total = sum(len(s["values"]) for s in body["data"]["result"])
        if total < page or new == 0:
            return lines
        start = last


def check(expected, actual_lines, field):
    """Problems (strings) of ACTUAL against EXPECTED, matched by FIELD; and the found count."""
    want = {}
    for r in expected:
        key = r.get(field)
        if key is None:
            raise ValueError(f"an expected record has no {field!r}: {r}")
        if key in want:
            raise ValueError(f"{field} {key!r} is not unique among the expected records")
        want[key] = r
    found = {}
    for line in actual_lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        key = rec.get(field) if isinstance(rec, dict) else None
        if key in want:
            found.setdefault(key, []).append(rec)
    problems = []
    counts = {"missing": 0, "duplicated": 0, "altered": 0}
    for key, exp in want.items():
        got = found.get(key, [])
        if not got:
            counts["missing"] += 1
            problems.append(f"missing: {field}={key}")
        elif len(got) > 1:
            counts["duplicated"] += 1
            problems.append(f"duplicated {len(got)} times: {field}={key}")
        else:
            for k in ("service", "message"):
                if k in exp and got[0].get(k) != exp[k]:
                    counts["altered"] += 1
                    problems.append(f"altered {k}: {field}={key}: {got[0].get(k)!r} != {exp.get(k)!r}")
    once = sum(1 for k in want if len(found.get(k, [])) == 1)
    return problems, once, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)
    lk = sub.add_parser("loki")
    lk.add_argument("--url", required=True)
    lk.add_argument("--query", default='{source="kafka"}')
    lk.add_argument("--since-ns", type=int, default=0)
    lk.add_argument("--page", type=int, default=5000)
    ln = sub.add_parser("lines")
    ln.add_argument("--actual", required=True)
    for p in (lk, ln):
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--expected")
        which.add_argument("--k6-log")
        p.add_argument("--batch", type=int, default=100)
        p.add_argument("--id", required=True, dest="field")
    args = parser.parse_args()
    try:
        if args.expected:
            expected = load_records(args.expected)
        else:
            expected = k6_expected(args.k6_log, args.field, args.batch)
        if not expected:
            raise ValueError("no expected record: nothing to check")
        if args.source == "loki":
            lines = loki_lines(args.url, args.query, args.since_ns, args.page)
        else:
            with open(args.actual, encoding="utf-8") as f:
                lines = f.read().splitlines()
        problems, once, counts = check(expected, lines, args.field)
    except (OSError, ValueError) as e:
        print(f"records.py: {e}", file=sys.stderr)
        return 2
    print(f"expected {len(expected)} records by {args.field}: {once} found exactly once, "
          f"{len(problems)} problems ({len(lines)} records read)")
    for p in problems[:20]:
        print(f"  {p}")
    print(f"records expected={len(expected)} once={once} missing={counts['missing']} "
          f"duplicated={counts['duplicated']} altered={counts['altered']}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
