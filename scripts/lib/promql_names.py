#!/usr/bin/env python3
"""promql_names.py — checks that PromQL in alert rules and Grafana dashboards names only
allowed metrics, and writes every expression into one rules file so that promtool's real
parser can check its syntax.

usage: promql_names.py --allow NAMES.txt --syntax-out RULES.yml [--rules F.yml]... [--dashboards F.json]...

A name is a metric name when it stands where a series selector stands: not a function or
aggregation (followed by "("), not a keyword, not inside a label matcher, string, range or
grouping clause. Grafana's interval variables are replaced by 5m first. Exit 1 on an unknown
name, a selector by __name__, or when no expression at all was found.
"""

import argparse
import json
import re
import sys

import yaml

NAME = "promql_names"
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}
GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range|auto)(_ms|_s)?\b|\$\{__\w+\}")
STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGES = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def substitute(expr):
    return GRAFANA_VARS.sub("5m", expr)


def metric_names(expr):
    """The metric names an expression selects."""
    text = STRINGS.sub('""', expr)
    if re.search(r"__name__", text):
        raise ValueError("selects by __name__, which cannot be checked")
    text = MATCHERS.sub(" ", text)
    text = RANGES.sub(" ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENT.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS:
            continue
        names.add(word)
    return names


def rule_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            label = rule.get("alert") or rule.get("record")
            yield f"{path}: rule {label}", rule["expr"]


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)

    def is_prometheus(ds):
        return isinstance(ds, dict) and (ds.get("type") == "prometheus" or ds.get("uid") == "prometheus")

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource")
                if is_prometheus(ds) and target.get("expr"):
                    yield f'{path}: panel "{panel.get("title")}" {target.get("refId")}', target["expr"]
            yield from walk(panel.get("panels"))

    yield from walk(doc.get("panels"))
    for var in doc.get("templating", {}).get("list", []):
        if is_prometheus(var.get("datasource")) and isinstance(var.get("query"), str):
            yield f'{path}: variable "{var.get("name")}"', var["query"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allow", required=True)
    parser.add_argument("--syntax-out", required=True)
    parser.add_argument("--rules", action="append", default=[])
    parser.add_argument("--dashboards", action="append", default=[])
    args = parser.parse_args()

    with open(args.allow, encoding="utf-8") as f:
        allowed = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    # Self-test, so that a broken tokenizer cannot pass everything.
    probe = metric_names('sum by (le) (rate(foo_bucket{job="x"}[5m])) / on(a) bar offset 5m > bool 1e3')
    if probe != {"foo_bucket", "bar"}:
        print(f"{NAME}: tokenizer self-test failed: {sorted(probe)}", file=sys.stderr)
        return 1

    exprs = [e for p in args.rules for e in rule_exprs(p)]
    exprs += [e for p in args.dashboards for e in dashboard_exprs(p)]
    failures = 0
    syntax_rules = []
    for i, (where, expr) in enumerate(exprs):
        concrete = substitute(expr)
        syntax_rules.append({"record": f"check:expr_{i}", "expr": concrete})
        try:
            unknown = sorted(metric_names(concrete) - allowed)
        except ValueError as e:
            unknown = [str(e)]
        if unknown:
            failures += 1
            print(f"{NAME}: {where}: not in {args.allow}: {', '.join(unknown)}\n  {expr}", file=sys.stderr)
    with open(args.syntax_out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "syntax-check", "rules": syntax_rules}]}, f, sort_keys=False)
    print(f"{NAME}: {len(exprs)} PromQL expressions, {failures} naming unknown metrics")
    if not exprs:
        print(f"{NAME}: no expression found: wrong paths?", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
