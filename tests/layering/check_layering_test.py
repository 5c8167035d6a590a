#!/usr/bin/env python3
"""Self-test of check_layering.py: small fake trees, one kind of violation at a time.

Usage: check_layering_test.py [-v]   (standard library only; registered with ctest, label unit)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_layering.py")

# A clean tree: every kind of rule in use, nothing broken.
CLEAN_TREE = {
    "CMakeLists.txt": """
        add_library(common_lib common/util.cc)
        add_library(api proto/api.cc)
        target_link_libraries(api PUBLIC common_lib)
        add_library(core server/core/core.cc)
        target_link_libraries(core
          PUBLIC api
          PRIVATE common_lib)
        add_executable(loratrf-coordinator server/main.cc)
        target_link_libraries(loratrf-coordinator PRIVATE core)
        add_executable(loratrf client/main.cc)
        target_link_libraries(loratrf PRIVATE api)
        # The engine: torch.
        add_library(engine worker/engine/model.cc worker/engine/info.cc worker/engine/tok/tok.cc
                    worker/engine/helper.cc)
        target_link_libraries(engine PUBLIC common_lib ${TORCH_LIBRARIES})
        add_executable(loratrf-worker worker/agent/agent.cc)
        target_link_libraries(loratrf-worker PRIVATE engine api)
        """,
    "common/README.md": """
        # common/
        Generic helpers.

        Allowed includes: absl
        """,
    "common/util.h": """
        #pragma once
        #include <string>
        #include <vector>
        #include <sys/stat.h>
        #include "absl/status/status.h"
        """,
    "common/util.cc": """
        #include "common/util.h"
        #include <unistd.h>
        """,
    "proto/README.md": "Allowed includes: common/, absl, protobuf\n",
    "proto/api.h": """
        #pragma once
        #include "common/util.h"
        #include "proto/v1/job.pb.h"
        #include "google/protobuf/message.h"
        """,
    "proto/api.cc": '#include "proto/api.h"\n',
    "proto/v1/job.proto": 'syntax = "proto3";\n',
    "server/README.md": "Allowed includes: common/, proto/, absl, grpc\n",
    "server/main.cc": """
        #include <grpcpp/grpcpp.h>
        #include "server/core/core.h"
        """,
    "server/core/README.md": """
        # server/core/
        An example that is not a rule:
        ```
        Allowed includes: everything, really
        ```
        Allowed includes: common/, proto/, absl
        """,
    "server/core/core.h": """
        #pragma once
        #include "proto/api.h"
        """,
    "server/core/core.cc": """
        #include "server/core/core.h"
        #include "absl/strings/str_cat.h"
        """,
    "client/README.md": "Allowed includes: common/, proto/, absl, grpc\n",
    "client/main.cc": """
        #include <iostream>
        #include "proto/api.h"
        #include "grpcpp/create_channel.h"
        """,
    "worker/engine/README.md": """
        # worker/engine/
        Allowed includes: common/, absl, torch, pcre2
        Torch-free: info.h, tok/, helper.h
        """,
    "worker/engine/model.h": """
        #pragma once
        #include <torch/torch.h>
        """,
    "worker/engine/model.cc": """
        #include "worker/engine/model.h"
        #include <ATen/Parallel.h>
        """,
    "worker/engine/info.h": """
        #pragma once
        #include <string>
        """,
    "worker/engine/info.cc": '#include "worker/engine/info.h"\n',
    "worker/engine/helper.h": "#pragma once\n",
    "worker/engine/helper.cc": '#include "worker/engine/helper.h"\n',
    "worker/engine/tok/tok.h": """
        #pragma once
        #include <pcre2.h>
        #include "common/util.h"
        """,
    "worker/engine/tok/tok.cc": '#include "worker/engine/tok/tok.h"\n',
    "worker/agent/README.md": """
        Allowed includes: worker/engine/info.h, worker/engine/helper.h, common/, proto/, absl,
        grpc
        """,
    "worker/agent/agent.cc": """
        #include "worker/engine/info.h"
        #include "worker/engine/helper.h"
        #include "proto/api.h"
        """,
    "tests/README.md": """
        Allowed includes: *
        Torch-free: * except model_test.cc
        """,
    "tests/model_test.cc": """
        #include <torch/torch.h>
        #include "worker/engine/model.h"
        #include <gtest/gtest.h>
        """,
    "tests/util_test.cc": """
        #include "common/util.h"
        #include "worker/engine/info.h"
        #include "boost/whatever.hpp"
        #include "gtest/gtest.h"
        """,
}

INCLUDE_LINE = re.compile(r"^\S+:\d+: includes \S+( \(\w[\w-]*\))?, but \S+/README\.md allows only ")


class LayeringCheckTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="layering-test-")
        self.addCleanup(shutil.rmtree, self.root)
        for path, text in CLEAN_TREE.items():
            self.write(path, text)

    def write(self, path, text):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as fh:
            fh.write(textwrap.dedent(text).lstrip("\n"))

    def append(self, path, text):
        with open(os.path.join(self.root, path), "a") as fh:
            fh.write(text + "\n")

    def check(self):
        proc = subprocess.run([sys.executable, CHECKER, self.root], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        return proc.returncode, proc.stdout.splitlines(), proc.stderr

    def assert_fails_with(self, *expected):
        """Exit 1, and for each expected (file_line_prefix, fragment) a line that starts with
        the prefix and contains the fragment. Returns the lines."""
        rc, lines, err = self.check()
        self.assertEqual(rc, 1, "expected failure; stdout:\n%s\nstderr:\n%s"
                         % ("\n".join(lines), err))
        for prefix, fragment in expected:
            self.assertTrue(any(l.startswith(prefix) and fragment in l for l in lines),
                            "no line starting with %r containing %r in:\n%s"
                            % (prefix, fragment, "\n".join(lines)))
        return lines

    # ----- the clean tree ---------------------------------------------------------------------
    def test_clean_tree_passes(self):
        rc, lines, err = self.check()
        self.assertEqual(rc, 0, "\n".join(lines) + err)
        self.assertEqual(lines, [])
        self.assertIn("layering: OK", err)

    # ----- what a README allows ---------------------------------------------------------------
    def test_forbidden_repo_include(self):
        self.append("server/core/core.cc", '#include "client/main.cc"')
        lines = self.assert_fails_with(
            ("server/core/core.cc:3: includes client/main.cc, but server/core/README.md allows "
             "only server/core/ (its own folder), common/, proto/, absl", ""))
        self.assertTrue(all(INCLUDE_LINE.match(l) for l in lines if "README.md allows" in l))

    def test_most_specific_readme_applies(self):
        # server/README.md allows grpc, server/core/README.md does not.
        self.append("server/core/core.cc", "#include <grpcpp/grpcpp.h>")
        self.assert_fails_with(("server/core/core.cc:3: includes <grpcpp/grpcpp.h> (grpc), "
                                "but server/core/README.md allows only", ""))

    def test_forbidden_library_without_folder(self):
        # <pcre2.h> has no '/', yet it is a library, not a system header.
        self.append("common/util.cc", "#include <pcre2.h>")
        self.assert_fails_with(("common/util.cc:3: includes <pcre2.h> (pcre2), but "
                                "common/README.md allows only", ""))

    def test_system_headers_are_always_allowed(self):
        self.append("common/util.cc", "#include <cstdio>\n#include <netinet/in.h>\n"
                    "#include <sys/socket.h>\n#include <arpa/inet.h>")
        rc, lines, err = self.check()
        self.assertEqual(rc, 0, "\n".join(lines) + err)

    def test_unknown_library(self):
        self.append("common/util.cc", "#include <boost/optional.hpp>")
        self.assert_fails_with(("common/util.cc:3: includes <boost/optional.hpp>",
                                "unknown library 'boost'"))

    def test_include_not_from_the_root(self):
        self.append("common/util.cc", '#include "util.h"')
        self.assert_fails_with(("common/util.cc:3: includes util.h",
                                "not written from the repository root"))

    def test_missing_repo_file(self):
        self.append("server/core/core.cc", '#include "proto/nothing.h"')
        self.assert_fails_with(("server/core/core.cc:3: includes proto/nothing.h",
                                "no such file under the repository root"))

    def test_rule_line_continues_after_a_comma(self):
        # worker/agent/README.md wraps its rule: "..., absl," then "grpc" on the next line.
        self.append("worker/agent/agent.cc", "#include <grpcpp/grpcpp.h>")
        rc, lines, err = self.check()
        self.assertEqual(rc, 0, "\n".join(lines) + err)
        self.append("worker/agent/agent.cc", '#include "prometheus/counter.h"')
        self.assert_fails_with(("worker/agent/agent.cc:5: includes prometheus/counter.h "
                                "(prometheus), but worker/agent/README.md allows only", "grpc"))

    def test_tests_may_include_everything(self):
        self.append("tests/util_test.cc", '#include "server/core/core.h"\n#include <grpcpp/grpcpp.h>')
        rc, lines, err = self.check()
        self.assertEqual(rc, 0, "\n".join(lines) + err)

    # ----- torch ------------------------------------------------------------------------------
    def test_torch_free_file_includes_torch(self):
        self.append("worker/engine/tok/tok.cc", "#include <torch/torch.h>")
        self.assert_fails_with(("worker/engine/tok/tok.cc:2: includes <torch/torch.h> (torch), "
                                "but worker/engine/tok/tok.cc is torch-free: "
                                "worker/engine/README.md marks it torch-free", ""))

    def test_torch_free_file_reaches_torch_through_a_header(self):
        self.append("worker/engine/tok/tok.cc", '#include "worker/engine/model.h"')
        self.assert_fails_with(("worker/engine/tok/tok.cc:2: includes worker/engine/model.h, "
                                "which reaches torch (worker/engine/model.h:2 <torch/torch.h>)",
                                "is torch-free"))

    def test_torch_outside_the_engine(self):
        self.append("common/util.h", "#include <ATen/core/Tensor.h>")
        self.assert_fails_with(
            ("common/util.h:6: includes <ATen/core/Tensor.h> (torch), but common/README.md "
             "allows only", ""),
            ("common/util.h:6: includes <ATen/core/Tensor.h> (torch), but common/util.h is "
             "torch-free: common/README.md does not allow torch", ""))

    def test_torch_free_test(self):
        self.append("tests/util_test.cc", '#include "worker/engine/model.h"')
        self.assert_fails_with(("tests/util_test.cc:5: includes worker/engine/model.h, which "
                                "reaches torch", "tests/README.md marks it torch-free"))

    def test_torch_free_header_defined_in_a_torch_file(self):
        self.append("worker/engine/info.cc", "#include <torch/cuda.h>")
        self.assert_fails_with(("worker/engine/info.cc:2: includes <torch/cuda.h> (torch), but "
                                "defines what the torch-free header worker/engine/info.h "
                                "declares", ""))

    def test_header_used_by_torch_free_code_defined_in_a_torch_file(self):
        # helper.h is not marked torch-free, but the agent (torch-free) includes it.
        self.write("worker/engine/README.md", """
            Allowed includes: common/, absl, torch, pcre2
            Torch-free: info.h, tok/
            """)
        self.append("worker/engine/helper.cc", '#include "worker/engine/model.h"')
        self.assert_fails_with(("worker/engine/helper.cc:2: includes worker/engine/model.h",
                                "defines what the torch-free header worker/engine/helper.h "
                                "declares (worker/agent/agent.cc, which is torch-free, "
                                "includes it)"))

    # ----- the coordinator and the CLI --------------------------------------------------------
    def test_coordinator_links_the_engine(self):
        self.append("CMakeLists.txt", "target_link_libraries(core PRIVATE engine)")
        self.assert_fails_with(("CMakeLists.txt:18: core links engine (worker/), but "
                                "loratrf-coordinator links it", ""))

    def test_cli_links_torch(self):
        self.append("CMakeLists.txt", "target_link_libraries(api PRIVATE ${TORCH_LIBRARIES})")
        lines = self.assert_fails_with(("CMakeLists.txt:18: api links ${TORCH_LIBRARIES} (torch)",
                                        "loratrf links it and never links torch"))
        self.assertTrue(any("loratrf-coordinator links it" in l for l in lines))

    def test_something_the_coordinator_links_includes_worker(self):
        # proto/ may include common/, and common/util.h now reaches into worker/: the
        # coordinator and the CLI would depend on the engine.
        self.write("common/README.md", "Allowed includes: absl, worker/engine/info.h\n")
        self.append("common/util.h", '#include "worker/engine/info.h"')
        self.assert_fails_with(("common/util.h:6: includes worker/engine/info.h, but "
                                "loratrf-coordinator and loratrf build this file and never "
                                "depend on worker/ or torch", ""))

    def test_server_header_includes_worker(self):
        self.append("server/core/core.h", '#include "worker/engine/helper.h"')
        self.assert_fails_with(
            ("server/core/core.h:3: includes worker/engine/helper.h, but server/core/README.md "
             "allows only", ""),
            ("server/core/core.h:3: includes worker/engine/helper.h, but loratrf-coordinator "
             "builds this file and never depends on worker/ or torch", ""))

    # ----- known violations -------------------------------------------------------------------
    def test_known_violation_is_allowed_and_stale_one_fails(self):
        self.append("worker/engine/info.cc", "#include <torch/cuda.h>")
        self.write("tests/layering/known_violations.txt", """
            # comment
            definition worker/engine/info.cc <torch/cuda.h> the agent needs it for now
            """)
        rc, lines, err = self.check()
        self.assertEqual(rc, 0, "\n".join(lines) + err)
        self.assertTrue(any(l.startswith("worker/engine/info.cc:2: allowed (known): ")
                            and "[the agent needs it for now]" in l for l in lines), lines)
        # Fixed: the entry matches nothing any more, which fails until it is removed.
        self.write("worker/engine/info.cc", '#include "worker/engine/info.h"\n')
        self.assert_fails_with(("tests/layering/known_violations.txt:2: known violation "
                                "'definition worker/engine/info.cc <torch/cuda.h>' matches "
                                "nothing any more", ""))

    def test_known_violation_of_another_kind_does_not_match(self):
        self.append("worker/engine/tok/tok.cc", "#include <torch/torch.h>")
        self.write("tests/layering/known_violations.txt",
                   "include worker/engine/tok/tok.cc * wrong kind\n")
        self.assert_fails_with(("worker/engine/tok/tok.cc:2: includes <torch/torch.h>", ""),
                               ("tests/layering/known_violations.txt:1:", "matches nothing"))

    def test_malformed_known_violation(self):
        self.write("tests/layering/known_violations.txt", "definition worker/engine/info.cc\n")
        self.assert_fails_with(("tests/layering/known_violations.txt:1: expected 'KIND FILE "
                                "INCLUDE REASON'", ""))

    # ----- the rules themselves ---------------------------------------------------------------
    def test_unknown_library_name_in_a_readme(self):
        self.write("common/README.md", "Allowed includes: absl, boost\n")
        self.assert_fails_with(("common/README.md:1: 'boost' is neither a repository path", ""))

    def test_rule_path_that_matches_nothing(self):
        self.write("common/README.md", "Allowed includes: absl, proto/gone/\n")
        self.assert_fails_with(("common/README.md:1: 'proto/gone/' matches nothing", ""))

    def test_torch_free_pattern_that_matches_nothing(self):
        self.write("worker/engine/README.md", """
            Allowed includes: common/, absl, torch, pcre2
            Torch-free: info.h, tok/, helper.h, gone.cc
            """)
        self.assert_fails_with(("worker/engine/README.md:2: Torch-free pattern 'gone.cc' "
                                "matches no source file", ""))

    def test_file_without_a_rule(self):
        self.write("newpart/thing.cc", "#include <vector>\n")
        self.assert_fails_with(("newpart/thing.cc:1: no README.md on its path says "
                                "'Allowed includes:'", ""))

    def test_missing_binary(self):
        self.write("CMakeLists.txt", "add_library(core server/core/core.cc)\n")
        self.assert_fails_with(("tests/layering/check_layering.py:1: TORCH_FREE_BINARIES names "
                                "'loratrf-coordinator'", ""))


if __name__ == "__main__":
    unittest.main()
