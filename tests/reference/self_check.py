#!/usr/bin/python3
"""Self-checks for the reference scripts: properties that catch bugs in hf_reference.py,
make_tiny_model.py, make_tiny_adapter.py and safetensors_io.py without transformers.

    /usr/bin/python3 tests/reference/self_check.py [-k SUBSTRING] [--keep DIR]

Each check prints PASS or FAIL with the reason; the exit status is 1 if any failed. Most checks
call the scripts' main() / run() in-process (fast); a few run the command lines to check exit
codes and the output file.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_reference as R  # noqa: E402
import make_tiny_adapter  # noqa: E402
import make_tiny_model  # noqa: E402
import safetensors_io as st  # noqa: E402

PY = sys.executable
IDS = [3, 5, 7, 9, 11, 13]
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


class Ctx:
    def __init__(self, root):
        self.root = root
        self.cache = {}

    def model(self, *argv):
        """Generates (once) a model dir for these make_tiny_model arguments."""
        key = ("model",) + argv
        if key not in self.cache:
            d = os.path.join(self.root, f"m{len(self.cache)}")
            make_tiny_model.main(list(argv) + ["--output", d])
            self.cache[key] = d
        return self.cache[key]

    def adapter(self, model_dir, *argv):
        key = ("adapter", model_dir) + argv
        if key not in self.cache:
            d = os.path.join(self.root, f"a{len(self.cache)}")
            make_tiny_adapter.main(["--model", model_dir] + list(argv) + ["--output", d])
            self.cache[key] = d
        return self.cache[key]


def run(model_dir, ids=IDS, adapter=None):
    return R.run(model_dir, ids, adapter)


def maxdiff(a, b):
    return float((a.to(torch.float64) - b.to(torch.float64)).abs().max())


def assert_same(a, b, what, tol=0.0):
    for k in set(a) | set(b):
        if k not in a or k not in b:
            raise AssertionError(f"{what}: {k} missing on one side")
        d = maxdiff(a[k], b[k])
        if d > tol:
            raise AssertionError(f"{what}: {k} differs by {d:.3g} (tolerance {tol:g})")


def assert_differ(a, b, what, min_diff=1e-3):
    d = max(maxdiff(a[k], b[k]) for k in a)
    if d < min_diff:
        raise AssertionError(f"{what}: outputs should differ, max difference {d:.3g}")


def load_state(model_dir):
    return st.load_file(os.path.join(model_dir, "model.safetensors"))


def cli(script, *argv):
    return subprocess.run([PY, os.path.join(HERE, script)] + list(argv), capture_output=True, text=True)


# ----------------------------------------------------------------------------------------------


@check
def safetensors_roundtrip(ctx):
    g = torch.Generator().manual_seed(1)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "i64": torch.arange(-3, 6, dtype=torch.int64).reshape(3, 3),
        "i32": torch.arange(5, dtype=torch.int32),
        "a_scalar_like": torch.tensor([1.5]),
    }
    path = os.path.join(ctx.root, "rt.safetensors")
    st.save_file(tensors, path, metadata={"format": "pt"})
    back, meta = st.load_file(path, with_metadata=True)
    assert meta == {"format": "pt"}, meta
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    assert n % 8 == 0, f"header length {n} not a multiple of 8"
    assert blob[8:9] == b"{" and blob[8 + n - 1:8 + n] in (b" ", b"}")
    header = json.loads(blob[8:8 + n])
    assert list(header)[0] == "__metadata__"
    names = [k for k in header if k != "__metadata__"]
    assert names == sorted(names), "tensors not in sorted-name order"
    offsets = [header[k]["data_offsets"] for k in names]
    assert offsets[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
    assert offsets[-1][1] == len(blob) - 8 - n
    # The reader must refuse a gap in the data section.
    header["f32"]["data_offsets"][1] -= 4
    bad = json.dumps(header).encode()
    bad += b" " * ((8 - len(bad) % 8) % 8)
    bad_path = os.path.join(ctx.root, "bad.safetensors")
    with open(bad_path, "wb") as f:
        f.write(len(bad).to_bytes(8, "little") + bad + blob[8 + n:])
    try:
        st.load_file(bad_path)
    except st.SafetensorsError:
        pass
    else:
        raise AssertionError("reader accepted a file whose offsets do not tile the data")


@check
def every_arch_and_head(ctx):
    for arch in ("llama", "mistral", "qwen2", "bert", "roberta"):
        heads = ("none", "causal_lm", "classification") if arch in R.DECODERS else ("none", "classification")
        for head in heads:
            d = ctx.model("--arch", arch, "--head", head)
            out = run(d)
            h = out["hidden_states"]
            assert tuple(h.shape) == (len(IDS), 32), (arch, head, h.shape)
            assert torch.isfinite(h).all() and h.std() > 0.3, (arch, head, float(h.std()))
            if head == "none":
                assert "logits" not in out
            elif head == "causal_lm":
                assert tuple(out["logits"].shape) == (len(IDS), 64)
            else:
                assert tuple(out["logits"].shape) == (3,)
                assert out["logits"].abs().max() > 0.1, (arch, out["logits"])
            # Different rows (tokens) must differ: catches broadcasting mistakes.
            assert maxdiff(h[0], h[1]) > 1e-2


@check
def cli_contract_and_exit_codes(ctx):
    d = ctx.model("--arch", "qwen2", "--head", "causal_lm")
    out_path = os.path.join(ctx.root, "cli_out.safetensors")
    p = cli("hf_reference.py", "--model", d, "--input-ids", ",".join(map(str, IDS)), "--output", out_path)
    assert p.returncode == 0, p.stderr
    got, meta = st.load_file(out_path, with_metadata=True)
    assert set(got) == {"hidden_states", "logits"} and all(t.dtype == torch.float32 for t in got.values())
    assert_same(got, {k: v.float() for k, v in run(d).items()}, "CLI vs in-process")

    def expect(code, model_dir, *extra):
        p = cli("hf_reference.py", "--model", model_dir, "--input-ids", "1,2", "--output", out_path, *extra)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == code and len(lines) == 1, (code, p.returncode, p.stderr)
        return lines[0]

    def edited(name, edit):
        dst = os.path.join(ctx.root, name)
        shutil.copytree(d, dst)
        cfg = json.load(open(os.path.join(dst, "config.json")))
        edit(cfg)
        json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
        return dst

    expect(2, edited("gpt2", lambda c: c.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")))
    expect(2, edited("yarn", lambda c: c.update(rope_scaling={"rope_type": "yarn", "factor": 2.0})))
    expect(2, edited("swa", lambda c: c.update(use_sliding_window=True)))
    expect(1, d, "--input-ids", "1,999")  # outside the vocabulary (argparse keeps the last value)
    broken = os.path.join(ctx.root, "broken")
    shutil.copytree(d, broken)
    state = load_state(broken)
    del state["model.norm.weight"]
    st.save_file(state, os.path.join(broken, "model.safetensors"))
    assert "model.norm.weight" in expect(1, broken)
    adapter = ctx.adapter(d, "--method", "lora", "--rank", "2", "--alpha", "4", "--targets", "q_proj")
    dora = os.path.join(ctx.root, "dora")
    shutil.copytree(adapter, dora)
    cfg = json.load(open(os.path.join(dora, "adapter_config.json")))
    cfg["use_dora"] = True
    json.dump(cfg, open(os.path.join(dora, "adapter_config.json"), "w"))
    expect(2, d, "--adapter", dora)


@check
def causal_decoders_ignore_future_tokens(ctx):
    for arch in ("llama", "mistral", "qwen2"):
        d = ctx.model("--arch", arch, "--head", "causal_lm")
        a, b = run(d, IDS), run(d, IDS[:-1] + [IDS[-1] + 1])
        for k in ("hidden_states", "logits"):
            assert maxdiff(a[k][:-1], b[k][:-1]) == 0.0, f"{arch} {k}: earlier rows changed"
            assert maxdiff(a[k][-1], b[k][-1]) > 1e-3, f"{arch} {k}: last row did not change"


@check
def encoders_see_the_whole_sequence(ctx):
    for arch in ("bert", "roberta"):
        d = ctx.model("--arch", arch, "--head", "none")
        a, b = run(d, IDS), run(d, IDS[:-1] + [IDS[-1] + 1])
        assert maxdiff(a["hidden_states"][0], b["hidden_states"][0]) > 1e-3, f"{arch}: first row unchanged"


@check
def tied_and_untied_lm_heads(ctx):
    for arch in ("llama", "qwen2"):
        tied = ctx.model("--arch", arch, "--head", "causal_lm", "--tie-embeddings")
        state = load_state(tied)
        assert "lm_head.weight" not in state
        assert json.load(open(os.path.join(tied, "config.json")))["tie_word_embeddings"] is True
        out = run(tied)
        embed = state["model.embed_tokens.weight"].double()
        assert maxdiff(out["logits"], out["hidden_states"] @ embed.T) < 1e-12
        untied = ctx.model("--arch", arch, "--head", "causal_lm")
        state = load_state(untied)
        out = run(untied)
        assert maxdiff(out["logits"], out["hidden_states"] @ state["lm_head.weight"].double().T) < 1e-12
        assert maxdiff(out["logits"], out["hidden_states"] @ embed.T) > 1e-2
        # Same seed: the body is shared, only the head differs.
        assert_same({"h": run(tied)["hidden_states"]}, {"h": out["hidden_states"]}, "tied vs untied body")


@check
def sharded_equals_single_file(ctx):
    for argv in (("--arch", "llama", "--head", "causal_lm"), ("--arch", "bert", "--head", "classification")):
        single = ctx.model(*argv)
        sharded = ctx.model(*argv, "--shards", "3")
        files = sorted(f for f in os.listdir(sharded) if f.endswith(".safetensors"))
        assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)], files
        index = json.load(open(os.path.join(sharded, "model.safetensors.index.json")))
        all_tensors = {}
        for f in files:
            part = st.load_file(os.path.join(sharded, f))
            assert part, f"{f} is empty"
            assert all(index["weight_map"][k] == f for k in part)
            all_tensors.update(part)
        assert set(all_tensors) == set(index["weight_map"]) == set(load_state(single))
        assert index["metadata"]["total_size"] == sum(st.tensor_nbytes(t) for t in all_tensors.values())
        assert_same(run(single), run(sharded), "sharded vs single")


@check
def half_precision_checkpoints(ctx):
    for argv in (("--arch", "llama", "--head", "causal_lm"), ("--arch", "roberta", "--head", "classification"),
                 ("--arch", "qwen2", "--head", "classification")):
        ref = run(ctx.model(*argv))
        for dtype, tol in (("float16", 1e-2), ("bfloat16", 6e-2)):
            d = ctx.model(*argv, "--dtype", dtype)
            cfg = json.load(open(os.path.join(d, "config.json")))
            assert cfg["torch_dtype"] == dtype
            tag = {"float16": "F16", "bfloat16": "BF16"}[dtype]
            header, _, _ = st.read_header(os.path.join(d, "model.safetensors"))
            assert all(v["dtype"] == tag for v in header.values())
            out = run(d)
            for k in ref:
                rel = maxdiff(out[k], ref[k]) / float(ref[k].abs().max())
                assert 0 < rel < tol, f"{argv} {dtype} {k}: relative difference {rel:.3g}"


@check
def prefix_and_no_prefix(ctx):
    for arch in ("llama", "bert", "roberta"):
        with_prefix = ctx.model("--arch", arch, "--head", "none")
        without = ctx.model("--arch", arch, "--head", "none", "--no-prefix")
        names = list(load_state(without))
        assert not any(n.startswith(R.BASE_PREFIX[arch] + ".") for n in names), names[:3]
        assert_same(run(with_prefix), run(without), f"{arch} prefix vs no prefix")
        # The same base weights sit under the head models (seeds follow the prefixed name).
        head = "causal_lm" if arch == "llama" else "classification"
        assert_same({"h": run(ctx.model("--arch", arch, "--head", head))["hidden_states"]},
                    {"h": run(without)["hidden_states"]}, f"{arch} base model vs head model body")


@check
def legacy_position_ids_buffer_is_ignored(ctx):
    plain = ctx.model("--arch", "bert", "--head", "classification")
    legacy = ctx.model("--arch", "bert", "--head", "classification", "--legacy-position-ids")
    header, _, _ = st.read_header(os.path.join(legacy, "model.safetensors"))
    assert header["bert.embeddings.position_ids"]["dtype"] == "I64"
    assert_same(run(plain), run(legacy), "legacy position_ids")


@check
def config_styles_v4_and_v5_agree(ctx):
    for arch in ("llama", "qwen2"):
        for scaling in ("none", "llama3"):
            v4 = ctx.model("--arch", arch, "--head", "causal_lm", "--rope-scaling", scaling)
            v5 = ctx.model("--arch", arch, "--head", "causal_lm", "--rope-scaling", scaling, "--config-style", "v5")
            c4 = json.load(open(os.path.join(v4, "config.json")))
            c5 = json.load(open(os.path.join(v5, "config.json")))
            assert "rope_theta" in c4 and "rope_parameters" not in c4 and "torch_dtype" in c4
            assert "rope_theta" not in c5 and "rope_scaling" not in c5 and "dtype" in c5
            assert c5["rope_parameters"]["rope_type"] == ("default" if scaling == "none" else "llama3")
            assert_same(run(v4), run(v5), f"{arch} {scaling} v4 vs v5")
    m5 = ctx.model("--arch", "mistral", "--head", "causal_lm", "--config-style", "v5")
    assert_same(run(m5), run(ctx.model("--arch", "mistral", "--head", "causal_lm")), "mistral v4 vs v5")


@check
def llama3_rope_scaling(ctx):
    # Hand computation for head_dim 8, theta 1e4, factor 8, low 1, high 4, original context 64:
    # inv_freq = [1, 0.1, 0.01, 0.001], wavelengths 2*pi/inv_freq = [6.28, 62.8, 628, 6283];
    # < 64/4 = 16 kept, > 64/1 = 64 divided by 8, 62.8 in between is smoothed with
    # s = (64 / 62.83 - 1) / (4 - 1), giving (1 - s) * 0.1 / 8 + s * 0.1.
    s = (64 / (2 * math.pi / 0.1) - 1) / 3
    hand = torch.tensor([1.0, (1 - s) * 0.1 / 8 + s * 0.1, 0.01 / 8, 0.001 / 8], dtype=torch.float64)
    assert abs(s - 0.0061973) < 1e-6 and abs(float(hand[1]) - 0.0130423) < 1e-6
    scaled_dir = ctx.model("--arch", "llama", "--head", "causal_lm", "--rope-scaling", "llama3")
    plain_dir = ctx.model("--arch", "llama", "--head", "causal_lm")
    scaled = R.Model(scaled_dir)
    assert torch.allclose(scaled.spec.inv_freq, hand, rtol=1e-12, atol=0), scaled.spec.inv_freq
    out_scaled = {"h": scaled.forward(IDS)[0]}
    plain = R.Model(plain_dir)
    out_plain = {"h": plain.forward(IDS)[0]}
    assert_differ(out_scaled, out_plain, "llama3 vs default rope")
    # Position 0 is not rotated, so the first row cannot depend on inv_freq at all.
    assert maxdiff(out_scaled["h"][0], out_plain["h"][0]) == 0.0
    # The only difference is inv_freq: the default model with the hand inv_freq matches.
    plain.spec.inv_freq = hand
    assert_same({"h": plain.forward(IDS)[0]}, out_scaled, "default model + hand llama3 inv_freq", tol=1e-12)


@check
def rope_depends_on_relative_position(ctx):
    # <R(m) q, R(n) k> must depend only on m - n, for the rotate_half pairing and any inv_freq.
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 1, 8, generator=g, dtype=torch.float64), torch.randn(1, 1, 8, generator=g, dtype=torch.float64)
    inv_freq = R.rope_inv_freq("default", 10000.0, {}, 8)

    def score(m, n):
        return float((R.apply_rope(q, torch.tensor([m]), inv_freq) * R.apply_rope(k, torch.tensor([n]), inv_freq)).sum())

    assert abs(score(5, 2) - score(13, 10)) < 1e-12 and abs(score(0, 0) - float((q * k).sum())) < 1e-12
    assert abs(score(5, 2) - score(5, 3)) > 1e-6
    # Norms are preserved (a rotation).
    assert abs(float(R.apply_rope(q, torch.tensor([7]), inv_freq).norm()) - float(q.norm())) < 1e-12


@check
def gqa_matches_explicitly_repeated_kv_heads(ctx):
    # With 4 query heads on 2 kv heads, query head n uses kv head n // 2 (transformers'
    # repeat_kv). An MHA model whose k/v weights repeat each kv head's rows must give the same output.
    d = ctx.model("--arch", "qwen2", "--head", "causal_lm")
    gqa = R.Model(d)
    mha = R.Model(d)
    s = mha.spec
    rep = s.heads // s.kv_heads
    assert rep == 2
    for l in range(s.layers):
        for proj in ("k_proj", "v_proj"):
            for leaf in ("weight", "bias"):
                name = f"model.layers.{l}.self_attn.{proj}.{leaf}"
                t = mha.w[name]
                blocks = t.reshape(s.kv_heads, s.head_dim, *t.shape[1:])
                mha.w[name] = blocks.repeat_interleave(rep, dim=0).reshape(s.heads * s.head_dim, *t.shape[1:])
    s.kv_heads = s.heads
    assert_same(dict(zip(("h", "l"), gqa.forward(IDS))), dict(zip(("h", "l"), mha.forward(IDS))), "GQA vs MHA", 1e-12)


@check
def explicit_head_dim(ctx):
    for arch in ("llama", "mistral", "qwen2"):
        d = ctx.model("--arch", arch, "--head", "causal_lm", "--head-dim", "16")
        cfg = json.load(open(os.path.join(d, "config.json")))
        assert cfg["head_dim"] == 16
        state = load_state(d)
        assert tuple(state["model.layers.0.self_attn.q_proj.weight"].shape) == (64, 32)
        assert tuple(state["model.layers.0.self_attn.k_proj.weight"].shape) == (32, 32)
        assert tuple(state["model.layers.0.self_attn.o_proj.weight"].shape) == (32, 64)
        m = R.Model(d)
        assert m.spec.head_dim == 16 and m.spec.inv_freq.shape == (8,)
        out = run(d)
        assert torch.isfinite(out["logits"]).all()


@check
def mistral_sliding_window(ctx):
    base = ctx.model("--arch", "mistral", "--head", "none")
    # With the default window (4096) mistral is llama with the same weights.
    assert_same(run(base), run(ctx.model("--arch", "llama", "--head", "none")), "mistral vs llama")
    d = os.path.join(ctx.root, "mistral_w2")
    shutil.copytree(base, d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["sliding_window"] = 2  # token i sees i-1 and i; two layers reach back 2 tokens
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    ids = [3, 5, 7, 9, 11]
    a, b = run(d, ids)["hidden_states"], run(d, [4] + ids[1:])["hidden_states"]
    assert maxdiff(a[3:], b[3:]) == 0.0, "rows 3, 4 must not see token 0 through a window of 2"
    assert maxdiff(a[2], b[2]) > 1e-3, "row 2 sees token 0 through row 1 in the second layer"


# A non-constant perturbation: LayerNorm would erase a constant shift of an embedding row.
BUMP = torch.linspace(-1.0, 1.0, 32, dtype=torch.float64)


@check
def roberta_positions_start_after_padding_idx(ctx):
    d = ctx.model("--arch", "roberta", "--head", "none")
    ref = run(d)
    state = load_state(d)
    table = state["roberta.embeddings.position_embeddings.weight"]
    for row, should_matter in ((0, False), (1, False), (2, True), (2 + len(IDS) - 1, True), (2 + len(IDS), False)):
        m = R.Model(d)
        m.w["roberta.embeddings.position_embeddings.weight"][row] += BUMP
        changed = maxdiff(m.forward(IDS)[0], ref["hidden_states"]) > 0
        assert changed == should_matter, f"position row {row}: changed={changed}"
    assert table.shape[0] == 66
    # A pad token (id 1) takes position pad_token_id and does not advance the count.
    m = R.Model(d)
    m.w["roberta.embeddings.position_embeddings.weight"][3] += BUMP  # would be the 2nd token's position
    with_pad = [5, 1, 7]
    base = R.Model(d).forward(with_pad)[0]
    assert maxdiff(m.forward(with_pad)[0], base) > 0  # token 7 is the 2nd non-pad token: position 3
    m = R.Model(d)
    m.w["roberta.embeddings.position_embeddings.weight"][4] += BUMP  # arange + 2 would use it
    assert maxdiff(m.forward(with_pad)[0], base) == 0
    # BERT: only token type 0 is used.
    bd = ctx.model("--arch", "bert", "--head", "none")
    m = R.Model(bd)
    m.w["bert.embeddings.token_type_embeddings.weight"][1] += BUMP
    assert maxdiff(m.forward(IDS)[0], run(bd)["hidden_states"]) == 0
    m.w["bert.embeddings.token_type_embeddings.weight"][0] += BUMP
    assert maxdiff(m.forward(IDS)[0], run(bd)["hidden_states"]) > 1e-3


@check
def classification_pooling(ctx):
    for arch in ("llama", "qwen2"):
        d = ctx.model("--arch", arch, "--head", "classification")
        m = R.Model(d)
        score = m.w["score.weight"]
        h, logits = m.forward(IDS)
        assert maxdiff(logits, score @ h[-1]) < 1e-12
        # pad_token_id is 0: a trailing pad is skipped, the last real token is pooled.
        h, logits = m.forward(IDS + [0, 0])
        assert maxdiff(logits, score @ h[len(IDS) - 1]) < 1e-12
    # Encoders pool the first token: BERT through the pooler, RoBERTa through classifier.dense.
    for arch in ("bert", "roberta"):
        d = ctx.model("--arch", arch, "--head", "classification")
        m = R.Model(d)
        h, logits = m.forward(IDS)
        w = m.w
        if arch == "bert":
            expect = w["classifier.weight"] @ torch.tanh(w["bert.pooler.dense.weight"] @ h[0] + w["bert.pooler.dense.bias"]) + w["classifier.bias"]
        else:
            expect = w["classifier.out_proj.weight"] @ torch.tanh(w["classifier.dense.weight"] @ h[0] + w["classifier.dense.bias"]) + w["classifier.out_proj.bias"]
        assert maxdiff(logits, expect) < 1e-12
    # Two labels with default names: save_pretrained writes no id2label; readers assume 2.
    d = ctx.model("--arch", "llama", "--head", "classification", "--num-labels", "2")
    assert "id2label" not in json.load(open(os.path.join(d, "config.json")))
    assert run(d)["logits"].shape == (2,)


# -- adapters ----------------------------------------------------------------------------------


def adapter_keys(adapter_dir):
    return set(st.load_file(os.path.join(adapter_dir, "adapter_model.safetensors")))


@check
def adapter_files_follow_peft_naming(ctx):
    d = ctx.model("--arch", "llama", "--head", "causal_lm")
    a = ctx.adapter(d, "--method", "loratrf", "--filter", "both", "--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj")
    keys = adapter_keys(a)
    for l in range(2):
        for proj in ("q_proj", "v_proj"):
            p = f"base_model.model.model.layers.{l}.self_attn.{proj}."
            assert {p + s for s in ("lora_A.weight", "lora_B.weight", "trf_G.weight", "trf_G.bias", "trf_u")} <= keys
    assert len(keys) == 2 * 2 * 5, sorted(keys)
    cfg = json.load(open(os.path.join(a, "adapter_config.json")))
    for k, v in {"peft_type": "LORATRF", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                 "bias": "none", "task_type": "CAUSAL_LM", "modules_to_save": None, "trf_filter": "both",
                 "fan_in_fan_out": False, "use_rslora": False, "use_dora": False}.items():
        assert cfg[k] == v, (k, cfg[k])
    assert "lora_dropout" in cfg and "base_model_name_or_path" in cfg
    # Under LlamaModel the base model is the root module: no "model." in the path.
    base = ctx.model("--arch", "llama", "--head", "none")
    keys = adapter_keys(ctx.adapter(base, "--method", "lora", "--rank", "2", "--alpha", "4", "--targets", "q_proj"))
    assert "base_model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys, sorted(keys)[:2]
    # Encoders: target "query" by PEFT's suffix rule.
    bd = ctx.model("--arch", "bert", "--head", "classification")
    ba = ctx.adapter(bd, "--method", "lora", "--rank", "2", "--alpha", "4", "--targets", "query,value",
                     "--modules-to-save", "classifier")
    keys = adapter_keys(ba)
    assert "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight" in keys
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= keys
    assert json.load(open(os.path.join(ba, "adapter_config.json")))["task_type"] == "SEQ_CLS"


@check
def zero_adapters_change_nothing(ctx):
    for argv in (("--arch", "llama", "--head", "causal_lm"), ("--arch", "qwen2", "--head", "classification"),
                 ("--arch", "roberta", "--head", "classification")):
        d = ctx.model(*argv)
        targets = "query,value,dense" if "roberta" in argv else "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
        ref = run(d)
        cases = [("--method", "lora", "--zero", "B")]
        cases += [("--method", "loratrf", "--filter", f, "--zero", "B,G,c,u") for f in ("bottleneck", "output", "both")]
        for case in cases:
            a = ctx.adapter(d, *case, "--rank", "4", "--alpha", "16", "--targets", targets)
            assert_same(run(d, adapter=a), ref, f"{argv} zero adapter {case}")


@check
def identity_filters_equal_lora(ctx):
    d = ctx.model("--arch", "qwen2", "--head", "causal_lm")
    common = ("--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj,down_proj", "--seed", "7")
    lora = run(d, adapter=ctx.adapter(d, "--method", "lora", *common))
    assert_differ(lora, run(d), "LoRA vs base")
    for f in ("bottleneck", "output", "both"):
        ident = run(d, adapter=ctx.adapter(d, "--method", "loratrf", "--filter", f, "--zero", "G,c,u", *common))
        assert_same(ident, lora, f"LoRATRF {f} with identity filters vs LoRA")
        trf = run(d, adapter=ctx.adapter(d, "--method", "loratrf", "--filter", f, *common))
        assert_differ(trf, lora, f"LoRATRF {f} vs LoRA")


@check
def adapters_match_hand_merged_weights(ctx):
    # LoRA: W = W0 + s B A. LoRATRF output: W = diag(2 sigmoid(u)) (W0 + s B A), b = 2 sigmoid(u) b0.
    d = ctx.model("--arch", "qwen2", "--head", "causal_lm")  # q/k/v have biases
    for method, filt in (("lora", None), ("loratrf", "output")):
        argv = ["--method", method, "--rank", "4", "--alpha", "12", "--targets", "q_proj,o_proj,up_proj"]
        if filt:
            argv += ["--filter", filt]
        a = ctx.adapter(d, *argv)
        tensors = {k: v.double() for k, v in st.load_file(os.path.join(a, "adapter_model.safetensors")).items()}
        merged = R.Model(d)
        modules = {k[len("base_model.model."):-len(".lora_A.weight")] for k in tensors if k.endswith("lora_A.weight")}
        assert len(modules) == 6
        for m in modules:
            A, B = tensors[f"base_model.model.{m}.lora_A.weight"], tensors[f"base_model.model.{m}.lora_B.weight"]
            w = merged.w[m + ".weight"] + (12 / 4) * B @ A
            if filt:
                gate = 2 * torch.sigmoid(tensors[f"base_model.model.{m}.trf_u"])
                w = gate[:, None] * w
                if m + ".bias" in merged.w:
                    merged.w[m + ".bias"] = gate * merged.w[m + ".bias"]
            merged.w[m + ".weight"] = w
        got = R.Model(d, a).forward(IDS)
        assert_same(dict(zip("hl", got)), dict(zip("hl", merged.forward(IDS))), f"{method} {filt} merged", 1e-10)


@check
def bottleneck_filter_by_hand(ctx):
    # One adapted layer evaluated token by token with scalar loops, from SPEC-loratrf.md.
    d = ctx.model("--arch", "llama", "--head", "none")
    a = ctx.adapter(d, "--method", "loratrf", "--filter", "both", "--rank", "3", "--alpha", "6", "--targets", "v_proj")
    m = R.Model(d, a)
    layer = m.adapted["model.layers.0.self_attn.v_proj"]
    W0 = m.w["model.layers.0.self_attn.v_proj.weight"]
    A, B, G, c, u = (layer.t[k].tolist() for k in ("A", "B", "G", "c", "u"))
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = layer.apply(x, x @ W0.T)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for t in range(2):
        xs = x[t].tolist()
        z = [sum(A[i][j] * xs[j] for j in range(32)) for i in range(3)]
        g = [2 * sig(sum(G[i][j] * z[j] for j in range(3)) + c[i]) for i in range(3)]
        for o in range(W0.shape[0]):
            y = sum(float(W0[o, j]) * xs[j] for j in range(32)) + 2.0 * sum(B[o][i] * g[i] * z[i] for i in range(3))
            y *= 2 * sig(u[o])
            assert abs(y - float(got[t, o])) < 1e-12, (t, o, y, float(got[t, o]))


@check
def modules_to_save_replace_the_head(ctx):
    for arch, head_name, keys in (("llama", "score", ["score.weight"]),
                                  ("roberta", "classifier", ["classifier.dense.weight", "classifier.dense.bias",
                                                             "classifier.out_proj.weight", "classifier.out_proj.bias"])):
        d = ctx.model("--arch", arch, "--head", "classification")
        targets = "q_proj" if arch == "llama" else "query"
        common = ("--method", "lora", "--rank", "2", "--alpha", "4", "--targets", targets, "--zero", "B")
        explicit = ctx.adapter(d, *common, "--modules-to-save", head_name)
        saved = {k for k in adapter_keys(explicit) if "lora_" not in k}
        assert saved == {"base_model.model." + k for k in keys}, saved
        out = run(d, adapter=explicit)
        assert maxdiff(out["hidden_states"], run(d)["hidden_states"]) == 0  # B = 0: body unchanged
        assert maxdiff(out["logits"], run(d)["logits"]) > 1e-2  # new head
        # The same head by hand.
        m = R.Model(d)
        for k in keys:
            m.w[k] = st.load_file(os.path.join(explicit, "adapter_model.safetensors"))["base_model.model." + k].double()
        assert maxdiff(m.forward(IDS)[1], out["logits"]) < 1e-12
        # What PeftModelForSequenceClassification writes without modules_to_save: same tensors.
        for style, cfg_value in (("modern", ["classifier", "score"]), ("legacy", None)):
            a = ctx.adapter(d, *common, "--peft-classifier", style)
            assert json.load(open(os.path.join(a, "adapter_config.json")))["modules_to_save"] == cfg_value
            assert_same(run(d, adapter=a), out, f"{arch} --peft-classifier {style}")


@check
def adapter_on_prefixless_and_half_precision_models(ctx):
    # The same adapter (module paths of LlamaModel) applies whether or not the file has "model.".
    with_prefix = ctx.model("--arch", "llama", "--head", "none")
    without = ctx.model("--arch", "llama", "--head", "none", "--no-prefix")
    a = ctx.adapter(without, "--method", "loratrf", "--filter", "both", "--rank", "2", "--alpha", "4", "--targets", "q_proj,gate_proj")
    assert_same(run(with_prefix, adapter=a), run(without, adapter=a), "adapter on prefixed vs plain LlamaModel")
    # An adapter made for LlamaForCausalLM (paths with "model.") has the same seeded values.
    lm = ctx.model("--arch", "llama", "--head", "causal_lm")
    a_lm = ctx.adapter(lm, "--method", "loratrf", "--filter", "both", "--rank", "2", "--alpha", "4", "--targets", "q_proj,gate_proj")
    assert_same({"h": run(lm, adapter=a_lm)["hidden_states"]}, {"h": run(without, adapter=a)["hidden_states"]},
                "adapter on LlamaForCausalLM vs LlamaModel")
    # bf16 adapter tensors load and stay close.
    a16 = ctx.adapter(without, "--method", "loratrf", "--filter", "both", "--rank", "2", "--alpha", "4",
                      "--targets", "q_proj,gate_proj", "--dtype", "bfloat16")
    ref = run(without, adapter=a)["hidden_states"]
    rel = maxdiff(run(without, adapter=a16)["hidden_states"], ref) / float(ref.abs().max())
    assert 0 < rel < 5e-2, rel


@check
def rank_pattern_and_rslora(ctx):
    d = ctx.model("--arch", "llama", "--head", "causal_lm")
    a = ctx.adapter(d, "--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "q_proj")
    m = R.Model(d, a)
    assert m.adapted["model.layers.0.self_attn.q_proj"].scale == 2.0
    for edit, expect in (({"use_rslora": True}, 8 / 2), ({"alpha_pattern": {"q_proj": 2}}, 2 / 4)):
        e = os.path.join(ctx.root, f"edited{len(os.listdir(ctx.root))}")
        shutil.copytree(a, e)
        cfg = json.load(open(os.path.join(e, "adapter_config.json")))
        cfg.update(edit)
        json.dump(cfg, open(os.path.join(e, "adapter_config.json"), "w"))
        assert R.Model(d, e).adapted["model.layers.1.self_attn.q_proj"].scale == expect, edit


# -- SEQ_CLS adapters on bases without a classification head --------------------------------------

HEAD_KEYS = {
    "decoder": {"score.weight": (4, 32)},
    "bert": {"classifier.weight": (4, 32), "classifier.bias": (4,)},
    "roberta": {"classifier.dense.weight": (32, 32), "classifier.dense.bias": (32,),
                "classifier.out_proj.weight": (4, 32), "classifier.out_proj.bias": (4,)},
}


def seq_cls_case(arch):
    """(adapter arguments, head module name, {head tensor: shape}) for a 4-label SEQ_CLS adapter."""
    decoder = arch in R.DECODERS
    head = "score" if decoder else "classifier"
    targets = "q_proj,v_proj,down_proj" if decoder else "query,value,dense"
    argv = ("--method", "loratrf", "--filter", "both", "--rank", "2", "--alpha", "4", "--targets", targets,
            "--task-type", "SEQ_CLS", "--modules-to-save", head, "--num-labels", "4", "--seed", "5")
    return argv, head, HEAD_KEYS["decoder" if decoder else arch]


def without_head(ctx, adapter_dir, head_keys, name):
    """A copy of the adapter with the head tensors and modules_to_save removed."""
    dst = os.path.join(ctx.root, name)
    shutil.copytree(adapter_dir, dst)
    path = os.path.join(dst, "adapter_model.safetensors")
    tensors = st.load_file(path)
    for k in head_keys:
        del tensors["base_model.model." + k]
    st.save_file(tensors, path, metadata={"format": "pt"})
    cfg_path = os.path.join(dst, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["modules_to_save"] = None
    json.dump(cfg, open(cfg_path, "w"))
    return dst


def with_head_from(ctx, model_dir, adapter_dir, head_keys, name):
    """A copy of a *ForSequenceClassification model whose head is the adapter's."""
    dst = os.path.join(ctx.root, name)
    shutil.copytree(model_dir, dst)
    saved = st.load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    state = load_state(dst)
    for k in head_keys:
        assert state[k].shape == saved["base_model.model." + k].shape, k
        state[k] = saved["base_model.model." + k].to(state[k].dtype)
    st.save_file(state, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return dst


@check
def seq_cls_adapter_on_headless_bases(ctx):
    for arch in ("llama", "mistral", "qwen2", "bert", "roberta"):
        argv, head, head_keys = seq_cls_case(arch)
        decoder = arch in R.DECODERS
        bases = [ctx.model("--arch", arch, "--head", h) for h in (("causal_lm", "none") if decoder else ("none",))]
        bases.append(ctx.model("--arch", arch, "--head", "none", "--no-prefix"))
        a = ctx.adapter(bases[0], *argv)
        tensors = st.load_file(os.path.join(a, "adapter_model.safetensors"))
        cfg = json.load(open(os.path.join(a, "adapter_config.json")))
        assert cfg["task_type"] == "SEQ_CLS" and cfg["modules_to_save"] == [head], cfg
        saved = {k[len("base_model.model."):]: tuple(v.shape) for k, v in tensors.items()
                 if not any(r in k for r in ("lora_", "trf_"))}
        assert saved == head_keys, (arch, saved)
        # Paths of *ForSequenceClassification: prefixed, no lm_head, no RoBERTa pooler.
        prefix = R.BASE_PREFIX[arch]
        lora_keys = [k for k in tensors if "lora_A" in k]
        assert lora_keys and all(k.startswith(f"base_model.model.{prefix}.") for k in lora_keys), lora_keys[:3]
        assert (arch == "bert") == any("pooler" in k for k in lora_keys), (arch, lora_keys)
        out = run(bases[0], adapter=a)
        assert tuple(out["logits"].shape) == (4,), out["logits"].shape
        assert out["logits"].abs().max() > 0.1
        # The same adapter, made on or applied to any headless form of the base: the same numbers.
        for b in bases[1:]:
            other = ctx.adapter(b, *argv)
            other_tensors = st.load_file(os.path.join(other, "adapter_model.safetensors"))
            assert set(other_tensors) == set(tensors), f"{arch} {b}: adapter keys differ"
            assert all(torch.equal(other_tensors[k], tensors[k]) for k in tensors)
            assert_same(run(b, adapter=a), out, f"{arch} SEQ_CLS adapter on {b}")
        # Route 2: *ForSequenceClassification with the adapter's head, plus the adapter without it.
        cls = ctx.model("--arch", arch, "--head", "classification", "--num-labels", "4")
        cls_with_head = with_head_from(ctx, cls, a, head_keys, f"seqcls_model_{arch}")
        headless = without_head(ctx, a, head_keys, f"seqcls_nohead_{arch}")
        assert_same(run(cls_with_head, adapter=headless), out, f"{arch} SEQ_CLS headless base vs classification model")
        assert_differ(run(cls, adapter=headless), out, f"{arch} the head matters")
        assert_differ(run(cls_with_head), out, f"{arch} the LoRA matters")
        # Decoders pool the rightmost non-pad token (pad_token_id 0).
        if decoder:
            padded = run(bases[0], ids=IDS + [0, 0], adapter=a)
            m = R.Model(bases[0], a)
            h, logits = m.forward(IDS + [0, 0])
            assert maxdiff(logits, m.w["score.weight"] @ h[len(IDS) - 1]) < 1e-12
            assert maxdiff(padded["logits"], out["logits"]) < 1e-10
    # --num-labels defaults to 3; CLI output is float32 logits [3].
    lm = ctx.model("--arch", "qwen2", "--head", "causal_lm")
    a3 = ctx.adapter(lm, "--method", "lora", "--rank", "2", "--alpha", "4", "--targets", "q_proj",
                     "--task-type", "SEQ_CLS", "--modules-to-save", "score")
    out_path = os.path.join(ctx.root, "seqcls_cli.safetensors")
    p = cli("hf_reference.py", "--model", lm, "--adapter", a3, "--input-ids", "3,5,7", "--output", out_path)
    assert p.returncode == 0, p.stderr
    got = st.load_file(out_path)
    assert set(got) == {"hidden_states", "logits"} and tuple(got["logits"].shape) == (3,), {k: v.shape for k, v in got.items()}


@check
def seq_cls_task_type_errors(ctx):
    out_path = os.path.join(ctx.root, "seqcls_err.safetensors")

    def expect_error(model_dir, adapter_dir, *words):
        p = cli("hf_reference.py", "--model", model_dir, "--adapter", adapter_dir, "--input-ids", "3,5,7",
                "--output", out_path)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1, (p.returncode, p.stderr)
        assert all(w in lines[0] for w in words), (words, lines[0])

    # SEQ_CLS without the head tensors, on a base without a head.
    for arch in ("llama", "bert", "roberta"):
        argv, head, head_keys = seq_cls_case(arch)
        base = ctx.model("--arch", arch, "--head", "causal_lm" if arch in R.DECODERS else "none")
        a = ctx.adapter(base, *argv)
        headless = without_head(ctx, a, head_keys, f"seqcls_err_nohead_{arch}")
        expect_error(base, headless, "SEQ_CLS", sorted(head_keys)[0])
        # Only part of the head: still refused.
        if len(head_keys) > 1:
            partial = without_head(ctx, a, sorted(head_keys)[:1], f"seqcls_err_partial_{arch}")
            expect_error(base, partial, "SEQ_CLS", sorted(head_keys)[0])
    # make_tiny_adapter warns (and writes it) when the head is left out of modules_to_save.
    lm = ctx.model("--arch", "llama", "--head", "causal_lm")
    p = cli("make_tiny_adapter.py", "--model", lm, "--method", "lora", "--rank", "2", "--alpha", "4",
            "--targets", "q_proj", "--task-type", "SEQ_CLS", "--output", os.path.join(ctx.root, "seqcls_nosave"))
    assert p.returncode == 0 and "warning" in p.stderr, (p.returncode, p.stderr)
    expect_error(lm, os.path.join(ctx.root, "seqcls_nosave"), "SEQ_CLS", "score.weight")
    # CAUSAL_LM adapter on a classification base.
    for arch in ("qwen2", "roberta"):
        cls = ctx.model("--arch", arch, "--head", "classification")
        a = ctx.adapter(cls, "--method", "lora", "--rank", "2", "--alpha", "4",
                        "--targets", "q_proj" if arch in R.DECODERS else "query", "--task-type", "CAUSAL_LM")
        expect_error(cls, a, "CAUSAL_LM", "ForSequenceClassification")
    # BERT without pooler weights: make_tiny_adapter refuses, hf_reference too.
    bert = ctx.model("--arch", "bert", "--head", "none")
    argv, _, _ = seq_cls_case("bert")
    a = ctx.adapter(bert, *argv)
    no_pooler = os.path.join(ctx.root, "bert_no_pooler")
    shutil.copytree(bert, no_pooler)
    state = load_state(no_pooler)
    del state["bert.pooler.dense.weight"], state["bert.pooler.dense.bias"]
    st.save_file(state, os.path.join(no_pooler, "model.safetensors"), metadata={"format": "pt"})
    p = cli("make_tiny_adapter.py", "--model", no_pooler, *argv, "--output", os.path.join(ctx.root, "seqcls_nopool"))
    assert p.returncode == 1 and "pooler" in p.stderr and "Traceback" not in p.stderr, (p.returncode, p.stderr)
    expect_error(no_pooler, a, "SEQ_CLS", "pooler")
    # --num-labels: only for SEQ_CLS, and it cannot contradict an existing head.
    for extra in (("--num-labels", "4"), ("--task-type", "SEQ_CLS", "--num-labels", "5")):
        model = lm if "SEQ_CLS" not in extra else ctx.model("--arch", "llama", "--head", "classification")
        p = cli("make_tiny_adapter.py", "--model", model, "--method", "lora", "--rank", "2", "--alpha", "4",
                "--targets", "q_proj", *extra, "--output", os.path.join(ctx.root, "seqcls_badlabels"))
        assert p.returncode == 1 and "--num-labels" in p.stderr and "Traceback" not in p.stderr, (extra, p.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-k", default="", help="run only checks whose name contains this")
    p.add_argument("--keep", help="write the generated models here and keep them")
    args = p.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="loratrf_ref_")
    os.makedirs(root, exist_ok=True)
    ctx = Ctx(root)
    failed = 0
    for fn in CHECKS:
        if args.k not in fn.__name__:
            continue
        try:
            fn(ctx)
            print(f"PASS {fn.__name__}")
        except Exception as e:  # report every check, not just the first failure
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{failed} failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
