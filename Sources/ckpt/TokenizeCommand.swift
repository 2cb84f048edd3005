import Basics
import CheckpointIO
import Models

/// `ckpt tokenize`: token ids of a text, exactly as llama.cpp gives them.
enum TokenizeCommand {
    static let spec = CommandSpec(
        name: "tokenize",
        summary: "Print the token ids of a text with a model's tokenizer.",
        usage: "tokenize --model <model> (--text <text> | --file <file>) [--special] [--json]\n       ckpt tokenize --model <model.gguf> --export-hf <dir>",
        discussion: """
        <model> is a GGUF file or an HF directory with tokenizer.json. Ids equal llama.cpp's
        tokenize(text, add_bos=False, special=False): control tokens written in the text
        are plain text unless --special. Byte-level BPE vocabularies (GPT-2, SmolLM,
        StarCoder, Llama 3, Qwen2 pre-tokenizers) and SentencePiece ones (GGUF models
        'llama': SPM with byte fallback, and 't5': unigram). Invalid UTF-8 in a --file is
        tokenized as llama.cpp does (each bad byte becomes U+FFFD).

        --export-hf writes a GGUF's tokenizer as tokenizer.json and tokenizer_config.json
        (byte-level BPE; SentencePiece BPE with merges derived from its scores, as
        transformers derives them; SentencePiece unigram with its precompiled normalizer),
        for the `tokenizers` library and transformers.
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file or HF directory whose tokenizer to use."),
            .init("--text", value: "text", help: "The text to tokenize."),
            .init("--file", value: "file", help: "A UTF-8 file to tokenize."),
            .init("--special", help: "Parse control tokens written in the text (<|im_start|>, <bos>, …) as llama.cpp's parse_special."),
            .init("--json", help: "Print {\"ids\": [...], \"pieces\": [...]} instead of the ids."),
            .init("--export-hf", value: "dir", help: "Write the tokenizer as tokenizer.json and tokenizer_config.json into dir."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        guard let model = args.value("--model") else {
            throw UsageError(message: "tokenize needs --model", command: "tokenize")
        }
        if let dir = args.value("--export-hf") {
            return try export(model: model, to: dir)
        }
        let text: [UInt8]
        switch (args.value("--text"), args.value("--file")) {
        case let (t?, nil): text = Array(t.utf8)
        case let (nil, f?): text = try FileSystem.readFile(f, limit: 1 << 30)
        default: throw UsageError(message: "give exactly one of --text and --file", command: "tokenize")
        }
        let files: TokenizerFiles?
        do {
            if try FileSystem.kind(of: model) == .directory {
                files = try TokenizerFiles(hfDirectory: model)
            } else {
                files = try TokenizerFiles(gguf: openCheckpoint(path: model).metadata)
            }
        } catch let e as TokenizerFiles.Unsupported {
            throw CheckpointError.unsupported(path: model, reason: e.description)
        }
        guard let files else {
            throw CheckpointError.unsupported(path: model, reason: "it carries no tokenizer")
        }
        let tokenizer: any Tokenizer
        do { tokenizer = try Tokenizers.make(files) } catch let e as TokenizerFiles.Unsupported {
            throw CheckpointError.unsupported(path: model, reason: e.description)
        }
        let ids = tokenizer.encode(bytes: text, special: args.flag("--special"))
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.raw("[" + ids.map(String.init).joined(separator: ",") + "]", key: "ids")
            w.beginArray(key: "pieces")
            for id in ids { w.string(files.tokens[Int(id)]) }
            w.endArray()
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            Console.out(ids.map(String.init).joined(separator: " ") + "\n")
            Console.err("\(ids.count) tokens\n")
        }
    }

    /// The GGUF's tokenizer as HF files in `dir` (created if missing; existing files replaced atomically).
    static func export(model: String, to dir: String) throws {
        let checkpoint = try openCheckpoint(path: model)
        let files: TokenizerFiles
        do {
            guard let f = try TokenizerFiles(gguf: checkpoint.metadata) else {
                throw CheckpointError.unsupported(path: model, reason: "it carries no tokenizer")
            }
            try f.checkConvertibleToHF()
            files = f
        } catch let e as TokenizerFiles.Unsupported {
            throw CheckpointError.unsupported(path: model, reason: e.description)
        }
        if try FileSystem.kind(of: dir) == .missing { try FileSystem.makeDirectory(dir) }
        let context = ModelConfig(gguf: checkpoint.metadata).maxPositionEmbeddings
        try FileSystem.writeAtomically(FileSystem.join(dir, "tokenizer.json"), files.tokenizerJSON())
        try FileSystem.writeAtomically(FileSystem.join(dir, "tokenizer_config.json"), files.tokenizerConfigJSON(contextLength: context))
        Console.out("\(dir): tokenizer.json, tokenizer_config.json (\(files.tokens.count) tokens, \(["gpt2": "byte-level BPE", "llama": "SentencePiece BPE", "t5": "SentencePiece unigram"][files.model.rawValue] ?? files.model.rawValue))\n")
    }
}
