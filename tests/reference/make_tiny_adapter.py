#!/usr/bin/python3
"""Writes a random LoRA / LoRATRF adapter directory for a model directory, as PEFT lays one out.

    /usr/bin/python3 tests/reference/make_tiny_adapter.py --model DIR --method loratrf \
        --filter both --rank 4 --alpha 8 --targets q_proj,v_proj --output ADAPTER_DIR

Files (SPEC-loratrf.md, "Adapter files"): adapter_config.json (indent 2, sorted keys, as PEFT's
save_pretrained) and adapter_model.safetensors with
  base_model.model.<P>.lora_A.weight [r, d_in]   base_model.model.<P>.lora_B.weight [d_out, r]
  base_model.model.<P>.trf_G.weight [r, r]       base_model.model.<P>.trf_G.bias [r]
  base_model.model.<P>.trf_u [d_out]             base_model.model.<H>.<param>  (modules_to_save)
PEFT drops the adapter name ("default") and the ModulesToSaveWrapper level on save, so these are
the module paths of the HF model class named in config.json: "model.layers.0..." under
LlamaForCausalLM, but "layers.0..." under LlamaModel (the base model is then the root module).

A sequence-classification adapter for a base without a classification head (*ForCausalLM or a
bare *Model), the usual fine-tuning case:

    make_tiny_adapter.py --model DIR --task-type SEQ_CLS --modules-to-save score [--num-labels K] ...
    (encoders: --modules-to-save classifier)

is trained by PEFT on AutoModelForSequenceClassification, so its paths are those of
*ForSequenceClassification ("model.layers.0...", no lm_head, no RoBERTa pooler) and the head it
creates is saved as modules_to_save: decoders score.weight [K, hidden] (no bias), BERT
classifier.weight [K, hidden] + classifier.bias [K] (on top of the base's pooler, which must
exist), RoBERTa classifier.dense.{weight,bias} [hidden, hidden]/[hidden] +
classifier.out_proj.{weight,bias} [K, hidden]/[K]. K defaults to 3.

Unlike a fresh adapter (B = 0, G = 0, c = 0, u = 0, i.e. the identity), every tensor is random
and nonzero so the adapter visibly changes outputs; --zero puts chosen roles back to zero.
Random values depend only on (seed, module path, role), so a LoRA and a LoRATRF adapter with the
same seed share A and B.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
from hf_reference import ARCHITECTURES, BASE_CHILDREN, BASE_PREFIX, DECODERS  # noqa: E402
from make_tiny_model import seeded_randn  # noqa: E402

TASK_TYPES = {"causal_lm": "CAUSAL_LM", "classification": "SEQ_CLS", "none": "FEATURE_EXTRACTION"}
ROLE_SUFFIX = {"A": "lora_A.weight", "B": "lora_B.weight", "G": "trf_G.weight", "c": "trf_G.bias", "u": "trf_u"}
ROLE_STD = {"A": 0.2, "B": 0.1, "G": 0.5, "c": 0.3, "u": 0.5}
FILTER_ROLES = {"bottleneck": ("G", "c"), "output": ("u",), "both": ("G", "c", "u")}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PEFT_CLASSIFIER_NAMES = ["classifier", "score"]
DEFAULT_NUM_LABELS = 3


def load_base(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    archs = cfg.get("architectures") or []
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise SystemExit(f"make_tiny_adapter: unsupported architectures {archs}")
    model_type, head = ARCHITECTURES[archs[0]]
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for fname in files:
        state.update(safetensors_io.load_file(os.path.join(model_dir, fname)))
    return cfg, model_type, head, state


def module_path(name, model_type, head):
    """Tensor name in the file -> its module's path in the model class of config.json."""
    prefix = BASE_PREFIX[model_type]
    family = "decoder" if model_type in DECODERS else "encoder"
    if head == "none":
        return name[len(prefix) + 1:] if name.startswith(prefix + ".") else name
    if name.split(".", 1)[0] in BASE_CHILDREN[family]:
        return f"{prefix}.{name}"
    return name


def base_modules(cfg, model_type, head, state):
    """{module path: {param leaf: tensor}} for every module with parameters, plus the tied lm_head."""
    modules = {}
    for name, t in state.items():
        if not t.is_floating_point():
            continue  # buffers such as embeddings.position_ids
        path = module_path(name, model_type, head)
        mod, leaf = path.rsplit(".", 1)
        modules.setdefault(mod, {})[leaf] = t
    if head == "causal_lm" and "lm_head" not in modules:
        embed = next(t for n, t in state.items() if n.endswith("embed_tokens.weight"))
        modules["lm_head"] = {"weight": embed}  # tied: the module exists, its weight is shared
    return modules


def classification_head_shapes(model_type, hidden, num_labels):
    """{module path: {leaf: shape}} of the head *ForSequenceClassification puts on the base model."""
    if model_type in DECODERS:
        return {"score": {"weight": (num_labels, hidden)}}  # nn.Linear(hidden, num_labels, bias=False)
    if model_type == "bert":
        return {"classifier": {"weight": (num_labels, hidden), "bias": (num_labels,)}}
    return {"classifier.dense": {"weight": (hidden, hidden), "bias": (hidden,)},
            "classifier.out_proj": {"weight": (num_labels, hidden), "bias": (num_labels,)}}


def as_sequence_classification(cfg, model_type, state, num_labels):
    """Modules of *ForSequenceClassification built on a checkpoint without that head, as
    AutoModelForSequenceClassification.from_pretrained does: base prefix on every path, lm_head
    dropped, RoBERTa's pooler dropped (add_pooling_layer=False), a fresh head added (zeros here:
    only its shapes matter, the saved copy gets random values)."""
    modules = base_modules(cfg, model_type, "classification", state)
    modules.pop("lm_head", None)
    prefix = BASE_PREFIX[model_type]
    if model_type == "roberta":
        modules.pop(f"{prefix}.pooler.dense", None)
    if model_type == "bert" and not {"weight", "bias"} <= set(modules.get(f"{prefix}.pooler.dense", {})):
        raise SystemExit(f"make_tiny_adapter: SEQ_CLS on {cfg['architectures'][0]}: BertForSequenceClassification "
                         f"needs the base model's pooler ({prefix}.pooler.dense.weight/bias), which the "
                         f"checkpoint lacks")
    hidden = int(cfg["hidden_size"])
    for path, leaves in classification_head_shapes(model_type, hidden, num_labels).items():
        modules[path] = {leaf: torch.zeros(shape) for leaf, shape in leaves.items()}
    return modules


def base_num_labels(model_type, modules):
    head = "score" if model_type in DECODERS else ("classifier" if model_type == "bert" else "classifier.out_proj")
    return int(modules[head]["weight"].shape[0])


def is_linear(path, params):
    w = params.get("weight")
    return w is not None and w.dim() == 2 and "embed" not in path.rsplit(".", 1)[-1]


def matches_target(path, targets):
    # PEFT's check_target_module_exists for a list: exact name, or "." + name suffix.
    return any(path == t or path.endswith("." + t) for t in targets)


def modules_to_save_paths(modules, names):
    # PEFT's _set_trainable: any module whose key ends with a name (plain endswith); keep the
    # outermost match, since a wrapped module's children are copied with it.
    hits = sorted(p for p in modules_with_children(modules) if any(p.endswith(n) for n in names))
    return [p for p in hits if not any(p.startswith(q + ".") for q in hits if q != p)]


def modules_with_children(modules):
    """All module paths, including containers such as RoBERTa's `classifier`."""
    paths = set()
    for p in modules:
        parts = p.split(".")
        for i in range(1, len(parts) + 1):
            paths.add(".".join(parts[:i]))
    return paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="base model directory (config.json + safetensors)")
    p.add_argument("--method", required=True, choices=("lora", "loratrf"))
    p.add_argument("--filter", default="bottleneck", choices=tuple(FILTER_ROLES), help="LoRATRF filter")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--targets", required=True, help="comma-separated target_modules, e.g. q_proj,v_proj")
    p.add_argument("--modules-to-save", default=None, help="comma-separated, e.g. score or classifier")
    p.add_argument("--output", required=True, help="adapter directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.05, help="lora_dropout (ignored at inference)")
    p.add_argument("--zero", default="", help="comma-separated roles to set to 0 instead: A,B,G,c,u")
    p.add_argument("--dtype", default="float32", choices=tuple(TORCH_DTYPES), help="dtype of the saved tensors")
    p.add_argument("--task-type", default=None,
                   help="override task_type (default from the architecture); SEQ_CLS on a base without a "
                        "classification head writes the adapter of *ForSequenceClassification (see above)")
    p.add_argument("--num-labels", type=int, default=None,
                   help=f"SEQ_CLS on a base without a classification head: rows of the new head "
                        f"(default {DEFAULT_NUM_LABELS})")
    p.add_argument("--peft-classifier", default="none", choices=("none", "modern", "legacy"),
                   help="SEQ_CLS: imitate PeftModelForSequenceClassification, which always saves the "
                        "classifier/score head: 'modern' also appends both names to modules_to_save in "
                        "the config, 'legacy' (older PEFT) leaves the config's value untouched")
    p.add_argument("--minimal-config", action="store_true",
                   help="write only the keys SPEC-loratrf.md lists, not PEFT's other LoraConfig fields")
    args = p.parse_args(argv)
    args.zero = {z for z in args.zero.split(",") if z}
    if not args.zero <= set(ROLE_SUFFIX):
        p.error(f"--zero: roles are {sorted(ROLE_SUFFIX)}")
    if args.rank < 1:
        p.error("--rank must be >= 1")
    if args.num_labels is not None and args.num_labels < 1:
        p.error("--num-labels must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg, model_type, head, state = load_base(args.model)
    targets = [t for t in args.targets.split(",") if t]
    save_names = [m for m in (args.modules_to_save or "").split(",") if m] or None

    task_type = args.task_type or TASK_TYPES[head]
    fresh_head = task_type == "SEQ_CLS" and head != "classification"
    if args.num_labels is not None and task_type != "SEQ_CLS":
        raise SystemExit("make_tiny_adapter: --num-labels applies to SEQ_CLS adapters only")
    if fresh_head:
        num_labels = args.num_labels if args.num_labels is not None else DEFAULT_NUM_LABELS
        modules = as_sequence_classification(cfg, model_type, state, num_labels)
    else:
        modules = base_modules(cfg, model_type, head, state)
        if args.num_labels is not None and args.num_labels != base_num_labels(model_type, modules):
            raise SystemExit(f"make_tiny_adapter: --num-labels {args.num_labels}, but the base model's "
                             f"classification head has {base_num_labels(model_type, modules)} labels")
    config_save = list(save_names) if save_names else None
    head_names = []
    if args.peft_classifier != "none":
        if task_type != "SEQ_CLS":
            raise SystemExit("make_tiny_adapter: --peft-classifier applies to SEQ_CLS models only")
        head_names = PEFT_CLASSIFIER_NAMES
        if args.peft_classifier == "modern":
            config_save = (config_save or []) + PEFT_CLASSIFIER_NAMES
    save_paths = modules_to_save_paths(modules, (save_names or []) + head_names)
    if save_names and not modules_to_save_paths(modules, save_names):
        raise SystemExit(f"make_tiny_adapter: modules_to_save {save_names} not found in the model")
    if fresh_head and not any(p in save_paths or any(p.startswith(s + ".") for s in save_paths)
                              for p in classification_head_shapes(model_type, 1, 1)):
        print(f"make_tiny_adapter: warning: SEQ_CLS on {cfg['architectures'][0]} without the new head in "
              f"modules_to_save: the adapter cannot be applied (hf_reference refuses it)", file=sys.stderr)

    dtype = TORCH_DTYPES[args.dtype]
    roles = ("A", "B") + (FILTER_ROLES[args.filter] if args.method == "loratrf" else ())
    tensors = {}
    adapted = [p for p, params in sorted(modules.items())
               if is_linear(p, params) and matches_target(p, targets)
               and not any(p == s or p.startswith(s + ".") for s in save_paths)]
    if not adapted:
        raise SystemExit(f"make_tiny_adapter: target modules {targets} not found in the base model")
    for path in adapted:
        d_out, d_in = modules[path]["weight"].shape
        shapes = {"A": (args.rank, d_in), "B": (d_out, args.rank), "G": (args.rank, args.rank),
                  "c": (args.rank,), "u": (d_out,)}
        # Seed from the prefixed path so LlamaModel and LlamaForCausalLM adapters agree.
        seed_path = module_path(path, model_type, "causal_lm" if model_type in DECODERS else "classification")
        for role in roles:
            if role in args.zero:
                value = torch.zeros(shapes[role])
            else:
                value = ROLE_STD[role] * seeded_randn(args.seed, f"adapter:{seed_path}:{role}", shapes[role])
            tensors[f"base_model.model.{path}.{ROLE_SUFFIX[role]}"] = value.to(dtype)
    for mod in save_paths:
        # A trained copy of the whole module: new random values, same shapes.
        for path, params in modules.items():
            if path == mod or path.startswith(mod + "."):
                for leaf, t in params.items():
                    std = 0.1 if leaf == "bias" else 0.15
                    value = std * seeded_randn(args.seed, f"saved:{path}.{leaf}", tuple(t.shape))
                    tensors[f"base_model.model.{path}.{leaf}"] = value.to(dtype)

    adapter_cfg = {
        "base_model_name_or_path": args.model,
        "bias": "none",
        "fan_in_fan_out": False,
        "lora_alpha": args.alpha,
        "lora_dropout": args.dropout,
        "modules_to_save": config_save,
        "peft_type": "LORATRF" if args.method == "loratrf" else "LORA",
        "r": args.rank,
        "target_modules": targets,
        "task_type": task_type,
        "use_dora": False,
        "use_rslora": False,
    }
    if args.method == "loratrf":
        adapter_cfg["trf_filter"] = args.filter
    if not args.minimal_config:
        # The rest of what PEFT (0.13) writes for a LoraConfig; readers must tolerate these.
        adapter_cfg.update({
            "alpha_pattern": {}, "auto_mapping": None, "inference_mode": True, "init_lora_weights": True,
            "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
            "loftq_config": {}, "megatron_config": None, "megatron_core": "megatron.core",
            "rank_pattern": {}, "revision": None,
        })
    if float(args.alpha).is_integer():
        adapter_cfg["lora_alpha"] = int(args.alpha)  # PEFT configs carry ints when given ints

    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "adapter_config.json"), "w") as f:
        f.write(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n")
    safetensors_io.save_file(tensors, os.path.join(args.output, "adapter_model.safetensors"),
                             metadata={"format": "pt"})


if __name__ == "__main__":
    main()
