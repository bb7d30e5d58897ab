"""The dtype study: float32 against bfloat16 on this CPU, for generation and for LoRA training, side by side.

    .venv/bin/python bench/bench_dtype.py [--prompts 48] [--tokens 48] [--steps 4]

Generation: the same prompts (red-team and benign look-alikes of the packaged data, answered as `cai eval models`
answers them: greedy, batched, the policy prompt of `harmless-helpful.const` [base]) with float32 weights and
with bfloat16 weights; prints tokens/s of each, how many answers are token-for-token identical, and how often the
marker outcomes (harmful compliance, refusal, degeneration: the metrics of the evaluation) agree.

Training: one LoRA SFT step (r 16 on every linear layer, batch 8 of prompt + a refusal, loss on every token; a
plain loop, not trl's trainer) in float32, under CPU bfloat16 autocast over float32 weights, and with bfloat16 base
weights and float32 LoRA weights under autocast (what the trainers do with ``bf16=True``); prints seconds per step
and the loss of each step.

The load average is printed: on a shared machine the times are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
CONST = os.path.join(HERE, "..", "constitutions", "harmless-helpful.const")


def _items(n: int):
    from cai_dsl.run.data import sample_prompts

    return sample_prompts(n, seed=7, helpful_fraction=0.0, lookalike_fraction=0.5)


def generation(args: argparse.Namespace) -> None:
    import torch

    from cai_dsl.run.backends.base import GenerationParams
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.policy.detectors import DetectorSet
    from cai_dsl.run.policy.metrics import outcome
    from cai_dsl.run.policy.score import PolicyScorer
    from cai_dsl.run.prepare import prepare_job
    from cai_dsl.run.prompts import policy_prompt
    from cai_dsl.run.sl_loop import last_user_text

    job = prepare_job(CONST, "base", "smollm2-cpu")
    program = job.program
    scorer = PolicyScorer(job.constitution, "base")
    markers = DetectorSet.from_program(program)
    items = _items(args.prompts)
    prompts = [policy_prompt(program, i.prompt) for i in items]
    params = GenerationParams(max_new_tokens=args.tokens, temperature=0.0)
    texts, outcomes = {}, {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        backend = TransformersBackend(load_model(program.run.models.policy, dtype=dtype), batch_size=args.batch)
        backend.generate(prompts[:2], GenerationParams(max_new_tokens=2, temperature=0.0))  # warm-up
        t0 = time.perf_counter()
        gens = backend.generate(prompts, params)
        wall = time.perf_counter() - t0
        tokens = sum(g.completion_tokens for g in gens)
        texts[name] = [g.text for g in gens]
        rows = []
        for item, g in zip(items, gens):
            ask = last_user_text(item.prompt)
            found = markers.detect(g.text, ask)
            score = scorer.score(g.text, item.scenario, found, prompt=ask, finish_reason=g.finish_reason)
            rows.append(outcome(score, found))
        outcomes[name] = rows
        print(f"generate {name:<9} {len(prompts)} prompts, batch {args.batch}: {tokens} tokens in {wall:6.1f} s = "
              f"{tokens / wall:6.1f} tok/s")
    same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    print(f"greedy answers identical: {same}/{len(prompts)}")
    for metric in ("harmful_compliance", "refusal", "over_refusal", "degenerate"):
        pairs = [(getattr(a, metric), getattr(b, metric)) for a, b in zip(outcomes["float32"], outcomes["bfloat16"])]
        if pairs:
            agree = sum(a == b for a, b in pairs)
            print(f"  {metric:<20} float32 {sum(a for a, _ in pairs):>3}/{len(pairs)}  bfloat16 {sum(b for _, b in pairs):>3}/"
                  f"{len(pairs)}  same outcome {agree}/{len(pairs)}")


def training(args: argparse.Namespace) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.loading import load_model
    from cai_dsl.run.sl_loop import last_user_text

    loaded = load_model("embedded:smollm2-135m")
    tok = loaded.tokenizer
    items = _items(8)
    texts = [tok.apply_chat_template([{"role": "user", "content": last_user_text(i.prompt)},
                                      {"role": "assistant", "content": "I can't help with that, because it could hurt "
                                       "someone. If you are worried about safety, a professional can help you."}],
                                     tokenize=False) for i in items]
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    print(f"train batch: {batch['input_ids'].shape[0]} x {batch['input_ids'].shape[1]} tokens")
    base = loaded.model
    variants = (("float32", False, torch.float32), ("bf16 autocast", True, torch.float32),
                ("bf16 weights", True, torch.bfloat16))
    for name, autocast, weights in variants:
        base = base.to(torch.float32)
        base.load_state_dict(state)
        base = base.to(weights)
        torch.manual_seed(0)
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(base, lora)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        losses, times = [], []
        for step in range(args.steps + 1):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(**batch, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step:  # the first step warms up
                times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
        print(f"train {name:<14} {sum(times) / len(times):6.2f} s/step; losses " + " ".join(f"{x:.3f}" for x in losses))
        base = model.unload()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", choices=("generation", "training"), default=None)
    args = ap.parse_args()
    import torch

    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.only in (None, "training"):
        training(args)
    if args.only in (None, "generation"):
        generation(args)


if __name__ == "__main__":
    main()
