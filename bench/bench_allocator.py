"""glibc malloc at its defaults against `keep_freed_memory` (what `cai` applies), side by side in one run.

    .venv/bin/python bench/bench_allocator.py [--steps 4] [--prompts 32] [--tokens 48] [--run-dir runs/default]

Each variant runs in a fresh child process (the setting is process-wide): LoRA training steps (trl's SFT on a
copy of a finished run's SL data with ``--run-dir``, the trainer `cai run` uses; otherwise a plain LoRA loop, r 16
on every linear layer, batch 8, in the target's dtype) and greedy batched generation of packaged prompts. Prints
for each: wall seconds, kernel (system) seconds, minor page faults, peak RSS, and whether the losses and the
generated texts are identical across the two (the allocator must not change a single number).

The load average is printed: on a shared machine the times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
CONST = os.path.join(HERE, "..", "constitutions", "harmless-helpful.const")


def _usage() -> dict:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"sys": ru.ru_stime, "faults": ru.ru_minflt, "rss_mb": ru.ru_maxrss / 1024}


def _train_plain(steps: int) -> list[float]:
    import torch
    from peft import LoraConfig, get_peft_model

    from cai_dsl.run.context import resolve_dtype
    from cai_dsl.run.data import sample_prompts
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.sl_loop import last_user_text

    dtype = resolve_dtype("auto", "cpu")
    loaded = load_model("embedded:smollm2-135m", dtype=getattr(torch, dtype))
    tok = loaded.tokenizer
    items = sample_prompts(8, seed=7, helpful_fraction=0.0, lookalike_fraction=0.5)
    texts = [tok.apply_chat_template([{"role": "user", "content": last_user_text(i.prompt)},
                                      {"role": "assistant", "content": "I can't help with that, because it could hurt "
                                       "someone. If you are worried about safety, a professional can help you."}],
                                     tokenize=False) for i in items]
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(loaded.model, lora, autocast_adapter_dtype=True)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(round(float(loss.detach()), 6))
    return losses


def _train_run_dir(run_dir: str, steps: int) -> list[float]:
    import shutil
    import tempfile
    from pathlib import Path

    from cai_dsl.run.train.sft import SFTOptions, train_sft

    dst = Path(tempfile.mkdtemp(prefix="bench-allocator-"))
    for name in ("program.json", "sl-data.jsonl", "sources.json", "sl-data.jsonl.run.json"):
        shutil.copy(Path(run_dir) / name, dst / name)
    try:
        result = train_sft(dst, options=SFTOptions(max_steps=steps, helpful_repeats=3), progress=False)
    finally:
        shutil.rmtree(dst, ignore_errors=True)
    return [round(result.loss, 6)]


def _generate(n: int, tokens: int) -> list[str]:
    from cai_dsl.run.backends.base import GenerationParams
    from cai_dsl.run.backends.transformers_backend import TransformersBackend
    from cai_dsl.run.data import sample_prompts
    from cai_dsl.run.loading import load_model
    from cai_dsl.run.prepare import prepare_job
    from cai_dsl.run.prompts import policy_prompt

    program = prepare_job(CONST, "base", "smollm2-cpu").program
    import torch

    from cai_dsl.run.context import resolve_dtype

    dtype = getattr(torch, resolve_dtype(program.run.dtype, "cpu"))
    items = sample_prompts(n, seed=7, helpful_fraction=0.0, lookalike_fraction=0.5)
    backend = TransformersBackend(load_model(program.run.models.policy, dtype=dtype), batch_size=8)
    gens = backend.generate([policy_prompt(program, i.prompt) for i in items],
                            GenerationParams(max_new_tokens=tokens, temperature=0.0))
    return [g.text for g in gens]


def child(args: argparse.Namespace) -> None:
    import time

    from cai_dsl.core.memory import keep_freed_memory

    applied = keep_freed_memory()
    out: dict = {"applied": applied}
    u0, t0 = _usage(), time.perf_counter()
    if args.run_dir:
        out["losses"] = _train_run_dir(args.run_dir, args.steps)
    else:
        out["losses"] = _train_plain(args.steps)
    u1, t1 = _usage(), time.perf_counter()
    out["texts"] = _generate(args.prompts, args.tokens)
    u2, t2 = _usage(), time.perf_counter()
    out["train"] = {"wall": t1 - t0, "sys": u1["sys"] - u0["sys"], "faults": u1["faults"] - u0["faults"]}
    out["generate"] = {"wall": t2 - t1, "sys": u2["sys"] - u1["sys"], "faults": u2["faults"] - u1["faults"]}
    out["rss_mb"] = u2["rss_mb"]
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--run-dir", default=None, help="a finished `cai run` output dir: train with its SL data")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs; training: "
          f"{'trl SFT on ' + args.run_dir if args.run_dir else 'plain LoRA loop'}, {args.steps} steps; generation: "
          f"{args.prompts} prompts x {args.tokens} tokens, batch 8")
    results = {}
    for name, opt_out in (("glibc defaults", "1"), ("keep_freed_memory", "0")):
        env = dict(os.environ, CAI_MALLOC_DEFAULT=opt_out)
        done = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], env=env, capture_output=True,
                              text=True)
        if done.returncode:
            sys.exit(f"{name}: child failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'':<18} {'train s':>8} {'sys s':>7} {'faults':>10}   {'generate s':>10} {'sys s':>7} {'faults':>10}   "
          f"{'peak RSS MB':>11}")
    for name, r in results.items():
        tr, ge = r["train"], r["generate"]
        print(f"{name:<18} {tr['wall']:8.1f} {tr['sys']:7.1f} {tr['faults']:10d}   {ge['wall']:10.1f} {ge['sys']:7.1f} "
              f"{ge['faults']:10d}   {r['rss_mb']:11.0f}")
    a, b = results["glibc defaults"], results["keep_freed_memory"]
    print(f"speed-up: training {a['train']['wall'] / b['train']['wall']:.2f}x, generation "
          f"{a['generate']['wall'] / b['generate']['wall']:.2f}x; peak RSS {b['rss_mb'] / a['rss_mb']:.2f}x")
    print(f"losses identical: {a['losses'] == b['losses']} ({a['losses']}); generated texts identical: "
          f"{sum(x == y for x, y in zip(a['texts'], b['texts']))}/{len(a['texts'])}")


if __name__ == "__main__":
    main()
