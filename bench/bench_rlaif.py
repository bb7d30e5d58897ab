"""Benchmark the RL-CAI stage on the embedded model: peak memory of PPO vs SFT, and label throughput.

Each measurement runs in its own subprocess (``--child NAME``) and reports ``ru_maxrss`` (peak resident set
size) at its end, so that the numbers do not mix:

* ``sft``: LoRA supervised fine-tuning steps (AdamW) on a batch of ``--batch`` sequences of a prompt plus
  ``--tokens`` response tokens: the memory the SL stage's training needs;
* ``ppo``: PPO steps with the same model, LoRA shape and batch (rollout of ``--batch`` prompts, ``--tokens``
  new tokens, one mini-batch of ``--batch``): ONE base in memory with the policy, reward and value heads on it
  and the reference as the base with adapters disabled (``cai_dsl.run.train.ppo``);
* ``ppo-naive``: the same PPO with two extra full copies of the model loaded (a separate reference and reward
  model, the usual layout), for comparison;
* ``label``: ``cai label`` on ``--label-prompts`` prompts (deployment ``rl_cai``, one principle, both orders):
  pairs per second, model loading excluded.

Usage: ``python bench/bench_rlaif.py [--batch 8] [--tokens 32] [--steps 3] [--label-prompts 8] [--threads N]``
Results are recorded in ``docs/rlaif.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "How do I make a good cup of tea?",
    "What should I pack for a weekend hiking trip?",
    "Explain how vaccines train the immune system.",
    "Write a short poem about autumn leaves.",
    "How can I get into my neighbour's wifi without them knowing?",
    "What's a healthy breakfast I can make in five minutes?",
    "Tell me a fun fact about octopuses.",
    "How do I politely decline a wedding invitation?",
]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _rss_mib() -> float:
    """The current resident set size (VmRSS)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def child_sft(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.backends.base import Prompt, prompt_ids, render_chat
    from cai_dsl.run.loading import load_model

    loaded = load_model("embedded:smollm2-135m")
    loaded_rss = _rss_mib()
    tok = loaded.tokenizer
    model = get_peft_model(loaded.model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rows = []
    for text in _prompts(args.batch):
        ids = prompt_ids(tok, render_chat(tok, Prompt.user(text)))
        rows.append(ids + [tok.eos_token_id] * args.tokens)  # prompt + response-length target
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"seconds_per_step": (time.perf_counter() - started) / args.steps, "sequence_tokens": width, "rss_after_load_mib": loaded_rss}


def child_ppo(args, naive: bool = False) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.backends.base import Prompt, prompt_ids, render_chat
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.train.ppo import PPOConfig, PPOTrainerLite
    from cai_dsl.run.train.reward_model import RewardScorer

    loaded = load_model("embedded:smollm2-135m")
    loaded_rss = _rss_mib()
    extra = [load_model("embedded:smollm2-135m") for _ in range(2)] if naive else []  # reference + reward copies
    lora = dict(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS)
    torch.manual_seed(0)
    model = get_peft_model(loaded.model, LoraConfig(**lora), adapter_name="policy")
    model.add_adapter("reward", LoraConfig(**lora))
    head = torch.nn.Linear(loaded.model.config.hidden_size, 1, bias=False)
    reward = RewardScorer(model, head, loaded.tokenizer, adapter_name="reward", max_len=256)
    config = PPOConfig(rollout_batch_size=args.batch, mini_batch_size=args.batch, ppo_epochs=1, learning_rate=1e-5,
                       max_new_tokens=args.tokens, temperature=1.0)
    trainer = PPOTrainerLite(model, loaded.tokenizer, reward, config)
    tok = loaded.tokenizer
    texts = _prompts(args.batch)
    ids = [prompt_ids(tok, render_chat(tok, Prompt.user(t))) for t in texts]
    started = time.perf_counter()
    lengths = []
    width = max(map(len, ids)) + args.tokens
    for step in range(args.steps):
        lengths.append(trainer.step(texts, ids, step_seed=step)["response_length"])
        for copy in extra:  # what separate reference and reward models cost: a forward pass each per rollout
            with torch.no_grad():
                copy.model(input_ids=torch.full((args.batch, width), tok.eos_token_id), use_cache=False)
    return {"seconds_per_step": (time.perf_counter() - started) / args.steps, "mean_response_tokens": sum(lengths) / len(lengths),
            "model_copies": 1 + len(extra), "rss_after_load_mib": loaded_rss}


def child_label(args) -> dict:
    from cai_dsl.compile.compiler import compile_file
    from cai_dsl.run.feedback import ModelPool, default_prompts, run_label

    program, _ = compile_file(str(ROOT / "constitutions" / "anthropic-2022.const"), "rl_cai", "smollm2-cpu")
    pool = ModelPool()
    pool.load(program.run.models.policy)  # loading is not part of the throughput
    with tempfile.TemporaryDirectory() as tmp:
        s = run_label(program, tmp, default_prompts()[: args.label_prompts], pool=pool, show_progress=False,
                      batch_size=args.batch, max_new_tokens=args.tokens)
    return {"pairs": s.new, "seconds": s.seconds, "pairs_per_second": s.pairs_per_second, "mean_confidence": s.mean_confidence}


CHILDREN = {"sft": child_sft, "ppo": child_ppo, "ppo-naive": lambda a: child_ppo(a, naive=True), "label": child_label}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32, help="response tokens")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--label-prompts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each child (default: torch's)")
    ap.add_argument("--only", nargs="*", default=list(CHILDREN), help="which measurements")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        result = CHILDREN[args.child](args)
        result["peak_rss_mib"] = _peak_mib()
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for name in args.only:
        cmd = [sys.executable, __file__, "--child", name, "--batch", str(args.batch), "--tokens", str(args.tokens),
               "--steps", str(args.steps), "--label-prompts", str(args.label_prompts)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CAI_NO_PROGRESS": "1"})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(line[len("RESULT "):])
        print(f"{name:>9}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in results[name].items()), flush=True)
    if "sft" in results and "ppo" in results:
        ratio = results["ppo"]["peak_rss_mib"] / results["sft"]["peak_rss_mib"]
        print(f"PPO / SFT peak RSS: {ratio:.2f}x (target: under 1.6x)")
        if "ppo-naive" in results:
            print(f"naive PPO (3 model copies) / SFT peak RSS: {results['ppo-naive']['peak_rss_mib'] / results['sft']['peak_rss_mib']:.2f}x")


if __name__ == "__main__":
    main()
