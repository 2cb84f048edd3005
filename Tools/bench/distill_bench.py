#!/usr/bin/env python3
"""Training speed of `ckpt distill` against PyTorch on CPU, same model and shapes.

Both train the same student (SmolLM2 with its MLPs pruned to 1024 by `ckpt prune`; the
PyTorch side loads its HF f32 form made by `ckpt convert`) on the same sequences of 512
tokens from a logit cache, batch 1, 2 threads, f32 weights and AdamW:

- ckpt: `ckpt distill` (forward KL against the cache, checkpoints off);
- PyTorch: transformers' LlamaForCausalLM in fp32 eager mode, torch.set_num_threads(2),
  AdamW (fused off), loss = cross-entropy on the tokens plus forward KL to the cache's
  top-k on the same positions (so both compute a full-vocabulary softmax per position).

Prints training tokens/s and peak RSS (GNU time, from outside) of each, and the ratio;
the target is ≥ 1.5× PyTorch. ckpt runs with int8 products (its default) and with f32.
The first step of each is excluded (warm-up).

    python3 Tools/bench/distill_bench.py [--steps 6] [--keep DIR]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/bench"))
from benchlib import timed  # noqa: E402
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"

TORCH_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import torch, transformers
    torch.set_num_threads(2)
    hf, dump, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = transformers.AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32, attn_implementation="eager")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=False, foreach=False)
    recs = [json.loads(l) for l in open(dump)]
    seqs = {}
    for r in recs:
        seqs.setdefault(r["seq"], []).append(r)
    seqs = [v for _, v in sorted(seqs.items())]
    ids_k = [torch.tensor([r["ids"] for r in rs]) for rs in seqs]
    q_k = [torch.tensor([r["logprobs"] for r in rs]).exp() for rs in seqs]
    times = []
    for step in range(steps):
        rs = seqs[step % len(seqs)]
        ids = torch.tensor([[r["token"] for r in rs]])
        t0 = time.monotonic()
        logits = model(input_ids=ids).logits[0]
        logp = torch.log_softmax(logits, -1)
        ce = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:])
        # Forward KL to the cache's top-k as one dense target (one scatter), up to its constant entropy.
        target = torch.zeros_like(logp)
        target.scatter_(1, ids_k[step % len(seqs)], q_k[step % len(seqs)])
        kl = -(target * logp).sum()
        loss = ce + kl / len(rs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.monotonic() - t0)
    tok = len(seqs[0])
    print(json.dumps({"tokens_per_s": tok * (steps - 1) / sum(times[1:]), "step_seconds": times}))
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--keep")
    a = ap.parse_args()
    tmpctx = tempfile.TemporaryDirectory(prefix="ckpt-distill-bench-")
    tmp = Path(a.keep or tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    ck = a.ckpt
    student = tmp / "student.gguf"
    if not student.exists():
        subprocess.run([ck, "importance", "--model", MODEL, "--calib", a.corpus, "--samples", "8", "--seq", "512", "-o", tmp / "s.imp"],
                       check=True, capture_output=True)
        subprocess.run([ck, "prune", "--model", MODEL, "--importance", tmp / "s.imp", "--ffn", "1024", "-o", student], check=True, capture_output=True)
    cache = tmp / "teacher.cache"
    if not cache.exists():
        subprocess.run([ck, "logits", "build", "--model", MODEL, "--file", a.corpus, "--sequences", str(a.steps), "--encoding", "topk",
                        "--k", "32", "-o", cache], check=True, capture_output=True)
    hf = tmp / "student-hf"
    if not hf.exists():
        subprocess.run([ck, "convert", student, hf, "--dtype", "f32"], check=True, capture_output=True)
    dump = tmp / "teacher.jsonl"
    with open(dump, "w") as f:
        subprocess.run([ck, "logits", "dump", cache, "--jsonl"], check=True, stdout=f)

    # ckpt, int8 and f32 products: steps 2…N from the per-step times of --log (step 1 warms up).
    ours = {}
    for matmul in ("int8", "f32"):
        log = tmp / f"log-{matmul}.csv"
        p, rss = timed([ck, "distill", "--student", student, "--cache", cache, "--steps", a.steps, "--batch", "1", "--threads", "2",
                        "--matmul", matmul, "--json", "--force", "--log", log, "-o", tmp / "out.gguf"])
        lines = log.read_text().splitlines()
        recs = [dict(zip(lines[0].split(","), l.split(","))) for l in lines[2:]]
        ours[matmul] = (sum(int(r["tokens"]) for r in recs) / sum(float(r["seconds"]) for r in recs), rss)
    script = tmp / "torch_train.py"
    script.write_text(TORCH_SCRIPT)
    p, torch_rss = timed([sys.executable, script, hf, dump, a.steps])
    theirs = json.loads(p.stdout.strip().splitlines()[-1])["tokens_per_s"]
    print(f"SmolLM2 pruned to FFN 1024 ({a.steps} steps of 1 × 512 tokens, 2 threads, f32 weights, AdamW; first step excluded)")
    print(f"{'trainer':<36}{'tokens/s':>10}{'peak RSS':>12}")
    for matmul, (tps, rss) in ours.items():
        print(f"{'ckpt distill --matmul ' + matmul:<36}{tps:>10.1f}{rss:>9.0f} MiB")
    print(f"{'PyTorch ' + __import__('torch').__version__ + ' fp32 eager (anchor)':<36}{theirs:>10.1f}{torch_rss:>9.0f} MiB")
    print(f"ratio int8 {ours['int8'][0] / theirs:.2f}×, f32 {ours['f32'][0] / theirs:.2f}× (target ≥ 1.5×)")

if __name__ == "__main__":
    main()
