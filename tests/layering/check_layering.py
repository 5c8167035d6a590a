#!/usr/bin/env python3
"""The layering check: what each folder may include, where torch may appear, and that the
coordinator and the CLI never depend on worker/ or torch.

Usage: check_layering.py [--known FILE] [REPO_ROOT]

The rules live in the folder READMEs (tests/layering/README.md describes the syntax); accepted
exceptions live in tests/layering/known_violations.txt. Exit status: 0 when every violation is
a known one, 1 when there is a new violation, a stale known one or a malformed rule, 2 on bad
usage. Standard library only.
"""

import fnmatch
import os
import re
import sys
from collections import defaultdict

SOURCE_EXTENSIONS = (".h", ".hh", ".hpp", ".hxx", ".inc", ".ipp", ".cuh",
                     ".cc", ".cpp", ".cxx", ".c", ".cu")
HEADER_EXTENSIONS = (".h", ".hh", ".hpp", ".hxx", ".cuh")
DEFINITION_EXTENSIONS = (".cc", ".cpp", ".cxx", ".c", ".cu")

# Third-party libraries: the first path component of an include names the library.
LIBRARY_BY_PREFIX = {
    "absl": "absl",
    "grpcpp": "grpc", "grpc": "grpc",
    "google": "protobuf",
    "prometheus": "prometheus",
    "nlohmann": "nlohmann",
    "yaml-cpp": "yaml-cpp",
    "spdlog": "spdlog",
    "torch": "torch", "ATen": "torch", "c10": "torch", "caffe2": "torch",
    "gloo": "gloo",
    "unicode": "icu",
    "gtest": "gtest", "gmock": "gtest",
}
# Third-party headers included without a folder (which would otherwise read as system headers).
LIBRARY_BY_HEADER = {
    "sqlite3.h": "sqlite3", "sqlite3ext.h": "sqlite3",
    "pcre2.h": "pcre2",
    "nccl.h": "nccl", "nccl_net.h": "nccl",
    "cuda.h": "cuda", "cuda_runtime.h": "cuda", "cuda_runtime_api.h": "cuda",
    "cuda_fp16.h": "cuda", "cuda_bf16.h": "cuda", "cublas_v2.h": "cuda",
}
LIBRARIES = sorted(set(LIBRARY_BY_PREFIX.values()) | set(LIBRARY_BY_HEADER.values()))
# System headers: <name> without a '/', except LIBRARY_BY_HEADER, and these folders of libc,
# POSIX, Linux and libstdc++.
SYSTEM_PREFIXES = {"sys", "arpa", "netinet", "net", "linux", "asm", "asm-generic", "bits",
                   "experimental", "ext"}

# The binaries that never link torch or anything under worker/ (docs/architecture.md).
TORCH_FREE_BINARIES = ("loratrf-coordinator", "loratrf")
TORCH_LINK_ITEM = re.compile(r"TORCH_LIBRARIES|^Torch::|^(torch|torch_cpu|torch_cuda|c10|c10_cuda)$")

ALLOWED_LINE = re.compile(r"^\s*Allowed includes:\s*(.*?)\s*$")
TORCH_FREE_LINE = re.compile(r"^\s*Torch-free:\s*(.*?)\s*$")
INCLUDE_LINE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
SKIP_DIRS = {"node_modules", "__pycache__"}


class Violation:
    def __init__(self, kind, file, line, include, message):
        self.kind, self.file, self.line, self.include, self.message = (
            kind, file, line, include, message)
        self.known = None  # the KnownEntry that allows it

    def text(self):
        where = "%s:%d" % (self.file, self.line)
        if self.known:
            return "%s: allowed (known): %s [%s]" % (where, self.message, self.known.reason)
        return "%s: %s" % (where, self.message)


class KnownEntry:
    def __init__(self, lineno, kind, file, include, reason):
        self.lineno, self.kind, self.file, self.include, self.reason = (
            lineno, kind, file, include, reason)
        self.used = False

    def matches(self, v):
        return (self.kind == v.kind and self.file == v.file
                and (self.include == "*" or self.include == v.include))


class Rule:
    """The `Allowed includes:` line of one README."""

    def __init__(self, readme, lineno, folder, items):
        self.readme, self.lineno, self.folder = readme, lineno, folder
        self.everything = "*" in items
        self.items = items
        self.paths = [i for i in items if i != "*" and "/" in i]
        self.libraries = {i for i in items if i != "*" and "/" not in i}

    def allows_library(self, library):
        return self.everything or library in self.libraries

    def allows_path(self, path):
        if self.everything or under(path, self.folder):
            return True
        return any(path_matches(path, p) for p in self.paths)

    def describe(self):
        own = (self.folder + "/") if self.folder else "./"
        return ", ".join([own + " (its own folder)"] + self.items)


def under(path, folder):
    return folder == "" or path == folder or path.startswith(folder + "/")


def path_matches(path, pattern):
    if pattern.endswith("/"):
        return path.startswith(pattern)
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(path, pattern)
    return path == pattern


def split_items(text):
    text = text.replace("`", "").rstrip(".")
    return [i.strip() for i in text.split(",") if i.strip()]


class Checker:
    def __init__(self, root, known_path):
        self.root = os.path.abspath(root)
        self.known_path = known_path
        self.errors = []       # malformed rules: always fatal, never allowlisted
        self.violations = []
        self.sources = []      # repository-relative paths of C/C++ files
        self.source_set = set()
        self.rules = {}        # folder -> Rule
        self.torch_free_lines = defaultdict(list)  # folder -> [(readme, lineno, inc, exc)]
        self.includes = {}     # file -> [(line, bracket, text)]
        self.top_dirs = set()

    # ----- reading the tree -------------------------------------------------------------------
    def scan(self):
        readmes = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            keep = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if d.startswith(".") or d in SKIP_DIRS or os.path.islink(full):
                    continue
                if os.path.exists(os.path.join(full, "CMakeCache.txt")) or \
                        (rel_dir == "" and d.startswith("build")):
                    continue  # a build tree inside the checkout
                keep.append(d)
            dirnames[:] = keep
            if rel_dir == "":
                self.top_dirs = set(keep)
            for f in sorted(filenames):
                rel = (rel_dir + "/" + f) if rel_dir else f
                if f == "README.md":
                    readmes.append(rel)
                elif f.endswith(SOURCE_EXTENSIONS):
                    self.sources.append(rel)
        self.source_set = set(self.sources)
        for readme in readmes:
            self.read_readme(readme)
        for f in self.sources:
            self.includes[f] = self.read_includes(f)

    def read_text(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()

    def read_readme(self, readme):
        folder = os.path.dirname(readme)
        fenced = False
        lines = self.read_text(readme)
        for n, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                continue  # examples in code blocks are not rules
            if ALLOWED_LINE.match(line) or TORCH_FREE_LINE.match(line):
                # A rule line that ends with a comma continues on the next line.
                k = n
                while line.rstrip().endswith(",") and k < len(lines) and lines[k].strip():
                    line = line.rstrip() + " " + lines[k].strip()
                    k += 1
            m = ALLOWED_LINE.match(line)
            if m:
                if folder in self.rules:
                    self.error(readme, n, "a second 'Allowed includes:' line (one per README)")
                    continue
                items = split_items(m.group(1))
                bad = False
                for item in items:
                    if item == "*" or "/" in item:
                        if item != "*" and (item.startswith("/") or ".." in item.split("/")):
                            self.error(readme, n, "'%s': repository paths are written from "
                                       "the repository root, like common/" % item)
                            bad = True
                        continue
                    if item not in LIBRARIES:
                        self.error(readme, n, "'%s' is neither a repository path (with a '/') "
                                   "nor a known library (%s)" % (item, ", ".join(LIBRARIES)))
                        bad = True
                if not items:
                    self.error(readme, n, "'Allowed includes:' lists nothing")
                    bad = True
                if not bad:
                    self.rules[folder] = Rule(readme, n, folder, items)
                continue
            m = TORCH_FREE_LINE.match(line)
            if m:
                text = m.group(1).replace("`", "").rstrip(".")
                inc, _, exc = text.partition(" except ")
                inc, exc = split_items(inc), split_items(exc)
                if not inc:
                    self.error(readme, n, "'Torch-free:' lists nothing")
                    continue
                self.torch_free_lines[folder].append((readme, n, inc, exc))

    def read_includes(self, rel):
        out = []
        for n, line in enumerate(self.read_text(rel), 1):
            m = INCLUDE_LINE.match(line)
            if m:
                out.append((n, m.group(1), m.group(2).strip()))
        return out

    def error(self, file, line, message):
        self.errors.append("%s:%d: %s" % (file, line, message))

    def add(self, kind, file, line, include, message):
        self.violations.append(Violation(kind, file, line, include, message))

    # ----- classifying includes ---------------------------------------------------------------
    def classify(self, file, bracket, text):
        """Returns (kind, value): ('system', None), ('repo', path), ('library', name),
        ('unrooted', reason) for a repository include not written from the root or naming no
        file, ('unknown', reason) for a library the checker does not know."""
        first = text.split("/")[0]
        if first in self.top_dirs and "/" in text:
            if text in self.source_set or self.generated_exists(text):
                return "repo", text
            if os.path.isfile(os.path.join(self.root, text)):
                return "repo", text
            return "unrooted", "no such file under the repository root"
        if bracket == '"' and os.path.isfile(os.path.join(self.root, os.path.dirname(file), text)):
            return "unrooted", ("not written from the repository root (one include root: "
                                "write the path from the root)")
        if "/" not in text:
            if text in LIBRARY_BY_HEADER:
                return "library", LIBRARY_BY_HEADER[text]
            if bracket == "<":
                return "system", None
            return "unknown", ("not a repository path and not a known library header (add it to "
                               "LIBRARY_BY_HEADER in tests/layering/check_layering.py)")
        if first in LIBRARY_BY_PREFIX:
            return "library", LIBRARY_BY_PREFIX[first]
        if bracket == "<" and first in SYSTEM_PREFIXES:
            return "system", None
        return "unknown", ("unknown library '%s' (add it to LIBRARY_BY_PREFIX in "
                           "tests/layering/check_layering.py)" % first)

    def generated_exists(self, text):
        for suffix in (".grpc.pb.h", ".pb.h"):
            if text.endswith(suffix):
                return os.path.isfile(os.path.join(self.root, text[:-len(suffix)] + ".proto"))
        return False

    # ----- which rules apply to a file --------------------------------------------------------
    def rule_for(self, file):
        folder = os.path.dirname(file)
        while True:
            if folder in self.rules:
                return self.rules[folder]
            if folder == "":
                return None
            folder = os.path.dirname(folder)

    def torch_free_reason(self, file):
        """Why a file must be torch-free, or None when it may include torch."""
        folder = os.path.dirname(file)
        while True:
            for readme, _, inc, exc in self.torch_free_lines.get(folder, []):
                rel = file[len(folder) + 1:] if folder else file
                if any(path_matches(rel, p) for p in inc) and \
                        not any(path_matches(rel, p) for p in exc):
                    return "%s marks it torch-free" % readme
            if folder == "":
                break
            folder = os.path.dirname(folder)
        rule = self.rule_for(file)
        if rule is not None and not rule.allows_library("torch"):
            return "%s does not allow torch" % rule.readme
        return None

    def check_rule_paths(self):
        """Every path in a rule must name something that exists, so that rules cannot go stale."""
        for rule in self.rules.values():
            for p in rule.paths:
                if p.endswith("/"):
                    ok = os.path.isdir(os.path.join(self.root, p))
                elif any(c in p for c in "*?["):
                    ok = any(path_matches(s, p) for s in self.sources)
                else:
                    ok = p in self.source_set or self.generated_exists(p)
                if not ok:
                    self.error(rule.readme, rule.lineno, "'%s' matches nothing in the "
                               "repository" % p)
        for folder, lines in self.torch_free_lines.items():
            mine = [s[len(folder) + 1:] if folder else s for s in self.sources
                    if under(s, folder)]
            for readme, n, inc, exc in lines:
                for p in inc + exc:
                    if not any(path_matches(s, p) for s in mine):
                        self.error(readme, n, "Torch-free pattern '%s' matches no source file "
                                   "under %s/" % (p, folder))

    # ----- the checks ---------------------------------------------------------------------------
    def check_includes(self):
        for file in self.sources:
            rule = self.rule_for(file)
            if rule is None:
                self.error(file, 1, "no README.md on its path says 'Allowed includes:'")
                continue
            for line, bracket, text in self.includes[file]:
                kind, value = self.classify(file, bracket, text)
                shown = "<%s>" % text if bracket == "<" else text
                if kind == "system":
                    continue
                if kind == "unrooted" or (kind == "unknown" and not rule.everything):
                    self.add("include", file, line, shown, "includes %s: %s" % (shown, value))
                    continue
                if kind == "unknown":
                    continue
                ok = rule.allows_path(value) if kind == "repo" else rule.allows_library(value)
                if not ok:
                    what = shown if kind == "repo" else "%s (%s)" % (shown, value)
                    self.add("include", file, line, shown, "includes %s, but %s allows only %s"
                             % (what, rule.readme, rule.describe()))

    def torch_chain(self, file, memo, stack=()):
        """The include chain from file to its first torch include, or None."""
        if file in memo:
            return memo[file]
        if file in stack:
            return None
        memo_value = None
        for line, bracket, text in self.includes.get(file, []):
            kind, value = self.classify(file, bracket, text)
            shown = "<%s>" % text if bracket == "<" else text
            if kind == "library" and value == "torch":
                memo_value = [(file, line, shown)]
                break
            if kind == "repo" and value in self.includes:
                sub = self.torch_chain(value, memo, stack + (file,))
                if sub:
                    memo_value = [(file, line, shown)] + sub
                    break
        memo[file] = memo_value
        return memo_value

    @staticmethod
    def describe_chain(chain):
        return " -> ".join("%s:%d %s" % step for step in chain)

    def check_torch(self):
        memo = {}
        used_torch_free = {}  # header -> why it is used torch-free; its own reason first
        for file in self.sources:
            reason = self.torch_free_reason(file)
            if reason is not None and file.endswith(HEADER_EXTENSIONS):
                used_torch_free[file] = reason
        for file in self.sources:
            reason = self.torch_free_reason(file)
            if reason is None:
                continue
            for line, bracket, text in self.includes[file]:
                kind, value = self.classify(file, bracket, text)
                shown = "<%s>" % text if bracket == "<" else text
                if kind == "library" and value == "torch":
                    self.add("torch-free", file, line, shown,
                             "includes %s (torch), but %s is torch-free: %s"
                             % (shown, file, reason))
                elif kind == "repo" and value in self.includes:
                    for header in self.reached(value):
                        if header.endswith(HEADER_EXTENSIONS):
                            used_torch_free.setdefault(
                                header, "%s, which is torch-free, includes it" % file)
                    if self.torch_free_reason(value) is not None:
                        continue  # its own torch includes are reported where they are
                    chain = self.torch_chain(value, memo)
                    if chain:
                        self.add("torch-free", file, line, shown,
                                 "includes %s, which reaches torch (%s), but %s is torch-free: %s"
                                 % (shown, self.describe_chain(chain), file, reason))
        # A header used without torch must not be implemented in a torch file: whoever calls it
        # would have to link torch.
        for header, why in sorted(used_torch_free.items()):
            if self.torch_chain(header, memo):
                continue  # the header itself reaches torch: reported where it is included
            stem = os.path.splitext(header)[0]
            for ext in DEFINITION_EXTENSIONS:
                definition = stem + ext
                if definition not in self.source_set or definition == header:
                    continue
                if self.torch_free_reason(definition) is not None:
                    continue  # check_torch reports its torch includes directly
                chain = self.torch_chain(definition, memo)
                if chain:
                    f, line, shown = chain[0]
                    via = "" if len(chain) == 1 else " (%s)" % self.describe_chain(chain)
                    self.add("definition", f, line, shown,
                             "includes %s%s (torch), but defines what the torch-free header %s "
                             "declares (%s)" % (shown, via, header, why))

    def reached(self, start, stop=None):
        """Every repository file `start` includes, directly or not (itself too); files for which
        stop(file) is true are not entered."""
        seen, todo = set(), [start]
        while todo:
            f = todo.pop()
            if f in seen or f not in self.includes:
                continue
            seen.add(f)
            if stop is not None and stop(f):
                continue
            for _, bracket, text in self.includes[f]:
                kind, value = self.classify(f, bracket, text)
                if kind == "repo":
                    todo.append(value)
        return seen

    # ----- the coordinator and the CLI --------------------------------------------------------
    def parse_cmake(self):
        """Targets from every CMakeLists.txt: name -> {'sources', 'links', 'where'}."""
        targets = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            top = os.path.abspath(dirpath) == self.root
            dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".")
                           and d not in SKIP_DIRS and not (top and d.startswith("build"))
                           and not os.path.exists(os.path.join(dirpath, d, "CMakeCache.txt"))]
            if "CMakeLists.txt" not in filenames:
                continue
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir
            cmake = (rel_dir + "/CMakeLists.txt") if rel_dir else "CMakeLists.txt"
            for name, args, line in cmake_commands(self.read_text(cmake)):
                if not args:
                    continue
                target = args[0][0]
                t = targets.setdefault(target, {"sources": [], "links": [], "where": None})
                if name in ("add_library", "add_executable"):
                    t["where"] = (cmake, line)
                    for a, _ in args[1:]:
                        if "$" in a or a.isupper():
                            continue
                        t["sources"].append(os.path.normpath(
                            os.path.join(rel_dir, a)).replace(os.sep, "/"))
                elif name == "target_sources":
                    for a, _ in args[1:]:
                        if "$" in a or a.isupper():
                            continue
                        t["sources"].append(os.path.normpath(
                            os.path.join(rel_dir, a)).replace(os.sep, "/"))
                elif name == "target_link_libraries":
                    for a, a_line in args[1:]:
                        if a in ("PUBLIC", "PRIVATE", "INTERFACE"):
                            continue
                        t["links"].append((a, cmake, a_line))
        return {k: v for k, v in targets.items() if v["where"] is not None}

    def check_torch_free_binaries(self):
        targets = self.parse_cmake()
        roots = defaultdict(set)  # source file -> the binaries that build it
        for binary in TORCH_FREE_BINARIES if targets else ():  # a tree without CMake: no links
            if binary not in targets:
                self.error("tests/layering/check_layering.py", 1, "TORCH_FREE_BINARIES names "
                           "'%s', which no CMakeLists.txt defines" % binary)
                continue
            seen, todo = set(), [binary]
            while todo:
                name = todo.pop()
                if name in seen:
                    continue
                seen.add(name)
                t = targets[name]
                for src in t["sources"]:
                    roots[src].add(binary)
                for item, cmake, line in t["links"]:
                    if TORCH_LINK_ITEM.search(item):
                        self.add("link", cmake, line, item, "%s links %s (torch), but %s links "
                                 "it and never links torch" % (name, item, binary))
                    elif item in targets:
                        if any(under(s, "worker") for s in targets[item]["sources"]):
                            self.add("link", cmake, line, item,
                                     "%s links %s (worker/), but %s links it and never depends "
                                     "on worker/" % (name, item, binary))
                        todo.append(item)
        # Every file under server/ and client/ counts, linked or not (headers are not listed).
        for f in self.sources:
            if under(f, "server"):
                roots[f].add("loratrf-coordinator")
            elif under(f, "client"):
                roots[f].add("loratrf")
        built_by = defaultdict(set)  # every file those sources reach -> the binaries
        for root, binaries in roots.items():
            # Inside worker/ everything is reported once, where the path crosses into it.
            for f in self.reached(root, stop=lambda f: under(f, "worker")):
                if not under(f, "worker"):
                    built_by[f] |= binaries
        for f in sorted(built_by):
            binaries = " and ".join(b for b in TORCH_FREE_BINARIES if b in built_by[f])
            for line, bracket, text in self.includes[f]:
                kind, value = self.classify(f, bracket, text)
                shown = "<%s>" % text if bracket == "<" else text
                if (kind == "library" and value == "torch") or \
                        (kind == "repo" and under(value, "worker")):
                    self.add("link", f, line, shown,
                             "includes %s, but %s build%s this file and never depend%s on "
                             "worker/ or torch" % (shown, binaries,
                                                   "" if " and " in binaries else "s",
                                                   "" if " and " in binaries else "s"))

    # ----- known violations -------------------------------------------------------------------
    def read_known(self):
        entries = []
        if not self.known_path or not os.path.exists(self.known_path):
            return entries
        rel = os.path.relpath(self.known_path, self.root).replace(os.sep, "/")
        if rel.startswith(".."):
            rel = self.known_path
        with open(self.known_path, encoding="utf-8") as fh:
            for n, raw in enumerate(fh.read().splitlines(), 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split(None, 3)
                if len(parts) < 4 or parts[0] not in ("include", "torch-free", "definition",
                                                      "link"):
                    self.error(rel, n, "expected 'KIND FILE INCLUDE REASON' with KIND one of "
                               "include, torch-free, definition, link")
                    continue
                entries.append(KnownEntry(n, parts[0], parts[1], parts[2], parts[3]))
        self.known_rel = rel
        return entries

    def run(self):
        self.scan()
        self.check_rule_paths()
        self.check_includes()
        self.check_torch()
        self.check_torch_free_binaries()
        known = self.read_known()
        for v in self.violations:
            for k in known:
                if k.matches(v):
                    v.known, k.used = k, True
                    break
        stale = ["%s:%d: known violation '%s %s %s' matches nothing any more; remove it"
                 % (self.known_rel, k.lineno, k.kind, k.file, k.include)
                 for k in known if not k.used]
        lines = sorted(self.violations, key=lambda v: (v.file, v.line, v.kind, v.message))
        for v in lines:
            if v.known:
                print(v.text())
        new = [v for v in lines if not v.known]
        for v in new:
            print(v.text())
        for e in self.errors + stale:
            print(e)
        if new or self.errors or stale:
            print("layering: %d violation(s), %d rule error(s), %d stale known violation(s); "
                  "see tests/layering/README.md" % (len(new), len(self.errors), len(stale)),
                  file=sys.stderr)
            return 1
        print("layering: OK (%d files, %d known violation(s))"
              % (len(self.sources), len(lines)), file=sys.stderr)
        return 0


def cmake_commands(lines):
    """Yields (command, [(arg, line)], line) for every CMake command call; comments and quotes
    handled well enough for our CMakeLists (no bracket arguments)."""
    text = "\n".join(lines)
    i, n, line = 0, len(text), 1
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "\n":
            line += 1
            i += 1
            continue
        m = ident.match(text, i)
        if not m:
            i += 1
            continue
        name, start_line = m.group(0).lower(), line
        j = m.end()
        while j < n and text[j] in " \t":
            j += 1
        if j >= n or text[j] != "(":
            i = m.end()
            continue
        j += 1
        depth, args, cur, cur_line = 1, [], "", line
        while j < n and depth:
            c = text[j]
            if c == "\n":
                line += 1
            if c == "#":
                k = text.find("\n", j)
                j = n if k < 0 else k
                continue
            if c == '"':
                k = j + 1
                while k < n and text[k] != '"':
                    if text[k] == "\\":
                        k += 1
                    if text[k] == "\n":
                        line += 1
                    k += 1
                if not cur:
                    cur_line = line
                cur += text[j + 1:k]
                j = k + 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            if c.isspace() or c in "()":
                if cur:
                    args.append((cur, cur_line))
                    cur = ""
            else:
                if not cur:
                    cur_line = line
                cur += c
            j += 1
        if cur:
            args.append((cur, cur_line))
        yield name, args, start_line
        i = j + 1


def main(argv):
    args = argv[1:]
    known = None
    if len(args) >= 2 and args[0] == "--known":
        known, args = args[1], args[2:]
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: check_layering.py [--known FILE] [REPO_ROOT]", file=sys.stderr)
        return 2
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    if not os.path.isdir(root):
        print("check_layering.py: %s is not a directory" % root, file=sys.stderr)
        return 2
    if known is None:
        known = os.path.join(root, "tests", "layering", "known_violations.txt")
    return Checker(root, known).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
