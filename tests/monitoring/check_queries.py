#!/usr/bin/env python3
"""Checks every PromQL expression that loratrf ships: the Prometheus rule files and the Grafana
dashboards.

  (a) each expression parses: they are written, Grafana variables substituted, as recording rules
      into a temporary rule file that `promtool check rules` reads;
  (b) each metric name an expression uses is exported: given by --documented FILE (the tables
      of docs/metrics.md: a row `| `name` | type | ...`, histograms standing for their
      _bucket/_sum/_count series), --exported FILE (one name a line) and/or --metrics-url URL (a
      running binary's /metrics), plus the names the rule files record and the series
      Prometheus makes itself (up, scrape_*, ALERTS);
  (d) with --documented and --metrics-url together: the loratrf_ families the binaries export
      are exactly the documented ones (none undocumented, none documented but missing);
  (c) every alert has a severity of page or ticket and the annotations summary, description and
      runbook.

Usage:
  check_queries.py [--repo DIR] [--documented FILE] [--exported FILE]... [--metrics-url URL]...
                   [--require-samples]
                   [--promtool PATH] [--list] [FILE...]
FILEs are rule files (.yml/.yaml) and dashboards (.json); by default every file under
deploy/prometheus/rules/ and deploy/grafana/dashboards/ of the repository. Without --exported or
--metrics-url only (a) and (c) run. Exit status 0 when all is well, 1 when a check fails, 2 on
bad usage.

Python standard library only: the rule files are read with a small reader of the YAML subset
they are written in (block mappings and sequences, plain and quoted scalars, | and > blocks),
cross-checked against promtool's rule count and, where PyYAML happens to be installed, against
PyYAML itself.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

# ---------------------------------------------------------------------------------------------
# A reader for the YAML subset of the rule files.


class YamlError(Exception):
    pass


_KEY_RE = re.compile(r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"\[\]{}&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s+(.*))?$""")


def _unquote(text, where):
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlError("%s: unterminated double-quoted string" % where)
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlError("%s: unterminated single-quoted string" % where)
        return text[1:-1].replace("''", "'")
    return text


def _strip_comment(text):
    """A plain scalar ends before ' #'."""
    m = re.search(r"\s#", text)
    return (text[:m.start()] if m else text).strip()


class _Reader:
    def __init__(self, text, source):
        self.lines = text.split("\n")
        self.source = source

    def where(self, i):
        return "%s:%d" % (self.source, i + 1)

    def indent(self, i):
        line = self.lines[i]
        return len(line) - len(line.lstrip(" "))

    def significant(self, i):
        """The index of the next line that is neither blank nor a comment, or None."""
        while i is not None and i < len(self.lines):
            s = self.lines[i].strip()
            if s and not s.startswith("#"):
                if "\t" in self.lines[i][: self.indent(i) + 1]:
                    raise YamlError("%s: tab in indentation" % self.where(i))
                return i
            i += 1
        return None

    def document(self):
        i = self.significant(0)
        if i is None:
            return None
        if self.lines[i].strip() == "---":
            i = self.significant(i + 1)
        value, i = self.node(i, self.indent(i))
        i = self.significant(i)
        if i is not None:
            raise YamlError("%s: unexpected content (indentation?)" % self.where(i))
        return value

    def node(self, i, indent):
        content = self.lines[i].strip()
        if content == "-" or content.startswith("- "):
            return self.sequence(i, indent)
        if _KEY_RE.match(content):
            return self.mapping(i, indent)
        raise YamlError("%s: expected 'key: value' or '- item'" % self.where(i))

    def sequence(self, i, indent):
        items = []
        while i is not None and self.indent(i) == indent:
            content = self.lines[i].strip()
            if not (content == "-" or content.startswith("- ")):
                break
            rest = content[1:].strip()
            if not rest or rest.startswith("#"):
                j = self.significant(i + 1)
                if j is None or self.indent(j) <= indent:
                    items.append(None)
                    i = j
                    continue
                value, i = self.node(j, self.indent(j))
            else:
                # "- key: value" opens a mapping whose keys line up with `key`: read it as if
                # the dash were a space.
                offset = indent + 1 + len(content[1:]) - len(content[1:].lstrip(" "))
                if rest == "-" or rest.startswith("- ") or _KEY_RE.match(rest):
                    self.lines[i] = " " * offset + rest
                    value, i = self.node(i, offset)
                else:
                    value, i = self.scalar(rest, i, indent)
            items.append(value)
            i = self.significant(i) if i is not None else None
        return items, i

    def mapping(self, i, indent):
        result = {}
        while i is not None and self.indent(i) == indent:
            content = self.lines[i].strip()
            m = _KEY_RE.match(content)
            if not m or content.startswith("- "):
                break
            key = _unquote(m.group(1), self.where(i))
            if key in result:
                raise YamlError("%s: duplicate key %r" % (self.where(i), key))
            rest = (m.group(2) or "").strip()
            if not rest or rest.startswith("#"):
                j = self.significant(i + 1)
                if j is not None and (self.indent(j) > indent or (
                        self.indent(j) == indent and self.lines[j].strip().startswith("-"))):
                    result[key], i = self.node(j, self.indent(j))
                else:
                    result[key], i = None, j
            else:
                result[key], i = self.scalar(rest, i, indent)
            i = self.significant(i) if i is not None else None
        return result, i

    def scalar(self, rest, i, indent):
        """A scalar after `key:` on line i (the key at `indent`); returns (value, next line)."""
        where = self.where(i)
        if rest[0] in "[{&*!%@`":
            raise YamlError("%s: flow collections, anchors and tags are not in the subset this "
                            "reader knows; write the value in block style" % where)
        if rest[0] in "|>":
            m = re.match(r"^([|>])([+-]?)\s*(#.*)?$", rest)
            if not m:
                raise YamlError("%s: block scalar header %r not supported" % (where, rest))
            style, chomp = m.group(1), m.group(2)
            j, block = i + 1, []
            while j < len(self.lines) and (not self.lines[j].strip() or self.indent(j) > indent):
                block.append(self.lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            body = [l for l in block if l.strip()]
            if not body:
                return "", j
            cut = min(len(l) - len(l.lstrip(" ")) for l in body)
            block = [l[cut:] for l in block]
            if style == "|":
                text = "\n".join(block)
            else:
                text, para = "", []
                for l in block:
                    if not l.strip():
                        text += " ".join(para) + "\n"
                        para = []
                    elif l.startswith(" "):
                        raise YamlError("%s: more-indented lines in a folded block" % where)
                    else:
                        para.append(l)
                text += " ".join(para)
            if chomp != "-":
                text += "\n"
            return text, j
        if rest[0] in "\"'":
            return _unquote(rest.split(" #")[0].strip() if rest[0] == "'" else rest, where), i + 1
        # A plain scalar, possibly continued on more-indented lines.
        parts, j = [_strip_comment(rest)], i + 1
        while True:
            k = self.significant(j)
            if k is None or self.indent(k) <= indent:
                break
            parts.append(_strip_comment(self.lines[k]))
            j = k + 1
        return " ".join(parts), j


def read_yaml_subset(text, source):
    return _Reader(text, source).document()


def _normalise(value):
    """Leaves as strings, for comparing with PyYAML (which types its scalars)."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Expressions of the rule files and the dashboards.


class Expr:
    def __init__(self, source, what, text):
        self.source, self.what, self.text = source, what, text

    def __str__(self):
        return "%s: %s" % (self.source, self.what)


def rule_file_exprs(path, problems, recorded):
    text = open(path, encoding="utf-8").read()
    try:
        doc = read_yaml_subset(text, path)
    except YamlError as e:
        problems.append("cannot read: %s" % e)
        return []
    try:
        import yaml  # only for a cross-check where it happens to be installed
    except ImportError:
        yaml = None
    if yaml is not None and _normalise(yaml.safe_load(text)) != _normalise(doc):
        problems.append("%s: the built-in YAML reader and PyYAML disagree; keep the file to the "
                        "subset described in check_queries.py" % path)
    exprs = []
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        problems.append("%s: no `groups:` list" % path)
        return []
    for group in doc["groups"]:
        for n, rule in enumerate(group.get("rules") or []):
            name = rule.get("record") or rule.get("alert") or "rule %d" % n
            where = "group %s, %s" % (group.get("name"), name)
            if not isinstance(rule.get("expr"), str):
                problems.append("%s: %s: no expr" % (path, where))
                continue
            exprs.append(Expr(path, where, rule["expr"]))
            if "record" in rule:
                recorded.add(rule["record"])
            if "alert" in rule:
                severity = (rule.get("labels") or {}).get("severity")
                if severity not in ("page", "ticket"):
                    problems.append("%s: %s: severity must be page or ticket, got %r"
                                    % (path, where, severity))
                annotations = rule.get("annotations") or {}
                for key in ("summary", "description", "runbook"):
                    if not (annotations.get(key) or "").strip():
                        problems.append("%s: %s: no %s annotation" % (path, where, key))
    return exprs


def promtool_rule_count(promtool, path):
    out = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    m = re.search(r"SUCCESS: (\d+) rules found", out.stdout + out.stderr)
    return int(m.group(1)) if m else None


_LABEL_VALUES_RE = re.compile(r"^\s*label_values\s*\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)
_QUERY_RESULT_RE = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.S)


def dashboard_exprs(path, problems):
    try:
        dash = json.load(open(path, encoding="utf-8"))
    except ValueError as e:
        problems.append("%s: not JSON: %s" % (path, e))
        return []
    exprs = []

    def panels(items):
        for p in items or []:
            yield p
            yield from panels(p.get("panels"))

    for p in panels(dash.get("panels")):
        for t in p.get("targets") or []:
            if "expr" in t:
                exprs.append(Expr(path, "panel %r, target %s" % (p.get("title"), t.get("refId")),
                                  t["expr"]))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not query:
            problems.append("%s: variable %s has no query" % (path, v.get("name")))
            continue
        # Grafana's own functions around PromQL: label_values(selector, label), query_result(expr).
        m = _LABEL_VALUES_RE.match(query) or _QUERY_RESULT_RE.match(query)
        if m:
            query = m.group(1)
        elif re.match(r"^\s*(label_values|label_names|metrics)\s*\(", query):
            continue  # label_values(label) and friends name no metric
        exprs.append(Expr(path, "variable %s" % v.get("name"), query))
    return exprs


# Grafana's variables, replaced by values that parse in their place.
def substitute_variables(text):
    def value(m):
        name = m.group(1) or m.group(2)
        if name in ("__rate_interval", "__interval", "__range", "__auto_interval"):
            return "5m"
        if name in ("__interval_ms", "__range_ms", "__range_s"):
            return "300"
        return "var"
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, text)


# ---------------------------------------------------------------------------------------------
# Metric names in PromQL.

_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                 "count_values", "bottomk", "topk", "quantile"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
             "and", "or", "unless", "atan2", "inf", "nan"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN_RE = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[a-zA-Z0-9_]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<comment>\#[^\n]*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.X)


def metric_names(expr):
    """The metric names a PromQL expression selects (function, aggregation and label names,
    keywords, strings, numbers and durations left out; `{__name__="x"}` counts as x)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN_RE.finditer(expr)
              if m.lastgroup not in ("space", "comment")]
    names = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if kind == "open" and text in "{[":
            # Label matchers or a range: skip to the matching close, noting __name__ matchers.
            close = "}" if text == "{" else "]"
            j = i + 1
            while j < len(tokens) and tokens[j][1] != close:
                if (text == "{" and tokens[j] == ("ident", "__name__") and j + 2 < len(tokens)
                        and tokens[j + 1][1] == "=" and tokens[j + 2][0] == "string"):
                    names.add(tokens[j + 2][1][1:-1])
                j += 1
            i = j + 1
            continue
        if kind == "ident":
            lower = text.lower()
            if lower in _GROUPING:
                i += 1
                if i < len(tokens) and tokens[i][1] == "(":  # a label list
                    while i < len(tokens) and tokens[i][1] != ")":
                        i += 1
                    i += 1
                continue
            if lower in _KEYWORDS:
                i += 1
                continue
            if nxt[1] == "(":
                i += 1  # a function
                continue
            if text in _AGGREGATIONS and nxt[0] == "ident" and nxt[1].lower() in ("by", "without"):
                i += 1
                continue
            if i > 0 and tokens[i - 1][1] == "@":
                i += 1
                continue
            names.add(text)
        i += 1
    return names


# Series Prometheus adds to every target or rule evaluation, not exported by any binary.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS",
                     "ALERTS_FOR_STATE"}


def documented_families(path):
    """{name: type} from the rows of the Markdown tables in docs/metrics.md."""
    families = {}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(counter|gauge|histogram|summary)\s*\|",
                     line)
        if m:
            families[m.group(1)] = m.group(2)
    return families


def series_names(families):
    names = set()
    for name, kind in families.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
        elif kind == "summary":
            names.update(name + s for s in ("_sum", "_count"))
    return names


def exposition_families(text):
    """{name: type} of the families declared by # TYPE lines."""
    return {m.group(1): m.group(2) for m in re.finditer(r"(?m)^#\s*TYPE\s+(\S+)\s+(\S+)", text)}


def names_from_exposition(text, require_samples):
    """Metric names in the Prometheus text format: every sample's name, and (unless
    require_samples) every family declared by # TYPE, histograms and summaries with their
    series suffixes (a rank's series exist only while its attempt runs)."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*TYPE\s+(\S+)\s+(\S+)", line)
            if m and not require_samples:
                name, kind = m.groups()
                names.add(name)
                if kind == "histogram":
                    names.update(name + s for s in ("_bucket", "_sum", "_count"))
                elif kind == "summary":
                    names.update(name + s for s in ("_sum", "_count"))
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m:
            names.add(m.group(1))
    return names


# ---------------------------------------------------------------------------------------------


def check_parse(promtool, exprs):
    """Writes every expression as a recording rule and runs promtool check rules on them (all at
    once; one at a time to name the culprits when that fails). JSON is YAML."""
    def run(items):
        rules = [{"record": "check:expr_%d" % n, "expr": substitute_variables(e.text)}
                 for n, e in enumerate(items)]
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump({"groups": [{"name": "check_queries", "rules": rules}]}, f, indent=1)
            name = f.name
        try:
            out = subprocess.run([promtool, "check", "rules", name], capture_output=True,
                                 text=True)
        finally:
            os.unlink(name)
        return out.returncode == 0, (out.stdout + out.stderr).strip()

    ok, _ = run(exprs)
    if ok:
        return []
    problems = []
    for e in exprs:
        ok, out = run([e])
        if not ok:
            detail = out.splitlines()[-1].strip() if out else "promtool failed"
            problems.append("%s: does not parse: %s\n    %s" % (e, detail, e.text.strip()))
    return problems or ["promtool check rules fails on the expressions together only"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="rule files (.yml) and dashboards (.json)")
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    ap.add_argument("--documented", metavar="FILE",
                    help="docs/metrics.md: its tables' families count as exported")
    ap.add_argument("--exported", action="append", default=[], metavar="FILE",
                    help="a file of exported metric names, one a line (# comments)")
    ap.add_argument("--metrics-url", action="append", default=[], metavar="URL",
                    help="a /metrics endpoint whose names count as exported")
    ap.add_argument("--require-samples", action="store_true",
                    help="from --metrics-url count only names with samples, not families "
                         "declared by # TYPE alone")
    ap.add_argument("--promtool", default=shutil.which("promtool"))
    ap.add_argument("--list", action="store_true", help="print each expression's metric names")
    args = ap.parse_args()

    if not args.promtool:
        print("check_queries: promtool not found on PATH; it comes with the Debian package "
              "'prometheus' (bash deploy/install-deps.sh installs it)", file=sys.stderr)
        return 1
    files = args.files
    if not files:
        for sub, ext in (("deploy/prometheus/rules", ".yml"), ("deploy/grafana/dashboards", ".json")):
            d = os.path.join(args.repo, sub)
            if not os.path.isdir(d):
                print("check_queries: %s does not exist" % d, file=sys.stderr)
                return 2
            files += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(ext))
    problems, recorded, exprs = [], set(), []
    for f in files:
        if not os.path.isfile(f):
            print("check_queries: no such file: %s" % f, file=sys.stderr)
            return 2
        if f.endswith(".json"):
            exprs += dashboard_exprs(f, problems)
        elif f.endswith((".yml", ".yaml")):
            found = rule_file_exprs(f, problems, recorded)
            exprs += found
            count = promtool_rule_count(args.promtool, f)
            if count != len(found):
                problems.append("%s: promtool finds %s rules, this reader %d" % (f, count, len(found)))
        else:
            print("check_queries: %s is neither .yml nor .json" % f, file=sys.stderr)
            return 2

    problems += check_parse(args.promtool, exprs)

    exported = set()
    for path in args.exported:
        for line in open(path, encoding="utf-8"):
            line = line.split("#")[0].strip()
            if line:
                exported.add(line)
    documented = documented_families(args.documented) if args.documented else {}
    if args.documented and not documented:
        print("check_queries: %s documents no metric family" % args.documented, file=sys.stderr)
        return 2
    served = {}
    for url in args.metrics_url:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                text = r.read().decode("utf-8")
        except OSError as e:
            print("check_queries: cannot fetch %s: %s" % (url, e), file=sys.stderr)
            return 1
        exported |= names_from_exposition(text, args.require_samples)
        served.update(exposition_families(text))
    if documented and args.metrics_url:
        ours = {n: t for n, t in served.items() if n.startswith("loratrf_")}
        for name in sorted(set(ours) - set(documented)):
            problems.append("%s is exported but not documented in %s" % (name, args.documented))
        for name in sorted(set(documented) - set(ours)):
            problems.append("%s is documented in %s but not exported" % (name, args.documented))
        for name in sorted(set(ours) & set(documented)):
            if ours[name] != documented[name]:
                problems.append("%s is a %s, documented as a %s" % (name, ours[name], documented[name]))
    else:
        exported |= series_names(documented)
    check_names = bool(args.exported or args.metrics_url or documented)
    known = exported | recorded | PROMETHEUS_SERIES
    used = set()
    for e in exprs:
        names = metric_names(substitute_variables(e.text))
        used |= names
        if args.list:
            print("%s: %s" % (e, " ".join(sorted(names)) or "-"))
        if check_names:
            for n in sorted(names - known):
                problems.append("%s: uses %s, which is not exported" % (e, n))

    for p in problems:
        print("FAIL: " + p)
    print("check_queries: %d expressions in %d files, %d metric names%s: %s" % (
        len(exprs), len(files), len(used),
        " checked against %d exported and %d recorded names" % (len(exported), len(recorded))
        if check_names else " (not checked: no --exported or --metrics-url)",
        "FAILED" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
