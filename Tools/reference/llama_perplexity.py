#!/usr/bin/env python3
"""Perplexity and prompt throughput computed the way llama.cpp's `llama-perplexity` does: the anchor for `ckpt eval`.

This follows `perplexity()` in llama.cpp tools/perplexity/perplexity.cpp step by step, using
llama-cpp-python's low-level ctypes API (not the high-level `Llama` class), so that only
the requested positions go through the LM head, as in llama-perplexity. That matters
for the timing:

  * the whole text is tokenized once, with add_special = llama_vocab_get_add_bos(vocab)
    and parse_special = false (common_tokenize(ctx, prompt, true)). Like `-f`, one
    trailing "\\n" of the text is dropped first;
  * n_chunk = n_tokens / ctx (the rest is ignored), or --chunks if that is smaller;
  * chunk i is tokens[i*ctx : (i+1)*ctx]; with add_bos its first token is replaced by BOS;
  * for each chunk: clear the KV cache (llama_memory_clear(mem, true)), then one
    llama_decode of all ctx tokens (n_batch = n_ubatch = ctx, one sequence), asking for
    logits only where pos >= first = ctx/2;
  * NLL is summed over positions first .. ctx-2, each predicting the token at pos+1,
    with llama.cpp's log_softmax: float max, float expf(logit - max), summed in double,
    nll = log(sum) - (logit[tok] - max). ppl = exp(sum NLL / count);
  * time = the llama_memory_clear + llama_decode (+ llama_synchronize) calls only, not
    loading or tokenizing; tokens_per_s = chunks*ctx / time, the same as llama-perplexity's
    "prompt eval time ... tokens per second" (llama_perf_context_print, n_p_eval / t_p_eval;
    in this build that counter misses the time of the first decode after
    llama_perf_context_reset, so it reads high by about n_chunk/(n_chunk-1); we time ourselves).
    A warm-up decode of [BOS, EOS] runs first, as common_init_from_params does.

Context: n_ctx = n_batch = n_ubatch = --ctx, n_seq_max 1, n_threads = n_threads_batch =
--threads, KV cache f16 (llama.cpp's default), flash attention off by default (--flash-attn).
Differences from a bare `llama-perplexity -m M -f F` to keep in mind:
  * its n_batch defaults to 2048, so with -c 512 it decodes 4 chunks per batch as 4
    sequences (n_seq = n_batch/ctx) in a 2048-cell KV cache; `-b 512` gives the one-chunk
    batches used here. The NLL is the same either way, the speed is not quite;
  * its flash attention defaults to "auto", which on a CPU-only build resolves to
    enabled ("Flash Attention enabled" in the log); pass `-fa off` to match the default
    here, or --flash-attn on here to match its default.

Text: --file (default ../shared/corpus/train.txt), from byte --offset-bytes, or with
--holdout from the first "\\n\\n" after 90% of the file (check_perplexity.py's holdout()).

--dump-logits FILE.json writes, for the first chunk, the tokens (after the BOS replacement)
and for every position p in ctx/2 .. ctx-1 the top-8 ids and logits, the logsumexp of the
row, and the next token and its logit. The last position (ctx-1) is computed by llama.cpp
but not scored; its next_id is the next token of the text. Floats rounded to 5 decimals.

--compare-high-level also runs check_perplexity.py's perplexity() (high-level API with
logits for every position) on the same chunks and prints the relative difference.

    python3 Tools/reference/llama_perplexity.py --holdout --chunks 4 [--ctx 512] [--threads 2]
        [--repeat 3] [--json] [--dump-logits out.json] [--flash-attn off|on|auto]
"""

import argparse
import ctypes
import json
import math
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
TOP_K = 8


def read_text(path: Path, holdout: bool, offset: int):
    """Bytes of the text to score, and the byte range they came from."""
    data = path.read_bytes()
    if holdout:
        offset = data.find(b"\n\n", int(len(data) * 0.9)) + 2
    text = data[offset:]
    if text.endswith(b"\n"):  # llama.cpp's `-f` drops one trailing newline
        text = text[:-1]
    return text, offset, len(data)


def llama_log_softmax(row: np.ndarray, tok: int):
    """llama.cpp's log_softmax(): returns (nll, logsumexp) for one row of float32 logits."""
    max_logit = row.max()
    shifted = row - max_logit  # float32, as `logits[i] - max_logit`
    sum_exp = float(np.exp(shifted).astype(np.float64).sum())  # expf in float, summed in double
    log_sum = math.log(sum_exp)
    nll = log_sum - float(shifted[tok])
    return nll, float(max_logit) + log_sum


class Engine:
    """A llama.cpp model and context set up like llama-perplexity with n_batch = ctx."""

    def __init__(self, model_path: str, ctx: int, threads: int, flash_attn: str, verbose: bool):
        if not verbose:
            # Keep the callback alive for as long as the library may call it.
            self._log_cb = llama_cpp.llama_log_callback(lambda level, text, user: None)
            llama_cpp.llama_log_set(self._log_cb, ctypes.c_void_p())
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), mparams)
        if not self.model:
            sys.exit(f"cannot load {model_path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        if llama_cpp.llama_vocab_get_add_eos(self.vocab):
            sys.exit("llama-perplexity refuses models with add_eos")  # GGML_ASSERT in perplexity()
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = ctx
        cparams.n_batch = ctx
        cparams.n_ubatch = ctx
        cparams.n_seq_max = 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.flash_attn_type = {"off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                                   "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                                   "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO}[flash_attn]
        cparams.type_k = llama_cpp.GGML_TYPE_F16
        cparams.type_v = llama_cpp.GGML_TYPE_F16
        cparams.embeddings = False
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            sys.exit("cannot create the llama context")
        self.n_ctx = ctx
        self.model_path = model_path
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(ctx, 0, 1)
        self._warmup()

    def _warmup(self):
        """common_init_from_params' warm-up: decode [BOS, EOS], clear, reset the perf counters."""
        eos = llama_cpp.llama_vocab_eos(self.vocab)
        toks = [t for t in (self.bos, eos) if t != llama_cpp.LLAMA_TOKEN_NULL] or [0]
        llama_cpp.llama_set_warmup(self.ctx, True)
        arr = (llama_cpp.llama_token * len(toks))(*toks)
        llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(arr, len(toks)))
        llama_cpp.llama_memory_clear(self.mem, True)
        llama_cpp.llama_synchronize(self.ctx)
        llama_cpp.llama_perf_context_reset(self.ctx)
        llama_cpp.llama_set_warmup(self.ctx, False)

    def tokenize(self, text: bytes):
        """common_tokenize(ctx, text, add_special=true, parse_special=false)."""
        cap = len(text) + 2
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, text, len(text), buf, cap, True, False)
        if n < 0:
            sys.exit(f"tokenizer needs {-n} slots, had {cap}")
        return np.ctypeslib.as_array(buf)[:n].astype(np.int32)

    def fill_batch(self, chunk):
        first = self.n_ctx // 2
        b = self.batch
        for k, tok in enumerate(chunk):
            b.token[k] = int(tok)
            b.pos[k] = k
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = 0
            b.logits[k] = 1 if k >= first else 0
        b.n_tokens = len(chunk)

    def decode(self):
        """Clear the KV cache and decode the filled batch; returns the seconds it took."""
        t0 = time.perf_counter()
        llama_cpp.llama_memory_clear(self.mem, True)
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            sys.exit("llama_decode failed")
        llama_cpp.llama_synchronize(self.ctx)
        return time.perf_counter() - t0

    def output_logits(self):
        """The logits of positions ctx/2 .. ctx-1, a (ctx - ctx/2, n_vocab) float32 copy."""
        first = self.n_ctx // 2
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, first)
        rows = self.n_ctx - first
        return np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab)).copy()

    def close(self):
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)
        llama_cpp.llama_backend_free()


def chunk_tokens(eng: Engine, tokens, i):
    ctx = eng.n_ctx
    chunk = tokens[i * ctx:(i + 1) * ctx].copy()
    if eng.add_bos:
        chunk[0] = eng.bos
    return chunk


def run(eng: Engine, tokens, n_chunk, score: bool, dump=None, progress=False):
    """One pass over n_chunk chunks. Returns (nll_sum, nll2_sum, count, decode_seconds)."""
    ctx, first = eng.n_ctx, eng.n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    seconds = 0.0
    for i in range(n_chunk):
        chunk = chunk_tokens(eng, tokens, i)
        eng.fill_batch(chunk)
        seconds += eng.decode()
        if not score:
            continue
        logits = eng.output_logits()
        for j in range(ctx - 1 - first):  # positions first .. ctx-2
            v, _ = llama_log_softmax(logits[j], int(chunk[first + j + 1]))
            nll += v
            nll2 += v * v
        count += ctx - 1 - first
        if progress:
            print(f"[{i + 1}]{math.exp(nll / count):.4f},", end="", flush=True)
        if i == 0 and dump is not None:
            write_dump(dump, eng, tokens, chunk, logits)
    if progress and score:
        print()
    return nll, nll2, count, seconds


def write_dump(path, eng: Engine, tokens, chunk, logits):
    ctx, first = eng.n_ctx, eng.n_ctx // 2
    positions = []
    chunk_nll = 0.0
    for j in range(ctx - first):
        p = first + j
        row = logits[j]
        next_id = int(chunk[p + 1]) if p + 1 < ctx else (int(tokens[ctx]) if len(tokens) > ctx else None)
        order = np.lexsort((np.arange(row.size), -row))[:TOP_K]  # by logit, ties by id
        _, lse = llama_log_softmax(row, 0)
        if p + 1 < ctx:
            chunk_nll += llama_log_softmax(row, next_id)[0]
        positions.append({
            "pos": p,
            "top_ids": [int(t) for t in order],
            "top_logits": [round(float(row[t]), 5) for t in order],
            "logsumexp": round(lse, 5),
            "next_id": next_id,
            "next_logit": None if next_id is None else round(float(row[next_id]), 5),
        })
    scored = ctx - 1 - first
    doc = {
        "model": Path(eng.model_path).name,
        "ctx": ctx,
        "n_vocab": eng.n_vocab,
        "add_bos": eng.add_bos,
        "first_scored": first,
        "last_scored": ctx - 2,
        "nll": round(chunk_nll / scored, 5),
        "ppl": round(math.exp(chunk_nll / scored), 5),
        "tokens": [int(t) for t in chunk],
        "positions": positions,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--file", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--offset-bytes", type=int, default=0, help="start the text at this byte of --file")
    ap.add_argument("--holdout", action="store_true", help="start at the first blank line after 90%% of --file")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=-1, help="at most this many chunks (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flash-attn", choices=("off", "on", "auto"), default="off")
    ap.add_argument("--repeat", type=int, default=1, help="time R passes, report the best tokens/s")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--dump-logits", metavar="FILE.json")
    ap.add_argument("--compare-high-level", action="store_true",
                    help="also run check_perplexity.py's perplexity() on the same chunks")
    ap.add_argument("--verbose", action="store_true", help="keep llama.cpp's log")
    args = ap.parse_args()
    if args.ctx < 4 or args.ctx % 2:
        sys.exit("--ctx must be even and >= 4")

    text, start, end = read_text(Path(args.file), args.holdout, args.offset_bytes)
    eng = Engine(args.model, args.ctx, args.threads, args.flash_attn, args.verbose)
    tokens = eng.tokenize(text)
    if len(tokens) < 2 * args.ctx:
        sys.exit(f"need at least {2 * args.ctx} tokens for ctx {args.ctx}, the text has {len(tokens)}")
    n_chunk_max = len(tokens) // args.ctx
    n_chunk = n_chunk_max if args.chunks < 0 else min(args.chunks, n_chunk_max)

    if not args.json:
        print(f"model: {args.model} (add_bos {eng.add_bos}, n_vocab {eng.n_vocab})")
        print(f"text: {args.file} bytes {start}..{end}{' (hold-out)' if args.holdout else ''}, {len(tokens)} tokens")
        print(f"{n_chunk} chunks of {args.ctx}, positions {args.ctx // 2}..{args.ctx - 2} scored, "
              f"threads {args.threads}, flash attention {args.flash_attn}, KV f16")

    nll, nll2, count, seconds = run(eng, tokens, n_chunk, True, args.dump_logits, progress=not args.json)
    times = [seconds]
    for _ in range(args.repeat - 1):
        times.append(run(eng, tokens, n_chunk, False)[3])
    best = min(times)
    n_decoded = n_chunk * args.ctx
    mean = nll / count
    ppl = math.exp(mean)

    if args.json:
        print(json.dumps({"ppl": ppl, "nll": mean, "tokens": count, "tokens_per_s": n_decoded / best,
                          "chunks": n_chunk, "ctx": args.ctx, "seconds": best}))
    else:
        var = nll2 / count - mean * mean
        err = math.sqrt(var / (count - 1)) * ppl if var > 0 else float("nan")
        print(f"Final estimate: PPL = {ppl:.4f} +/- {err:.5f}  (mean NLL {mean:.6f} over {count} tokens)")
        print(f"decode: {n_decoded} tokens, best of {len(times)}: {best:.3f} s = {n_decoded / best:.1f} tokens/s "
              f"(all: {', '.join(f'{n_decoded / t:.1f}' for t in times)})")
        if args.dump_logits:
            print(f"wrote {args.dump_logits}")
    eng.close()

    if args.compare_high_level:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from check_perplexity import perplexity
        hl_ppl, hl_count = perplexity(args.model, text.decode("utf-8", errors="replace"), args.ctx, n_chunk)
        rel = hl_ppl / ppl - 1
        print(f"check_perplexity.perplexity(): PPL = {hl_ppl:.6f} over {hl_count} tokens, "
              f"relative difference {rel:+.2e}", file=sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main()
