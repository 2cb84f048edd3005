import CheckpointIO
import Models

/// `ckpt tokenize`: token ids of a text, exactly as llama.cpp gives them.
enum TokenizeCommand {
    static let spec = CommandSpec(
        name: "tokenize",
        summary: "Print the token ids of a text with a model's tokenizer.",
        usage: "tokenize --model <model> (--text <text> | --file <file>) [--special] [--json]",
        discussion: """
        <model> is a GGUF file or an HF directory with tokenizer.json. Ids equal llama.cpp's
        tokenize(text, add_bos=False, special=False): control tokens written in the text
        are plain text unless --special. Byte-level BPE vocabularies (GPT-2, SmolLM,
        StarCoder, Llama 3, Qwen2 pre-tokenizers) and SentencePiece ones (GGUF models
        'llama': SPM with byte fallback, and 't5': unigram). Invalid UTF-8 in a --file is
        tokenized as llama.cpp does (each bad byte becomes U+FFFD).
        """,
        options: [
            .init("--model", value: "model", help: "GGUF file or HF directory whose tokenizer to use."),
            .init("--text", value: "text", help: "The text to tokenize."),
            .init("--file", value: "file", help: "A UTF-8 file to tokenize."),
            .init("--special", help: "Parse control tokens written in the text (<|im_start|>, <bos>, …) as llama.cpp's parse_special."),
            .init("--json", help: "Print {\"ids\": [...], \"pieces\": [...]} instead of the ids."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        guard let model = args.value("--model") else {
            throw UsageError(message: "tokenize needs --model", command: "tokenize")
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
}
