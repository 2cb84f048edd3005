import Basics
import CheckpointIO
import Conversion

/// `ckpt convert`: GGUF ⇄ HF safetensors, dtype changes, resharding.
enum ConvertCommand {
    static let spec = CommandSpec(
        name: "convert",
        summary: "Convert a checkpoint between GGUF and HF safetensors, change its dtype or reshard it.",
        usage: "convert <input> <output> [--to safetensors|gguf] [--dtype <type>] [--shard-size <size>] [--force] [--json]\n       ckpt convert <checkpoint> --in-place --dtype <type> [--json]",
        discussion: """
        <output> is a directory for safetensors (model.safetensors, or shards plus
        model.safetensors.index.json, with config.json), or a .gguf file. The output is
        written beside its destination and renamed into place when complete.
        Tensor names, llama.cpp's Q/K row order (llama, mistral) and gemma's norm offset
        are translated for llama, mistral, qwen2, qwen3, gemma2 and gemma3.
        --dtype: keep (default; quantized GGUF tensors become f32 in safetensors), f32,
        f16, bf16, or for GGUF output q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k
        (1-D tensors stay f32; K-quant rows that are not a multiple of 256 fall back to
        q5_0, q5_1, q8_0 as in llama.cpp).
        --in-place rewrites a GGUF file, a safetensors file or a directory of shards where
        it lies, shard by shard under a journal (.ckpt-journal.json): after a crash, the
        next ckpt command on it finishes the rewrite. Extra disk: one shard.
        """,
        options: [
            .init("--to", value: "format", help: "Output format: safetensors or gguf (default: gguf for a .gguf output path, else safetensors)."),
            .init("--dtype", value: "type", help: "Element type of the output tensors (default: keep)."),
            .init("--shard-size", value: "size", help: "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB (default 5GB)."),
            .init("--force", help: "Replace an existing output."),
            .init("--keep-names", help: "Across formats, write an architecture ckpt has no name map for under its own tensor names (no loader will take it as a model)."),
            .init("--in-place", help: "Rewrite the checkpoint where it lies (crash-safe; needs --dtype)."),
            .init("--json", help: "Print the summary as one JSON object on stdout."),
        ],
        positionals: 1...2
    )

    static func run(_ args: ParsedArguments) throws {
        if args.flag("--in-place") { return try runInPlace(args) }
        guard args.positionals.count == 2 else {
            throw UsageError(message: "'ckpt convert' takes an input and an output (or --in-place)", command: "convert")
        }
        let input = args.positionals[0], output = args.positionals[1]
        let source = try openCheckpoint(path: input)
        var target: CheckpointFormat
        switch args.value("--to") {
        case nil:
            // The output path says it: a .gguf file, or a safetensors directory or file.
            target = output.hasSuffix(".gguf") ? .gguf : .safetensors
        case let v?:
            guard let f = CheckpointFormat(rawValue: v) else {
                throw UsageError(message: "--to takes safetensors or gguf, not '\(v)'", command: "convert")
            }
            target = f
        }
        if target == .gguf && !output.hasSuffix(".gguf") {
            throw UsageError(message: "a GGUF output path must end in .gguf: '\(output)'", command: "convert")
        }
        var options = ConversionOptions(target: target)
        if let d = args.value("--dtype") {
            guard let choice = DTypeChoice.parse(d) else {
                throw UsageError(message: "unknown --dtype '\(d)' (keep, f32, f16, bf16, \(Converter.encodable.sorted().map { $0.lowercased() }.joined(separator: ", ")))", command: "convert")
            }
            options.dtype = choice
        }
        if let s = args.value("--shard-size") {
            guard let bytes = parseSize(s), bytes > 0 else {
                throw UsageError(message: "--shard-size takes a size such as 5GB, 500MB or 2GiB, not '\(s)'", command: "convert")
            }
            options.shardSize = bytes
        }
        options.overwrite = args.flag("--force")
        options.keepNames = args.flag("--keep-names")
        let converter = try Converter(source: source, output: output, options: options)
        for w in converter.warnings { Console.err("warning: \(w)\n") }
        let bar = ProgressBar(label: "convert", total: source.tensors.count, totalBytes: source.tensorBytes)
        let summary = try converter.run { done, bytes in bar.update(done: done, bytesDone: bytes) }
        bar.finish()
        if args.flag("--json") {
            Console.out(summaryJSON(summary, fields: [("input", input), ("output", output), ("format", target.rawValue)], inPlace: false))
        } else {
            let rate = summary.seconds > 0 ? Int(Double(summary.bytesRead) / summary.seconds) : 0
            Console.err("converted \(summary.tensors) tensors, \(formatBytes(summary.bytesRead)) → \(formatBytes(summary.bytesWritten)) in \(formatFixed(summary.seconds, digits: 2)) s (\(formatBytes(rate))/s): \(output)\n")
        }
    }

    static func runInPlace(_ args: ParsedArguments) throws {
        guard args.positionals.count == 1 else {
            throw UsageError(message: "--in-place takes one checkpoint, not an output path", command: "convert")
        }
        guard let dtype = args.value("--dtype") else {
            throw UsageError(message: "--in-place needs --dtype (the rewrite keeps names, shards and format)", command: "convert")
        }
        guard DTypeChoice.parse(dtype) != nil else {
            throw UsageError(message: "unknown --dtype '\(dtype)'", command: "convert")
        }
        if args.value("--to") != nil || args.value("--shard-size") != nil {
            throw UsageError(message: "--in-place keeps the format and the shard layout; write to a new path to change them", command: "convert")
        }
        let path = args.positionals[0]
        let summary = try InPlaceRewrite.run(path: path, dtype: dtype) { Console.err("ckpt: \($0)\n") }
        if args.flag("--json") {
            Console.out(summaryJSON(summary, fields: [("path", path)], inPlace: true))
        } else {
            Console.err("rewrote \(path) in place: \(summary.tensors) tensors, \(formatBytes(summary.bytesRead)) → \(formatBytes(summary.bytesWritten)) in \(formatFixed(summary.seconds, digits: 2)) s\n")
        }
    }

    /// The one-line JSON summary of a conversion.
    static func summaryJSON(_ summary: ConversionSummary, fields: [(String, String)], inPlace: Bool) -> String {
        var w = JSONWriter()
        w.beginObject()
        for (k, v) in fields { w.string(v, key: k) }
        w.bool(inPlace, key: "in_place")
        w.int(summary.tensors, key: "tensors")
        w.int(summary.bytesRead, key: "bytes_read")
        w.int(summary.bytesWritten, key: "bytes_written")
        w.double(summary.seconds, key: "seconds")
        w.beginArray(key: "files")
        for f in summary.outputFiles { w.string(f) }
        w.endArray()
        w.beginArray(key: "warnings")
        for x in summary.warnings { w.string(x) }
        w.endArray()
        w.endObject()
        return w.text + "\n"
    }

    /// "5GB" (10^9), "2GiB" and "2G" (2^30), "500MB", "4096" (bytes).
    static func parseSize(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
                                      ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
                                      ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)]
        let upper = text.uppercased()
        for (suffix, scale) in units where upper.hasSuffix(suffix) {
            guard let v = Double(upper.dropLast(suffix.count)), v >= 0, v * Double(scale) < 9e18 else { return nil }
            return Int(v * Double(scale))
        }
        return Int(upper)
    }
}
