#!/usr/bin/python3
"""Trains a LoRATRF adapter on a Llama-shaped causal LM in plain PyTorch: the baseline that
`loratrf-worker run` is timed against (tests/bench/train_throughput.sh).

    /usr/bin/python3 tests/bench/reference_train.py --model DIR --data train.jsonl \
        --output DIR --steps 13 --threads 1

What it does is what a loratrf job with this spec does, written separately in Python:

    task: causal_lm, data {"input_ids": [...]} (loss on every token after the first)
    adapter: {method: loratrf, filter: bottleneck, rank, alpha, dropout: 0,
              target_modules: [q_proj, k_proj, v_proj, o_proj]}
    training: {batch_size, micro_batch_size, lr_scheduler: constant, warmup_ratio: 0,
               weight_decay: 0, max_grad_norm, seed, precision: fp32}

- Model: the Llama forward written here as transformers' modeling_llama.py writes it in eager
  mode (RMSNorm, RoPE, grouped-query attention by repeat_kv, additive causal mask, softmax in
  float32, SwiGLU MLP), float32, weights loaded with tests/reference/safetensors_io.py.
- Adapter: LoRATRF per /work/shared/SPEC-loratrf.md, filter bottleneck:
  z = A x, g = 2 sigmoid(G z + c), y = W0 x + (alpha / r) B (g * z); A kaiming_uniform(a=sqrt(5))
  drawn right after torch.manual_seed(seed) in module order, B, G, c zero. That is the order the
  engine draws them in, so both start from the same adapter.
- Data order: the engine's (a Fisher-Yates shuffle per epoch driven by std::mt19937_64 seeded
  with SplitMix64(seed ^ SplitMix64(epoch)), worker/engine/data/batching.cc), reimplemented
  below, so both see the same batches and their losses can be compared step by step.
- Optimizer: torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0),
  torch.nn.utils.clip_grad_norm_, constant learning rate.

Writes OUTPUT/metrics.jsonl with one row a step in the engine's format ({"type": "train",
"step", "loss", "grad_norm", "tokens_per_second", "samples_per_second", "step_seconds"}),
timing each step as the engine does: from fetching the batch to the optimizer step, with
`.item()` syncs included. Nothing is saved: the benchmark measures training only.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import safetensors_io  # noqa: E402

MASK64 = (1 << 64) - 1


# ---- the engine's data order -------------------------------------------------------------------

class MT19937_64:
    """std::mt19937_64 (Matsumoto & Nishimura's 64-bit Mersenne Twister), as the C++ standard
    specifies it."""

    N, M = 312, 156

    def __init__(self, seed):
        self.mt = [seed & MASK64]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64)
        self.index = self.N

    def _twist(self):
        mt = self.mt
        for i in range(self.N):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % self.N] & 0x7FFFFFFF)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + self.M) % self.N] ^ xa
        self.index = 0

    def __call__(self):
        if self.index >= self.N:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK64


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def shuffled_order(num_examples, seed, epoch):
    order = list(range(num_examples))
    rng = MT19937_64(splitmix64(seed ^ splitmix64(epoch)))
    for i in range(num_examples - 1, 0, -1):
        n = i + 1
        threshold = (-n) % (1 << 64) % n  # unbiased draw from [0, n): reject the lowest 2^64 mod n
        r = rng()
        while r < threshold:
            r = rng()
        j = r % n
        order[i], order[j] = order[j], order[i]
    return order


# ---- model -------------------------------------------------------------------------------------

class LoratrfLinear(nn.Module):
    """A frozen linear layer with a LoRATRF (bottleneck filter) adapter."""

    def __init__(self, weight, rank, alpha):
        super().__init__()
        d_out, d_in = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.lora_A = nn.Parameter(torch.empty(rank, d_in))
        self.lora_B = nn.Parameter(torch.zeros(d_out, rank))
        self.trf_G = nn.Parameter(torch.zeros(rank, rank))
        self.trf_c = nn.Parameter(torch.zeros(rank))
        self.scale = alpha / rank

    def reset_adapter(self):
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x):
        z = F.linear(x, self.lora_A)
        g = 2.0 * torch.sigmoid(F.linear(z, self.trf_G, self.trf_c))
        return F.linear(x, self.weight) + F.linear(g * z, self.lora_B) * self.scale


class RMSNorm(nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


class Attention(nn.Module):
    def __init__(self, cfg, w, prefix, rank, alpha):
        super().__init__()
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, LoratrfLinear(w[prefix + name + ".weight"], rank, alpha))

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o_proj(out)


class Mlp(nn.Module):
    def __init__(self, w, prefix):
        super().__init__()
        self.gate = nn.Parameter(w[prefix + "gate_proj.weight"], requires_grad=False)
        self.up = nn.Parameter(w[prefix + "up_proj.weight"], requires_grad=False)
        self.down = nn.Parameter(w[prefix + "down_proj.weight"], requires_grad=False)

    def forward(self, x):
        return F.linear(F.silu(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, w, i, rank, alpha):
        super().__init__()
        p = f"model.layers.{i}."
        eps = cfg["rms_norm_eps"]
        self.self_attn = Attention(cfg, w, p + "self_attn.", rank, alpha)
        self.mlp = Mlp(w, p + "mlp.")
        self.input_layernorm = RMSNorm(w[p + "input_layernorm.weight"], eps)
        self.post_attention_layernorm = RMSNorm(w[p + "post_attention_layernorm.weight"], eps)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg, w, rank, alpha):
        super().__init__()
        for key in ("rope_scaling", "rope_parameters"):
            scaling = cfg.get(key)
            if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
                raise SystemExit(f"{key}: only the default RoPE is implemented here")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise SystemExit("attention_bias / mlp_bias: not implemented here")
        self.embed = nn.Parameter(w["model.embed_tokens.weight"], requires_grad=False)
        self.layers = nn.ModuleList(DecoderLayer(cfg, w, i, rank, alpha)
                                    for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(w["model.norm.weight"], cfg["rms_norm_eps"])
        head = w.get("lm_head.weight")
        if head is None or cfg.get("tie_word_embeddings"):
            head = self.embed
        self.lm_head = nn.Parameter(head, requires_grad=False) if head is not self.embed else None
        heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
        theta = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def adapter_layers(self):
        """In the engine's (named_modules) order."""
        for layer in self.layers:
            a = layer.self_attn
            yield from (a.q_proj, a.k_proj, a.v_proj, a.o_proj)

    def forward(self, ids, attention_mask):
        b, t = ids.shape
        h = F.embedding(ids, self.embed)
        positions = torch.arange(t, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(h.dtype), emb.sin().to(h.dtype)
        # Additive 4D mask: causal and key padding, as transformers builds it.
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        allowed = causal[None, None, :, :] & attention_mask.bool()[:, None, None, :]
        mask = torch.zeros(b, 1, t, t, dtype=h.dtype).masked_fill(~allowed, torch.finfo(h.dtype).min)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        h = self.norm(h)
        return F.linear(h, self.lm_head if self.lm_head is not None else self.embed)


# ---- training ----------------------------------------------------------------------------------

def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = ["model.safetensors"]
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    weights = {}
    for name in files:
        for key, value in safetensors_io.load_file(os.path.join(model_dir, name)).items():
            weights[key] = value.to(torch.float32)
    return weights


def read_data(path, vocab, max_seq_len):
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            ids = json.loads(line)["input_ids"]
            if not ids or min(ids) < 0 or max(ids) >= vocab:
                raise SystemExit(f"{path}:{number}: input_ids empty or out of the vocabulary")
            rows.append(ids[:max_seq_len])
    return rows


def collate(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    labels = torch.full((len(rows), width), -100, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
        labels[i, :len(r)] = torch.tensor(r)
    return ids, mask, labels


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="JSONL, one {\"input_ids\": [...]} a line")
    p.add_argument("--output", required=True, help="directory for metrics.jsonl")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    if args.batch_size % args.micro_batch_size:
        p.error("--batch-size must be a multiple of --micro-batch-size")
    if args.threads:
        torch.set_num_threads(args.threads)

    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    model = LlamaForCausalLM(cfg, load_weights(args.model), args.rank, args.alpha)
    torch.manual_seed(args.seed)
    for layer in model.adapter_layers():
        layer.reset_adapter()
    model.train()
    trainable = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    data = read_data(args.data, cfg["vocab_size"], args.max_seq_len)
    if len(data) < args.batch_size:
        raise SystemExit(f"{args.data}: fewer examples than one batch")
    pad_id = cfg.get("pad_token_id") or 0
    steps_per_epoch = len(data) // args.batch_size

    os.makedirs(args.output, exist_ok=True)
    metrics = open(os.path.join(args.output, "metrics.jsonl"), "w")
    print(f"reference: {len(data)} examples, {args.steps} steps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {sum(q.numel() for q in trainable)} trainable "
          f"of {sum(q.numel() for q in model.parameters())} parameters", flush=True)
    order, order_epoch = None, -1
    for step in range(args.steps):
        started = time.perf_counter()
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = shuffled_order(len(data), args.seed, epoch), epoch
        batch = order[in_epoch * args.batch_size:(in_epoch + 1) * args.batch_size]
        targets = sum(max(0, len(data[i]) - 1) for i in batch)
        loss_sum, tokens = 0.0, 0
        for start in range(0, len(batch), args.micro_batch_size):
            ids, mask, labels = collate([data[i] for i in batch[start:start + args.micro_batch_size]], pad_id)
            logits = model(ids, mask)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100, reduction="sum")
            (loss / targets).backward()
            loss_sum += loss.item()
            tokens += int(mask.sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        metrics.write(json.dumps({"type": "train", "step": step + 1, "loss": loss_sum / targets,
                                  "lr": args.lr, "grad_norm": grad_norm,
                                  "tokens_per_second": tokens / seconds,
                                  "samples_per_second": args.batch_size / seconds,
                                  "step_seconds": seconds}) + "\n")
        metrics.flush()
    metrics.close()


if __name__ == "__main__":
    main()
