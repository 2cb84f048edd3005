import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Models
import TensorMath

/// `ckpt generate`: streams a model's continuation of a prompt.
enum GenerateCommand {
    static let spec = CommandSpec(
        name: "generate",
        summary: "Stream a model's continuation of a prompt (or its chat reply).",
        usage: "generate --model <model> --prompt <text> [--chat] [--system <text>] [--max-tokens 128] [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--seed N] [--threads T]",
        discussion: """
        The prompt is tokenized as llama.cpp does (BOS first when the model adds one). With
        --chat it is wrapped in the model's chat format, recognised from its chat_template
        as llama.cpp recognises it (ChatML, Llama 3, Gemma, Mistral [INST]), and special
        tokens in it are parsed. Text goes to stdout as it is produced; speeds go to stderr.
        --temperature 0 is greedy decoding.
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file, or HF safetensors directory with config.json and tokenizer.json."),
            .init("--prompt", value: "text", help: "The prompt (or the user's message with --chat)."),
            .init("--chat", help: "Apply the model's chat format."),
            .init("--system", value: "text", help: "A system message (with --chat)."),
            .init("--max-tokens", value: "n", help: "Most tokens to generate (default 128)."),
            .init("--temperature", value: "t", help: "Sampling temperature (default 0.8; 0: greedy)."),
            .init("--top-k", value: "k", help: "Sample among the k most likely tokens (default 40; 0: all)."),
            .init("--top-p", value: "p", help: "Then among the smallest set with this much probability (default 0.95)."),
            .init("--seed", value: "n", help: "Random seed (default 0)."),
            .init("--special", help: "Parse control tokens written in the prompt without --chat."),
            .init("--threads", value: "n", help: "Threads (default: all CPUs)."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        guard let modelPath = args.value("--model") else { throw UsageError(message: "generate needs --model", command: "generate") }
        guard let prompt = args.value("--prompt") else { throw UsageError(message: "generate needs --prompt", command: "generate") }
        let maxTokens = try args.int("--max-tokens", default: 128, min: 1)
        let threads = try args.threads()
        let topK = try args.int("--top-k", default: 40, min: 0)
        let seed = try args.int("--seed", default: 0, min: 0)
        func float(_ name: String, _ d: Float, _ range: ClosedRange<Float>) throws -> Float {
            guard let s = args.value(name) else { return d }
            guard let v = Float(s), range.contains(v) else {
                throw UsageError(message: "\(name) must be a number in \(range.lowerBound)…\(range.upperBound), got '\(s)'", command: "generate")
            }
            return v
        }
        let temperature = try float("--temperature", 0.8, 0...100)
        let topP = try float("--top-p", 0.95, 0...1)
        ThreadPool.setThreads(threads)

        let model = try DecoderModel(path: modelPath)
        let tokenizer = try Tokenizers.forModel(path: modelPath)
        var text = prompt
        var special = args.flag("--special")
        if args.flag("--chat") {
            guard let format = ChatFormat.detect(tokenizer.files.chatTemplate) else {
                throw CheckpointError.unsupported(path: modelPath, reason: tokenizer.files.chatTemplate == nil
                    ? "the model has no chat template; drop --chat"
                    : "its chat template is none of the formats ckpt knows (ChatML, Llama 3, Gemma, Mistral)")
            }
            text = format.prompt(user: prompt, system: args.value("--system"))
            special = true
        }
        var ids = tokenizer.encode(text, special: special)
        if tokenizer.addsBOS, let bos = tokenizer.files.bosID { ids.insert(Int32(bos), at: 0) }
        let generator = Generator(stream: LayerStream(model: model), tokenizer: tokenizer,
                                  sampler: Sampler(temperature: temperature, topK: topK, topP: topP, seed: UInt64(seed)))
        let result = try generator.generate(prompt: ids, maxTokens: maxTokens) { bytes in
            Console.outBytes(bytes)
        }
        Console.out("\n")
        let gen = result.ids.count
        Console.err("prompt \(ids.count) tokens at \(formatFixed(Double(ids.count) / max(result.promptSeconds, 1e-9), digits: 1)) tokens/s; "
            + "generated \(gen) tokens at \(formatFixed(Double(gen) / max(result.genSeconds, 1e-9), digits: 1)) tokens/s\n")
    }
}
