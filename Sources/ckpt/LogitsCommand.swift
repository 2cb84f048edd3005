import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import LogitCache
import Training
import Models
import TensorMath

/// `ckpt logits`: build, inspect, verify, merge and dump teacher-logit caches.
enum LogitsCommand {
    static let spec = CommandSpec(
        name: "logits",
        summary: "Build, inspect, verify, merge or dump a compressed teacher-logit cache.",
        usage: """
        logits build --model <teacher> --file <text> [--seq 512] [--encoding sample|topk] [--k 32] [--draws 64] [--temperature 1] [--seed 0] [--codec zstd|lz4] [--level N] [--shard i/N] -o <cache>
               ckpt logits inspect <cache> [--json]
               ckpt logits verify <cache> [--teacher <model> [--student <model>] --positions N]
               ckpt logits merge <cache>... -o <cache>
               ckpt logits dump <cache> [--range a:b] [--jsonl]
        """,
        discussion: """
        build runs the teacher once over the text, one record per token fed to it (BOS
        included): the input token and the teacher's distribution over the next token,
        as topk (the k most probable ids, log-probabilities in steps of 1/8 nat, and the
        log of the tail mass) or sample (--draws ids drawn from the distribution at
        --temperature, kept as ids with counts: an unbiased estimate of the forward-KL
        and cross-entropy losses and their gradients). Records are grouped into chunks of
        whole sequences, each compressed and checksummed (CRC-32C) and fsynced; an index at
        the end gives random access. Work in progress is <cache>.partial: run the same
        command again after a crash and it keeps every complete chunk and goes on.
        --shard i/N builds whole chunks i·C/N … of the C chunks; merge joins the shards
        into the cache an unsharded build would have written.
        verify checks every checksum and the index; with --teacher it recomputes
        --positions random positions and reports the cache's error against the full
        distribution, and with --student also the error of the distillation loss and
        its gradient for that student.
        """,
        options: [
            .init("--model", value: "model", help: "build: the teacher (GGUF, or HF safetensors directory)."),
            .init("--file", value: "file", help: "build: UTF-8 text to run the teacher on."),
            .init("--tokenizer", value: "path", help: "build: a GGUF or tokenizer.json directory to tokenize with, for models that ship none."),
            .init("--seq", value: "n", help: "build: tokens per sequence, BOS included (default 512)."),
            .init("--encoding", value: "kind", help: "build: sample (default) or topk."),
            .init("--k", value: "n", help: "build: ids kept per position for topk (default 32)."),
            .init("--draws", value: "n", help: "build: draws per position for sample (default 64)."),
            .init("--temperature", value: "t", help: "build: softmax temperature of the stored distribution (default 1)."),
            .init("--seed", value: "n", help: "build: seed of the draws (default 0)."),
            .init("--codec", value: "name", help: "build: zstd (default) or lz4."),
            .init("--level", value: "n", help: "build: zstd level 1-22 (default 3) or lz4hc level 1-12 (default 0: fast lz4)."),
            .init("--chunk-sequences", value: "n", help: "build: sequences per chunk (default: ~32k tokens' worth)."),
            .init("--sequences", value: "n", help: "build: stop after the first n sequences of the text."),
            .init("--shard", value: "i/N", help: "build: only shard i of N (whole chunks; merge the shards afterwards)."),
            .init("--batch", value: "n", help: "build: sequences per pass through the layers (default: 2048 tokens' worth)."),
            .init("--threads", value: "n", help: "Threads (default: all CPUs)."),
            .init("--max-resident", value: "size", help: "Stream the teacher's layers when it is larger than this (e.g. 2G; default: half the memory of the machine or its cgroup)."),
            .init("--f32-activations", help: "Keep activations f32 instead of rounding them as llama.cpp does."),
            .init("--teacher", value: "model", help: "verify: recompute positions with this teacher."),
            .init("--student", value: "model", help: "verify: also measure the loss and gradient error for this student."),
            .init("--positions", value: "n", help: "verify: random positions to recompute (default 64)."),
            .init("--range", value: "a:b", help: "dump: sequences a to b-1 (default: all)."),
            .init("--jsonl", help: "dump: JSON Lines (one position per line) instead of one JSON array."),
            .init("--json", help: "inspect, verify, build: print the result as JSON."),
            .init("-o", value: "cache", help: "Output cache."),
            .init("--output", value: "cache", help: "Same as -o."),
        ],
        positionals: 0...4096
    )

    static func run(_ args: ParsedArguments) throws {
        let rest = Array(args.positionals.dropFirst())
        switch args.positionals.first {
        case "build": try build(args)
        case "inspect":
            guard rest.count == 1 else { throw UsageError(message: "logits inspect takes one cache", command: "logits") }
            try inspect(rest[0], json: args.flag("--json"))
        case "verify":
            guard rest.count == 1 else { throw UsageError(message: "logits verify takes one cache", command: "logits") }
            try verify(rest[0], args)
        case "merge":
            guard let out = args.output else { throw UsageError(message: "logits merge needs -o <cache>", command: "logits") }
            guard !rest.isEmpty else { throw UsageError(message: "logits merge needs input caches", command: "logits") }
            let h = try LogitCacheTools.merge(rest, output: out)
            Console.err("merged \(rest.count) caches: sequences \(h.sequences.lowerBound)..<\(h.sequences.upperBound) of \(h.totalSequences) → \(out)\n")
        case "dump":
            guard rest.count == 1 else { throw UsageError(message: "logits dump takes one cache", command: "logits") }
            try dump(rest[0], args)
        case nil: throw UsageError(message: "logits needs an action: build, inspect, verify, merge or dump", command: "logits")
        case let other?: throw UsageError(message: "unknown logits action '\(other)' (build, inspect, verify, merge, dump)", command: "logits")
        }
    }

    static func build(_ args: ParsedArguments) throws {
        guard let modelPath = args.value("--model") else { throw UsageError(message: "logits build needs --model", command: "logits") }
        guard let file = args.value("--file") else { throw UsageError(message: "logits build needs --file", command: "logits") }
        guard let out = args.output else { throw UsageError(message: "logits build needs -o <cache>", command: "logits") }
        let seq = try args.int("--seq", default: 512, min: 2)
        let encoding: LogitEncoding
        switch args.value("--encoding") ?? "sample" {
        case "topk":
            encoding = .topK(k: try args.int("--k", default: 32, min: 1))
        case "sample":
            let draws = try args.int("--draws", default: 64, min: 1)
            guard draws <= 65535 else { throw UsageError(message: "--draws must be at most 65535", command: "logits") }
            guard let seed = UInt64(args.value("--seed") ?? "0") else { throw UsageError(message: "--seed must be a non-negative integer", command: "logits") }
            encoding = .sample(draws: draws, seed: seed)
        case let other: throw UsageError(message: "--encoding must be sample or topk, not '\(other)'", command: "logits")
        }
        let temperature = try args.value("--temperature").map { t -> Double in
            guard let v = Double(t), v > 0, v.isFinite else { throw UsageError(message: "--temperature must be a positive number", command: "logits") }
            return v
        } ?? 1
        guard let codec = CompressionCodec(rawValue: args.value("--codec") ?? "zstd") else {
            throw UsageError(message: "--codec must be zstd or lz4", command: "logits")
        }
        let level = try args.int("--level", default: codec == .zstd ? 3 : 0, min: 0)
        if codec == .zstd && (level < 1 || level > 22) { throw UsageError(message: "--level for zstd is 1-22", command: "logits") }
        if codec == .lz4 && level > 12 { throw UsageError(message: "--level for lz4 is 0 (fast) or 1-12 (lz4hc)", command: "logits") }
        let threads = try args.threads()
        ThreadPool.setThreads(threads)
        _ = try args.size("--max-resident")  // a bad size is refused before anything is opened

        let model = try DecoderModel(path: modelPath)
        let tokenizer = try Tokenizers.forModel(path: args.value("--tokenizer") ?? modelPath)
        let bytes = try FileSystem.readFile(file, limit: 1 << 34)
        if bytes.isEmpty { throw CheckpointError.malformed(path: file, reason: "the file is empty; there is nothing to run the teacher on") }
        let tokens = tokenizer.encode(bytes: bytes, special: false)
        if tokens.isEmpty { throw CheckpointError.malformed(path: file, reason: "the text makes no tokens") }
        var digest = FNV1a64()
        digest.add(bytes)
        let bos: Int32? = tokenizer.addsBOS ? tokenizer.files.bosID.map { Int32($0) } : nil
        if bos != nil && seq < 2 { throw UsageError(message: "--seq must leave room for BOS and one token", command: "logits") }
        let text = TeacherText(tokens: tokens, length: seq, bos: bos, identity: digest.hex)

        var settings = TeacherPass.Settings(encoding: encoding, sequencesPerChunk: try args.int("--chunk-sequences", default: max(1, 32768 / seq), min: 1),
                                            batch: try args.int("--batch", default: max(1, 2048 / seq), min: 1))
        settings.temperature = temperature
        settings.codec = codec
        settings.level = level
        settings.maxSequences = try args.optionalInt("--sequences", min: 1)
        if let s = args.value("--shard") {
            let parts = s.split(separator: "/")
            guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n > 0, i >= 0, i < n else {
                throw UsageError(message: "--shard must be i/N with 0 ≤ i < N, not '\(s)'", command: "logits")
            }
            settings.shard = (i, n)
        }
        let stream = try args.layerStream(model)

        let total = TeacherPass.header(model: model, tokenizer: tokenizer, text: text, settings: settings).sequences.count
        let bar = ProgressBar(label: "logits", total: total, totalBytes: 0)
        let start = monotonicSeconds()
        var startDone = -1
        let report = try TeacherPass.build(stream: stream, tokenizer: tokenizer, text: text, settings: settings, output: out) {
            done, all, records, written in
            if startDone < 0 {
                startDone = done
                if done > 0 { Console.err("resuming \(out).partial after \(done) of \(all) sequences\n") }
            }
            let elapsed = monotonicSeconds() - start
            let rate = elapsed > 0 ? Double(records) / elapsed : 0
            let perToken = records > 0 ? Double(written) / Double(records) : 0
            bar.update(done: done, bytesDone: 0, force: done == all, detail: "\(Int(rate)) tok/s \(formatFixed(perToken, digits: 1)) B/tok")
        }
        bar.finish()
        if report.alreadyComplete {
            Console.err("\(out) is already complete (\(report.sequences) sequences); nothing to do\n")
        }
        let perToken = report.records > 0 ? Double(report.fileBytes) / Double(report.records) : 0
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.int(report.sequences, key: "sequences")
            w.int(report.records, key: "tokens")
            w.int(report.resumedAfter, key: "resumed_after_sequences")
            w.int(report.fileBytes, key: "file_bytes")
            w.double(perToken, key: "bytes_per_token")
            w.double(report.forwardSeconds, key: "forward_seconds")
            w.double(report.encodeSeconds, key: "encode_seconds")
            w.double(report.totalSeconds, key: "seconds")
            w.double(report.totalSeconds > 0 ? Double(report.records) / report.totalSeconds : 0, key: "tokens_per_s")
            if let peak = peakResidentBytes() { w.int(peak, key: "peak_rss_bytes") }
            w.endObject()
            Console.out(w.text + "\n")
        } else if !report.alreadyComplete {
            Console.out("\(out): \(formatCount(report.records)) tokens in \(report.sequences) sequences, \(formatBytes(report.fileBytes)) (\(formatFixed(perToken, digits: 1)) bytes/token), \(formatFixed(Double(report.records) / max(report.totalSeconds, 1e-9), digits: 1)) tokens/s\n")
        }
    }

    static func inspect(_ path: String, json: Bool) throws {
        let r = try LogitCacheReader(path: path)
        let h = r.header
        let raw = try (0..<r.chunks.count).reduce(0) { $0 + (try r.rawSize(ofChunk: $1)) }
        let compressed = r.chunks.reduce(0) { $0 + $1.compressedSize }
        let tokens = r.records
        let perToken = tokens > 0 ? Double(r.fileSize) / Double(tokens) : 0
        let encodingText: String
        switch h.encoding {
        case let .topK(k, step, tail): encodingText = "topk k=\(k) (log-prob step \(step) nat, tail step \(tail) nat)"
        case let .sample(draws, seed): encodingText = "sample draws=\(draws) seed=\(seed)"
        }
        if json {
            var w = JSONWriter()
            w.beginObject()
            w.raw(h.json(pretty: false), key: "header")
            w.int(r.sequenceCount, key: "sequences")
            w.int(tokens, key: "tokens")
            w.int(r.chunks.count, key: "chunks")
            w.int(r.fileSize, key: "file_bytes")
            w.int(raw, key: "raw_bytes")
            w.int(compressed, key: "compressed_bytes")
            w.double(perToken, key: "bytes_per_token")
            w.double(compressed > 0 ? Double(raw) / Double(compressed) : 0, key: "compression_ratio")
            w.endObject()
            Console.out(w.text + "\n")
            return
        }
        var s = "\(path)\n"
        s += "  teacher      \(h.architecture) \(h.teacherIdentity)\n"
        s += "  tokenizer    \(h.tokenizerIdentity), vocab \(h.vocab)\(h.bos.map { ", BOS \($0)" } ?? "")\n"
        s += "  encoding     \(encodingText), temperature \(h.temperature)\n"
        s += "  codec        \(h.codec.rawValue) level \(h.level), \(r.chunks.count) chunks of up to \(h.sequencesPerChunk) sequences\n"
        s += "  text         \(h.textIdentity), \(formatCount(h.textTokens)) tokens, \(h.totalSequences) sequences of \(h.sequenceLength)\n"
        s += "  holds        sequences \(h.sequences.lowerBound)..<\(h.sequences.upperBound)\(h.shard.map { " (shard \($0.index)/\($0.count))" } ?? ""), \(formatCount(tokens)) tokens\n"
        s += "  size         \(formatBytes(r.fileSize)), \(formatFixed(perToken, digits: 2)) bytes/token, compression \(formatFixed(compressed > 0 ? Double(raw) / Double(compressed) : 0, digits: 2))×\n"
        Console.out(s)
    }

    static func verify(_ path: String, _ args: ParsedArguments) throws {
        let integrity = try LogitCacheTools.checkIntegrity(path: path)
        var fidelity: CacheFidelity.Report?
        if integrity.problem == nil, let teacherPath = args.value("--teacher") {
            ThreadPool.setThreads(try args.threads())
            let reader = try LogitCacheReader(path: path)
            let teacher = try DecoderModel(path: teacherPath)
            let tstream = LayerStream(model: teacher)
            tstream.llamaCppRounding = !args.flag("--f32-activations")
            var sstream: LayerStream?
            if let s = args.value("--student") {
                let st = LayerStream(model: try DecoderModel(path: s))
                st.llamaCppRounding = tstream.llamaCppRounding
                sstream = st
            }
            fidelity = try CacheFidelity.measure(reader: reader, teacher: tstream, student: sstream,
                                                 positions: try args.int("--positions", default: 64, min: 1), seed: 0)
        } else if args.value("--student") != nil && args.value("--teacher") == nil {
            throw UsageError(message: "--student needs --teacher (the full distribution to compare against)", command: "logits")
        }
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.raw(integrity.problem == nil ? "true" : "false", key: "ok")
            if let p = integrity.problem { w.string(p, key: "problem") }
            w.int(integrity.chunks, key: "chunks")
            w.int(integrity.sequences, key: "sequences")
            w.int(integrity.records, key: "tokens")
            w.int(integrity.entries, key: "entries")
            w.int(integrity.fileBytes, key: "file_bytes")
            if let f = fidelity { f.write(&w, key: "teacher") }
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            if let p = integrity.problem {
                Console.out("\(path): FAILED: \(p)\n")
            } else {
                Console.out("\(path): OK: \(integrity.chunks) chunks, \(integrity.sequences) sequences, \(formatCount(integrity.records)) tokens; every checksum and the index agree\n")
            }
            if let f = fidelity { Console.out(f.text) }
        }
        if let p = integrity.problem { throw LogitCacheError.malformed(path: path, reason: "verification failed: " + p) }
    }

    static func dump(_ path: String, _ args: ParsedArguments) throws {
        let r = try LogitCacheReader(path: path)
        var range = r.header.sequences
        if let text = args.value("--range") {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = parts[0].isEmpty ? range.lowerBound : Int(parts[0]),
                  let b = parts[1].isEmpty ? range.upperBound : Int(parts[1]), a <= b else {
                throw UsageError(message: "--range must be a:b with a ≤ b, not '\(text)'", command: "logits")
            }
            guard a >= range.lowerBound, b <= range.upperBound else {
                throw UsageError(message: "--range \(a):\(b) is outside the cache's sequences \(range.lowerBound):\(range.upperBound)", command: "logits")
            }
            range = a..<b
        }
        let lines = args.flag("--jsonl")
        if !lines { Console.out("[") }
        var first = true
        var c = r.chunkIndex(forSequence: range.lowerBound) ?? r.chunks.count
        while c < r.chunks.count, r.chunks[c].firstSequence < range.upperBound {
            let chunk = try r.chunk(c)
            let starts = chunk.sequenceStarts
            var out = ""
            for (si, n) in chunk.sequenceLengths.enumerated() {
                let seq = chunk.firstSequence + si
                guard range.contains(seq) else { continue }
                for p in 0..<n {
                    let rec = starts[si] + p
                    let e = chunk.entries(rec)
                    var order = Array(e)
                    if chunk.logprobs.isEmpty {
                        order.sort { chunk.counts[$0] != chunk.counts[$1] ? chunk.counts[$0] > chunk.counts[$1] : chunk.ids[$0] < chunk.ids[$1] }
                    } else {
                        order.sort { chunk.logprobs[$0] != chunk.logprobs[$1] ? chunk.logprobs[$0] > chunk.logprobs[$1] : chunk.ids[$0] < chunk.ids[$1] }
                    }
                    var line = "{\"seq\": \(seq), \"pos\": \(p), \"token\": \(chunk.tokens[rec]), \"ids\": ["
                    line += order.map { String(chunk.ids[$0]) }.joined(separator: ", ")
                    if chunk.logprobs.isEmpty {
                        line += "], \"counts\": [" + order.map { String(chunk.counts[$0]) }.joined(separator: ", ") + "]}"
                    } else {
                        line += "], \"logprobs\": [" + order.map { jsonFloat(chunk.logprobs[$0]) }.joined(separator: ", ") + "], \"tail_logprob\": "
                        line += jsonFloat(chunk.tailLogprobs[rec]) + "}"
                    }
                    if lines { out += line + "\n" } else { out += (first ? "\n" : ",\n") + line }
                    first = false
                }
            }
            Console.out(out)
            c += 1
        }
        if !lines { Console.out(first ? "]\n" : "\n]\n") }
    }

    /// JSON has no infinities: −inf (no tail) is null.
    static func jsonFloat(_ x: Float) -> String {
        x.isFinite ? "\(Double(x))" : "null"
    }
}
