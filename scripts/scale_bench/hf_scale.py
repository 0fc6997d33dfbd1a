#!/usr/bin/env python3
"""The transformers baselines of scripts/scale_bench.sh, on the same local checkpoint and the same
prompt as aqn's runs (the question of --prompt-file rendered by the checkpoint's chat template with
the generation prompt, as aqn's trainer renders it).

    hf_scale.py generate --model DIR --prompt-file P.jsonl --dtype bfloat16 --batch 8 --new-tokens 16
        `generate` with sampling (temperature 1, full vocabulary, exactly --new-tokens per row) on
        --batch copies of the prompt, eager attention: tokens/s = batch x new tokens / seconds.
    hf_scale.py update --model DIR --prompt-file P.jsonl --responses 2 --new-tokens 16
        PEFT LoRA (r 32, alpha 16, the seven projections, as aqn's profile) on the bf16 model: the
        forward and backward of the policy loss (mean log-probability of the response tokens) on
        --responses rows of prompt + response, gradient clipping and an AdamW step, as aqn's update.

Each prints one JSON line: the median seconds of --repeats timed runs after one warm-up, and the
process's peak RSS. Threads: torch.set_num_threads(--threads). Needs torch, transformers, peft.
"""

import argparse
import json
import pathlib
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

# aqn's LoRA (core/profiles/qwen2.5-1.5b-gsm8k.toml, core/src/lora/config.rs defaults).
LORA_RANK = 32
LORA_ALPHA = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# aqn's profile: lr 1e-5, grad clip 1.0.
LR = 1e-5
GRAD_CLIP = 1.0


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: kernel selection, allocator, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def prompt_ids(tokenizer, prompt_file: pathlib.Path) -> list:
    question = json.loads(prompt_file.read_text().splitlines()[0])["question"]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def load(model_dir: pathlib.Path, dtype: torch.dtype):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")


def generate(args, tokenizer) -> dict:
    dtype = getattr(torch, args.dtype)
    model = load(args.model, dtype).eval()
    ids = prompt_ids(tokenizer, args.prompt_file)
    b, t = args.batch, args.new_tokens
    prompts = torch.tensor([ids] * b)
    mask = torch.ones_like(prompts)
    torch.manual_seed(args.seed)

    def rollout():
        with torch.no_grad():
            out = model.generate(
                input_ids=prompts,
                attention_mask=mask,
                max_new_tokens=t,
                min_new_tokens=t,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=tokenizer.pad_token_id or 0,
            )
        assert out.shape == (b, len(ids) + t), out.shape

    seconds = median_seconds(rollout, args.repeats)
    return {"seconds": seconds, "tokens_per_s": b * t / seconds, "prompt_len": len(ids)}


def update(args, tokenizer) -> dict:
    from peft import LoraConfig, get_peft_model

    model = load(args.model, torch.bfloat16)
    config = LoraConfig(
        r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config).train()
    ids = prompt_ids(tokenizer, args.prompt_file)
    p, t, n = len(ids), args.new_tokens, args.responses
    gen = torch.Generator().manual_seed(args.seed)
    responses = torch.randint(0, model.config.vocab_size, (n, t), generator=gen)
    tokens = torch.cat([torch.tensor([ids] * n), responses], dim=1)
    params = [q for q in model.parameters() if q.requires_grad]
    optim = torch.optim.AdamW(params, lr=LR)

    def step():
        logits = model(input_ids=tokens).logits
        logp = torch.log_softmax(logits[:, p - 1 : p + t - 1].float(), dim=-1)
        picked = logp.gather(-1, tokens[:, p:].unsqueeze(-1))
        (-picked.mean()).backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optim.step()
        optim.zero_grad(set_to_none=True)

    seconds = median_seconds(step, args.repeats)
    return {"seconds": seconds, "tokens": n * (p + t), "prompt_len": p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["generate", "update"])
    parser.add_argument("--model", required=True, type=pathlib.Path, help="the checkpoint folder")
    parser.add_argument("--prompt-file", required=True, type=pathlib.Path, help="jsonl, first row's question")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--responses", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    result = generate(args, tokenizer) if args.mode == "generate" else update(args, tokenizer)
    result.update(
        mode=args.mode,
        dtype=args.dtype if args.mode == "generate" else "bfloat16",
        batch=args.batch if args.mode == "generate" else args.responses,
        new_tokens=args.new_tokens,
        threads=torch.get_num_threads(),
        repeats=args.repeats,
        peak_rss_gb=peak_rss_gb(),
        torch=torch.__version__,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
