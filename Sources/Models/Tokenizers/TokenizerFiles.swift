import Basics
import CheckpointIO

/// A tokenizer's vocabulary and settings, as both GGUF and HF store them: converts
/// GGUF's `tokenizer.ggml.*` keys to `tokenizer.json` + `tokenizer_config.json` and
/// back. Byte-level BPE (GGUF model `gpt2`: GPT-2, SmolLM, Llama 3, Qwen2 …) and
/// SentencePiece BPE (GGUF `llama`: Llama 2, Mistral, Gemma …) are handled both ways;
/// SentencePiece unigram (`t5`) goes from GGUF to `tokenizer.json`, not back yet.
/// Mapping: Formats/tokenizer.md.
public struct TokenizerFiles: Sendable, Equatable {
    /// The vocabulary's kind, as GGUF's `tokenizer.ggml.model` names it.
    public enum Model: String, Sendable {
        /// Byte-level BPE (llama.cpp's LLAMA_VOCAB_TYPE_BPE).
        case bpe = "gpt2"
        /// SentencePiece BPE: merges by score, byte fallback (LLAMA_VOCAB_TYPE_SPM).
        case spm = "llama"
        /// SentencePiece unigram with a precompiled normalizer (LLAMA_VOCAB_TYPE_UGM).
        case ugm = "t5"
    }

    /// GGUF token types (llama.cpp's `llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public var tokens: [String]
    public var types: [TokenType]
    /// "left right" pairs, in merge order.
    public var merges: [String]
    /// llama.cpp's pre-tokenizer name (`tokenizer.ggml.pre`).
    public var pre: String
    public var bosID: Int?
    public var eosID: Int?
    public var unknownID: Int?
    public var paddingID: Int?
    /// nil where the source does not say (llama.cpp then uses its default for the vocabulary).
    public var addBOS: Bool?
    public var addEOS: Bool?
    public var chatTemplate: String?
    public var model: Model
    /// `tokenizer.ggml.scores` (SentencePiece: merge priority or log-probability per token;
    /// empty for byte-level BPE).
    public var scores: [Float]
    /// `tokenizer.ggml.add_space_prefix`; nil where the file does not say (llama.cpp then
    /// prefixes a space for `llama` vocabularies and not for `t5`).
    public var addSpacePrefix: Bool?
    /// `tokenizer.ggml.remove_extra_whitespaces` (used by `t5` vocabularies only).
    public var removeExtraWhitespaces: Bool?
    /// `tokenizer.ggml.precompiled_charsmap`: SentencePiece's normalizer (`t5` only).
    public var precompiledCharsmap: [UInt8]

    public struct Unsupported: UserFacingError, Sendable {
        public let description: String
        public var exitCode: ExitCode { .unsupported }
    }

    /// The pre-tokenizers llama.cpp names, as `tokenizers` spells them. The regexes are
    /// those of the models' own tokenizer.json files.
    static let preTokenizers: [String: String] = {
        let byteLevelRegex = #"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#
        let byteLevelPlain = #"{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}"#
        let digits = #"{"type":"Digits","individual_digits":true}"#
        func split(_ regex: String) -> String {
            var text = ""
            JSONWriter.appendString(regex, to: &text)
            return #"{"type":"Split","pattern":{"Regex":"# + text + #"},"behavior":"Isolated","invert":false}"#
        }
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        // Mistral-NeMo's file spells the case classes with \p{Lu}… (llama.cpp runs an equivalent).
        let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        func sequence(_ parts: String...) -> String { #"{"type":"Sequence","pretokenizers":["# + parts.joined(separator: ",") + "]}" }
        return [
            // llama.cpp spells it gpt-2 (and refuses gpt2, which ckpt wrote before).
            "gpt-2": byteLevelRegex,
            "gpt2": byteLevelRegex,
            "default": byteLevelRegex,
            "smollm": sequence(digits, byteLevelRegex),
            "starcoder": sequence(digits, byteLevelRegex),
            "refact": sequence(digits, byteLevelRegex),
            "llama-bpe": sequence(split(llama3), byteLevelPlain),
            "qwen2": sequence(split(qwen2), byteLevelPlain),
            "tekken": sequence(split(tekken), byteLevelPlain),
        ]
    }()

    public init(tokens: [String], types: [TokenType], merges: [String], pre: String, bosID: Int? = nil, eosID: Int? = nil,
                unknownID: Int? = nil, paddingID: Int? = nil, addBOS: Bool? = nil, addEOS: Bool? = nil, chatTemplate: String? = nil,
                model: Model = .bpe, scores: [Float] = [], addSpacePrefix: Bool? = nil, removeExtraWhitespaces: Bool? = nil,
                precompiledCharsmap: [UInt8] = []) {
        self.tokens = tokens; self.types = types; self.merges = merges; self.pre = pre
        self.bosID = bosID; self.eosID = eosID; self.unknownID = unknownID; self.paddingID = paddingID
        self.addBOS = addBOS; self.addEOS = addEOS; self.chatTemplate = chatTemplate
        self.model = model; self.scores = scores; self.addSpacePrefix = addSpacePrefix
        self.removeExtraWhitespaces = removeExtraWhitespaces; self.precompiledCharsmap = precompiledCharsmap
    }

    /// From GGUF metadata; nil when the file carries no tokenizer. Special-token ids the
    /// file leaves out take llama.cpp's defaults for the vocabulary kind (`llama`: BOS 1,
    /// EOS 2, UNK 0; `t5`: EOS 1, UNK 2, PAD 0).
    public init?(gguf metadata: [MetadataEntry]) throws {
        guard let name = metadata["tokenizer.ggml.model"]?.stringValue else { return nil }
        guard let model = Model(rawValue: name) else {
            throw Unsupported(description: "GGUF tokenizer model '\(name)' (byte-level BPE 'gpt2' and SentencePiece 'llama' and 't5' are handled)")
        }
        guard let tokens = metadata["tokenizer.ggml.tokens"]?.arrayValue?.strings() else {
            throw Unsupported(description: "the GGUF tokenizer has no tokens")
        }
        let merges = metadata["tokenizer.ggml.merges"]?.arrayValue?.strings()
        if model == .bpe && merges == nil {
            throw Unsupported(description: "the GGUF tokenizer has no merges")
        }
        let rawTypes = metadata["tokenizer.ggml.token_type"]?.arrayValue?.values().map { $0.intValue ?? 1 } ?? []
        self.tokens = tokens
        self.types = tokens.indices.map { i in i < rawTypes.count ? TokenType(rawValue: Int32(rawTypes[i])) ?? .normal : .normal }
        self.merges = merges ?? []
        self.model = model
        let rawScores = metadata["tokenizer.ggml.scores"]?.arrayValue?.values() ?? []
        scores = rawScores.count >= tokens.count ? rawScores.prefix(tokens.count).map { Float($0.doubleValue ?? 0) } : []
        self.pre = metadata["tokenizer.ggml.pre"]?.stringValue ?? "default"
        func id(_ key: String, default value: Int?) -> Int? {
            let v = metadata["tokenizer.ggml.\(key)"]?.intValue
            if let v, v < tokens.count { return v }
            return value.flatMap { $0 < tokens.count ? $0 : nil }
        }
        bosID = id("bos_token_id", default: model == .spm ? 1 : nil)
        eosID = id("eos_token_id", default: model == .spm ? 2 : model == .ugm ? 1 : nil)
        unknownID = id("unknown_token_id", default: model == .spm ? 0 : model == .ugm ? 2 : nil)
        paddingID = id("padding_token_id", default: model == .ugm ? 0 : nil)
        addBOS = metadata["tokenizer.ggml.add_bos_token"]?.boolValue
        addEOS = metadata["tokenizer.ggml.add_eos_token"]?.boolValue
        chatTemplate = metadata["tokenizer.chat_template"]?.stringValue
        addSpacePrefix = metadata["tokenizer.ggml.add_space_prefix"]?.boolValue
        removeExtraWhitespaces = metadata["tokenizer.ggml.remove_extra_whitespaces"]?.boolValue
        precompiledCharsmap = metadata["tokenizer.ggml.precompiled_charsmap"]?.arrayValue?.values().compactMap { v -> UInt8? in
            switch v {
            case let .uint8(b): return b
            case let .int8(b): return UInt8(bitPattern: b)
            default: return nil
            }
        } ?? []
        guard model != .bpe || Self.preTokenizers[pre] != nil else {
            throw Unsupported(description: "pre-tokenizer '\(pre)' has no tokenizer.json equivalent here yet")
        }
    }

    /// Throws `Unsupported` unless `tokenizerJSON()` can describe this vocabulary (byte-level
    /// BPE and SentencePiece BPE; not unigram yet).
    public func checkConvertibleToHF() throws {
        guard model == .bpe || scores.count == tokens.count else {
            throw Unsupported(description: "the SentencePiece vocabulary has no scores, which its \(model == .spm ? "merges are made from" : "unigram model needs")")
        }
    }

    /// SentencePiece BPE's merges, which the model file does not list: every split of a
    /// piece into two pieces of the vocabulary, ranked by the merged piece's score (higher
    /// first; ties by the merged piece's id, then the parts' ids), as transformers'
    /// SentencePieceExtractor derives them. llama.cpp's tokenizer merges the adjacent pair
    /// whose result scores highest, which is what these ranks make the `tokenizers` BPE do.
    public func sentencePieceMerges() -> [(String, String)] {
        var id: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where types[i] == .normal || types[i] == .userDefined { id[t] = id[t] ?? i }
        var merges: [(left: String, right: String, score: Float, l: Int, r: Int, piece: Int)] = []
        for (i, t) in tokens.enumerated() where types[i] == .normal {
            let chars = Array(t)
            guard chars.count > 1 else { continue }
            for k in 1..<chars.count {
                let left = String(chars[..<k]), right = String(chars[k...])
                if let l = id[left], let r = id[right] { merges.append((left, right, scores[i], l, r, i)) }
            }
        }
        merges.sort { a, b in
            a.score != b.score ? a.score > b.score : a.piece != b.piece ? a.piece < b.piece : (a.l, a.r) < (b.l, b.r)
        }
        return merges.map { ($0.left, $0.right) }
    }

    /// `tokenizer.json` for the `tokenizers` library.
    public func tokenizerJSON() -> [UInt8] {
        switch model {
        case .spm: return sentencePieceJSON()
        case .ugm: return unigramJSON()
        case .bpe: return byteLevelJSON()
        }
    }

    /// SentencePiece unigram as llama.cpp's UGM tokenizer runs it: the precompiled
    /// normalizer, then (with remove_extra_whitespaces) spaces trimmed and runs of them
    /// merged, ▁ for spaces and in front (Metaspace, not splitting: llama.cpp's Viterbi runs
    /// over the whole text), and the Viterbi segmentation over the pieces' scores.
    private func unigramJSON() -> [UInt8] {
        var w = beginTokenizerJSON()
        let merge = removeExtraWhitespaces ?? true
        var normalizers: [String] = []
        if !precompiledCharsmap.isEmpty {
            normalizers.append("{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"" + base64(precompiledCharsmap) + "\"}")
        }
        if merge {
            normalizers.append(#"{"type":"Strip","strip_left":true,"strip_right":true}"#)
            normalizers.append(#"{"type":"Replace","pattern":{"Regex":" {2,}"},"content":" "}"#)
        }
        w.raw(normalizers.isEmpty ? "null" : "{\"type\":\"Sequence\",\"normalizers\":[" + normalizers.joined(separator: ",") + "]}", key: "normalizer")
        // With merged spaces llama.cpp puts ▁ before the first word whatever add_space_prefix says.
        let scheme = merge || (addSpacePrefix ?? true) ? "always" : "never"
        let metaspace = "{\"type\":\"Metaspace\",\"replacement\":\"\u{2581}\",\"prepend_scheme\":\"\(scheme)\",\"split\":false}"
        w.raw(metaspace, key: "pre_tokenizer")
        if let post = postProcessor(inner: nil) { w.raw(post, key: "post_processor") } else { w.null(key: "post_processor") }
        w.raw(metaspace, key: "decoder")
        w.beginObject(key: "model")
        w.string("Unigram", key: "type")
        if let u = unknownID, u < tokens.count { w.int(u, key: "unk_id") } else { w.null(key: "unk_id") }
        w.beginArray(key: "vocab")
        for (id, t) in tokens.enumerated() {
            w.beginArray()
            w.string(t)
            w.raw(JSONWriter.number(scores[id]))
            w.endArray()
        }
        w.endArray()
        w.bool(types.contains(.byte), key: "byte_fallback")
        w.endObject()
        w.endObject()
        return Array((w.text + "\n").utf8)
    }

    private func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let b0 = UInt32(bytes[i]), b1 = n > 1 ? UInt32(bytes[i + 1]) : 0, b2 = n > 2 ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(n > 2 ? alphabet[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A tokenizer.json object opened with what every kind writes first: version, no
    /// truncation or padding, and the added tokens.
    private func beginTokenizerJSON() -> JSONWriter {
        var w = JSONWriter()
        w.beginObject()
        w.string("1.0", key: "version")
        w.null(key: "truncation")
        w.null(key: "padding")
        addedTokens(&w)
        return w
    }

    /// Added tokens: control, unknown and user-defined entries, matched before the model.
    private func addedTokens(_ w: inout JSONWriter) {
        w.beginArray(key: "added_tokens")
        for (id, type) in types.enumerated() where type == .control || type == .userDefined || type == .unknown {
            w.beginObject()
            w.int(id, key: "id")
            w.string(tokens[id], key: "content")
            w.bool(false, key: "single_word")
            w.bool(false, key: "lstrip")
            w.bool(false, key: "rstrip")
            w.bool(type == .userDefined, key: "normalized")
            w.bool(type != .userDefined, key: "special")
            w.endObject()
        }
        w.endArray()
    }

    /// The post-processor: `inner` (if any), then BOS in front when the vocabulary adds it
    /// (`add_bos_token`, by default for SentencePiece).
    private func postProcessor(inner: String?) -> String? {
        guard addBOS ?? (model == .spm), let bos = bosID, bos < tokens.count else { return inner }
        var name = ""
        JSONWriter.appendString(tokens[bos], to: &name)
        func specialToken(_ typeID: Int) -> String { "{\"SpecialToken\":{\"id\":\(name),\"type_id\":\(typeID)}}" }
        func sequence(_ id: String, _ typeID: Int) -> String { "{\"Sequence\":{\"id\":\"\(id)\",\"type_id\":\(typeID)}}" }
        let single = "[" + specialToken(0) + "," + sequence("A", 0) + "]"
        let pair = "[" + specialToken(0) + "," + sequence("A", 0) + "," + specialToken(1) + "," + sequence("B", 1) + "]"
        let specials = "{" + name + ":{\"id\":" + name + ",\"ids\":[\(bos)],\"tokens\":[" + name + "]}}"
        let template = "{\"type\":\"TemplateProcessing\",\"single\":" + single + ",\"pair\":" + pair + ",\"special_tokens\":" + specials + "}"
        guard let inner else { return template }
        return #"{"type":"Sequence","processors":["# + inner + "," + template + "]}"
    }

    /// SentencePiece BPE as Llama 2's own tokenizer.json has it: spaces become ▁ (one put in
    /// front when `add_space_prefix`), BPE over the pieces with the derived merges, byte
    /// fallback for characters no piece covers.
    private func sentencePieceJSON() -> [UInt8] {
        var w = beginTokenizerJSON()
        let replace = "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u{2581}\"}"
        if addSpacePrefix ?? true {
            w.raw("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\u{2581}\"}," + replace + "]}", key: "normalizer")
        } else {
            w.raw(replace, key: "normalizer")
        }
        w.null(key: "pre_tokenizer")
        if let post = postProcessor(inner: nil) { w.raw(post, key: "post_processor") } else { w.null(key: "post_processor") }
        let strip = addSpacePrefix ?? true ? ",{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}" : ""
        w.raw("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\u{2581}\"},\"content\":\" \"},"
              + "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}" + strip + "]}", key: "decoder")
        w.beginObject(key: "model")
        w.string("BPE", key: "type")
        w.null(key: "dropout")
        if let u = unknownID, u < tokens.count { w.string(tokens[u], key: "unk_token") } else { w.null(key: "unk_token") }
        w.null(key: "continuing_subword_prefix")
        w.null(key: "end_of_word_suffix")
        w.bool(true, key: "fuse_unk")
        w.bool(true, key: "byte_fallback")
        w.bool(false, key: "ignore_merges")
        w.beginObject(key: "vocab")
        for (id, t) in tokens.enumerated() { w.int(id, key: t) }
        w.endObject()
        w.beginArray(key: "merges")
        for (l, r) in sentencePieceMerges() {
            w.beginArray()
            w.string(l)
            w.string(r)
            w.endArray()
        }
        w.endArray()
        w.endObject()
        w.endObject()
        return Array((w.text + "\n").utf8)
    }

    private func byteLevelJSON() -> [UInt8] {

        var w = beginTokenizerJSON()
        w.null(key: "normalizer")
        w.raw(Self.preTokenizers[pre]!, key: "pre_tokenizer")
        let byteLevelPost = #"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}"#
        w.raw(postProcessor(inner: byteLevelPost)!, key: "post_processor")
        w.raw(#"{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#, key: "decoder")
        w.beginObject(key: "model")
        w.string("BPE", key: "type")
        w.null(key: "dropout")
        if let u = unknownID, u < tokens.count, types[u] == .unknown { w.string(tokens[u], key: "unk_token") } else { w.null(key: "unk_token") }
        w.null(key: "continuing_subword_prefix")
        w.null(key: "end_of_word_suffix")
        w.bool(false, key: "fuse_unk")
        w.bool(false, key: "byte_fallback")
        // llama.cpp (and Llama 3's own file) take a whole-word vocabulary hit before merging.
        w.bool(pre == "llama-bpe" || pre == "tekken", key: "ignore_merges")
        w.beginObject(key: "vocab")
        for (id, t) in tokens.enumerated() { w.int(id, key: t) }
        w.endObject()
        w.beginArray(key: "merges")
        for m in merges { w.string(m) }
        w.endArray()
        w.endObject()
        w.endObject()
        return Array((w.text + "\n").utf8)
    }

    /// `tokenizer_config.json`: special tokens, BOS/EOS behaviour, chat template.
    public func tokenizerConfigJSON(contextLength: Int?) -> [UInt8] {
        var w = JSONWriter(pretty: true)
        w.beginObject()
        if let addBOS { w.bool(addBOS, key: "add_bos_token") }
        if let addEOS { w.bool(addEOS, key: "add_eos_token") }
        for (key, id) in [("bos_token", bosID), ("eos_token", eosID), ("unk_token", unknownID), ("pad_token", paddingID)] {
            if let id, id >= 0, id < tokens.count { w.string(tokens[id], key: key) } else { w.null(key: key) }
        }
        if let chatTemplate { w.string(chatTemplate, key: "chat_template") }
        w.bool(false, key: "clean_up_tokenization_spaces")
        if let contextLength { w.int(contextLength, key: "model_max_length") }
        w.string("GPT2Tokenizer", key: "tokenizer_class")
        w.endObject()
        return Array((w.text + "\n").utf8)
    }

    /// Reads `tokenizer.json` (+ `tokenizer_config.json` if present) from an HF directory.
    public init?(hfDirectory dir: String) throws {
        let path = FileSystem.join(dir, "tokenizer.json")
        guard try FileSystem.kind(of: path) == .file else { return nil }
        let json: JSONValue
        do { json = try JSONParser.parse(FileSystem.readFile(path, limit: 256 << 20)) } catch let e as JSONError {
            throw CheckpointError.malformed(path: path, reason: "invalid JSON: \(e)")
        }
        guard json["model"]?["type"]?.stringValue == "BPE", let vocab = json["model"]?["vocab"]?.objectValue else {
            throw Unsupported(description: "\(path): only BPE tokenizer.json files are converted yet (byte-level, or SentencePiece BPE with byte fallback)")
        }
        var normalizerText = JSONWriter(), preText = JSONWriter()
        normalizerText.metadata(json["normalizer"]?.metadataValue ?? .null, full: true)
        preText.metadata(json["pre_tokenizer"]?.metadataValue ?? .null, full: true)
        // SentencePiece BPE (Llama 2, Mistral v0.1, Gemma): spaces become ▁ and characters no
        // piece covers fall back to bytes.
        let sentencePiece = json["model"]?["byte_fallback"] == .bool(true)
            && (normalizerText.text.contains("\u{2581}") || preText.text.contains("\u{2581}"))
        var byID: [Int: String] = [:]
        for (token, id) in vocab {
            guard let i = id.nonNegativeInt else { throw CheckpointError.malformed(path: path, reason: "vocab id of '\(token)' is not an integer") }
            byID[i] = token
        }
        var special: [Int: Bool] = [:]
        for added in json["added_tokens"]?.arrayValue ?? [] {
            guard let id = added["id"]?.nonNegativeInt, let content = added["content"]?.stringValue else { continue }
            byID[id] = content
            special[id] = added["special"] == .bool(true)
        }
        let count = (byID.keys.max() ?? -1) + 1
        guard byID.count == count else {
            throw CheckpointError.malformed(path: path, reason: "token ids are not contiguous (\(byID.count) tokens, largest id \(count - 1))")
        }
        tokens = (0..<count).map { byID[$0]! }
        types = (0..<count).map { id in special[id].map { $0 ? .control : .userDefined } ?? .normal }
        merges = try (json["model"]?["merges"]?.arrayValue ?? []).map { m in
            if let s = m.stringValue { return s }
            if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue { return a + " " + b }
            throw CheckpointError.malformed(path: path, reason: "a merge is neither \"a b\" nor [\"a\", \"b\"]")
        }
        if sentencePiece {
            model = .spm
            pre = "default"
            addSpacePrefix = try Self.sentencePiecePrefix(normalizer: json["normalizer"], preTokenizer: json["pre_tokenizer"], path: path)
            scores = Self.sentencePieceScores(tokens: tokens, types: types, merges: merges)
            for (i, t) in tokens.enumerated() where types[i] == .normal && Self.isByteToken(t) { types[i] = .byte }
        } else {
            // Name the pre-tokenizer after the one whose tokenizer.json form matches.
            let found = canonical(preText.text)
            // Several llama.cpp names share a form; the table's first choice for each is used.
            let preferred = ["gpt-2", "smollm", "llama-bpe", "qwen2", "tekken"]
            guard let name = preferred.first(where: { canonical(Self.preTokenizers[$0]!) == found }) else {
                throw Unsupported(description: "\(path): its pre_tokenizer matches none that llama.cpp names (\(preferred.joined(separator: ", ")))")
            }
            pre = name
            model = .bpe
            scores = []
            addSpacePrefix = nil
        }
        let configPath = FileSystem.join(dir, "tokenizer_config.json")
        let config = try FileSystem.kind(of: configPath) == .file ? try JSONParser.parse(FileSystem.readFile(configPath, limit: 64 << 20)) : JSONValue.null
        let vocabulary = tokens
        func tokenID(_ key: String) -> Int? {
            let value = config[key]
            let text = value?.stringValue ?? value?["content"]?.stringValue
            return text.flatMap { t in vocabulary.firstIndex(of: t) }
        }
        bosID = tokenID("bos_token")
        eosID = tokenID("eos_token")
        unknownID = tokenID("unk_token") ?? json["model"]?["unk_token"]?.stringValue.flatMap { t in vocabulary.firstIndex(of: t) }
        paddingID = tokenID("pad_token")
        if model == .spm, let u = unknownID { types[u] = .unknown }
        // Stated in tokenizer_config.json, or implied by a post-processor that adds the BOS token.
        if case let .bool(b)? = config["add_bos_token"] {
            addBOS = b
        } else {
            var post = JSONWriter()
            post.metadata(json["post_processor"]?.metadataValue ?? .null, full: true)
            let bosText = bosID.map { vocabulary[$0] }
            addBOS = bosText.map { post.text.contains("\"TemplateProcessing\"") && post.text.contains($0) } == true ? true : nil
        }
        if case let .bool(b)? = config["add_eos_token"] { addEOS = b } else { addEOS = nil }
        chatTemplate = config["chat_template"]?.stringValue
        removeExtraWhitespaces = nil
        precompiledCharsmap = []
    }

    /// Whether a SentencePiece tokenizer.json puts ▁ in front of the text: a `Prepend` of ▁ in
    /// its normalizer (older files), or a `Metaspace` pre-tokenizer whose prepend scheme is
    /// not "never" (newer ones). A Metaspace that splits the text at ▁ is not SentencePiece's
    /// BPE, which merges across them.
    static func sentencePiecePrefix(normalizer: JSONValue?, preTokenizer: JSONValue?, path: String) throws -> Bool {
        func parts(_ v: JSONValue?, _ key: String) -> [JSONValue] {
            guard let v, v != .null else { return [] }
            return v["type"]?.stringValue == "Sequence" ? (v[key]?.arrayValue ?? []) : [v]
        }
        let prepend = parts(normalizer, "normalizers").contains { $0["type"]?.stringValue == "Prepend" && $0["prepend"]?.stringValue == "\u{2581}" }
        var metaspace: Bool?
        for p in parts(preTokenizer, "pretokenizers") {
            guard p["type"]?.stringValue == "Metaspace" else {
                throw Unsupported(description: "\(path): a SentencePiece tokenizer with a '\(p["type"]?.stringValue ?? "?")' pre-tokenizer has no llama.cpp equivalent")
            }
            if p["split"] == .bool(true) {
                throw Unsupported(description: "\(path): its Metaspace pre-tokenizer splits the text at every space, which llama.cpp's SentencePiece tokenizer does not")
            }
            let scheme = p["prepend_scheme"]?.stringValue ?? (p["add_prefix_space"] == .bool(false) ? "never" : "always")
            metaspace = scheme != "never"
        }
        return prepend || (metaspace ?? false)
    }

    /// Scores for llama.cpp's SentencePiece tokenizer, which merges the adjacent pair whose
    /// result scores highest: a piece made by merge r scores −r (its first merge, if several
    /// make it), so merges happen in the file's order, as the `tokenizers` BPE applies them.
    /// Pieces no merge makes score −10⁹ (never preferred); control, user-defined and byte
    /// pieces 0, as SentencePiece gives them.
    static func sentencePieceScores(tokens: [String], types: [TokenType], merges: [String]) -> [Float] {
        var id: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where id[t] == nil { id[t] = i }
        var scores = [Float](repeating: .nan, count: tokens.count)
        for (rank, m) in merges.enumerated() {
            guard let space = m.firstIndex(of: " ") else { continue }
            let piece = String(m[..<space]) + String(m[m.index(after: space)...])
            if let i = id[piece], scores[i].isNaN { scores[i] = -Float(rank) }
        }
        for i in scores.indices where scores[i].isNaN {
            scores[i] = types[i] == .normal && !isByteToken(tokens[i]) ? -1e9 : 0
        }
        return scores
    }

    /// `<0xAB>`: SentencePiece's byte-fallback pieces.
    static func isByteToken(_ t: String) -> Bool {
        let u = Array(t.utf8)
        return u.count == 6 && u[0] == 0x3C && u[1] == 0x30 && u[2] == 0x78 && u[5] == 0x3E
            && u[3...4].allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Pads the vocabulary to `count` entries with unused `[PAD{i}]` tokens, as llama.cpp's
    /// converter does: the embedding often has more rows than the tokenizer has tokens
    /// (Qwen2: 151,936 rows, 151,665 tokens), and llama.cpp wants them equal.
    public mutating func pad(to count: Int) {
        guard count > tokens.count else { return }
        for i in tokens.count..<count {
            tokens.append("[PAD\(i)]")
            types.append(.unused)
            if !scores.isEmpty { scores.append(-1000) }
        }
    }

    /// The `tokenizer.ggml.*` keys llama.cpp reads.
    public func ggufMetadata() -> [MetadataEntry] {
        var out: [MetadataEntry] = [
            MetadataEntry(key: "tokenizer.ggml.model", value: .string(model.rawValue)),
            MetadataEntry(key: "tokenizer.ggml.pre", value: .string(pre)),
            MetadataEntry(key: "tokenizer.ggml.tokens", value: .array(MetadataArray(values: tokens.map { .string($0) }, elementType: "string"))),
        ]
        if !scores.isEmpty {
            out.append(MetadataEntry(key: "tokenizer.ggml.scores", value: .array(MetadataArray(values: scores.map { .float32($0) }, elementType: "float32"))))
        }
        out.append(MetadataEntry(key: "tokenizer.ggml.token_type", value: .array(MetadataArray(values: types.map { .int32($0.rawValue) }, elementType: "int32"))))
        if model == .bpe {
            out.append(MetadataEntry(key: "tokenizer.ggml.merges", value: .array(MetadataArray(values: merges.map { .string($0) }, elementType: "string"))))
        }
        for (key, id) in [("bos_token_id", bosID), ("eos_token_id", eosID), ("unknown_token_id", unknownID), ("padding_token_id", paddingID)] {
            if let id, id >= 0 { out.append(MetadataEntry(key: "tokenizer.ggml.\(key)", value: .uint32(UInt32(id)))) }
        }
        if let addBOS { out.append(MetadataEntry(key: "tokenizer.ggml.add_bos_token", value: .bool(addBOS))) }
        if let addEOS { out.append(MetadataEntry(key: "tokenizer.ggml.add_eos_token", value: .bool(addEOS))) }
        if let addSpacePrefix { out.append(MetadataEntry(key: "tokenizer.ggml.add_space_prefix", value: .bool(addSpacePrefix))) }
        if let removeExtraWhitespaces { out.append(MetadataEntry(key: "tokenizer.ggml.remove_extra_whitespaces", value: .bool(removeExtraWhitespaces))) }
        if !precompiledCharsmap.isEmpty {
            out.append(MetadataEntry(key: "tokenizer.ggml.precompiled_charsmap",
                                     value: .array(MetadataArray(values: precompiledCharsmap.map { .uint8($0) }, elementType: "uint8"))))
        }
        if let chatTemplate { out.append(MetadataEntry(key: "tokenizer.chat_template", value: .string(chatTemplate))) }
        return out
    }
}

/// JSON text without insignificant spaces and with keys sorted, for comparing
/// pre-tokenizer descriptions written by different tools.
private func canonical(_ text: String) -> String {
    guard let v = try? JSONParser.parse(Array(text.utf8)) else { return text }
    func render(_ v: JSONValue) -> String {
        switch v {
        case let .object(pairs):
            // trim_offsets changes offsets only, never ids (Qwen2's files say false, others true).
            return "{" + pairs.filter { $0.key != "trim_offsets" }.sorted { $0.key < $1.key }.map { k, v in
                var key = ""
                JSONWriter.appendString(k, to: &key)
                return key + ":" + render(v)
            }.joined(separator: ",") + "}"
        case let .array(items): return "[" + items.map(render).joined(separator: ",") + "]"
        case let .string(s):
            var out = ""
            JSONWriter.appendString(s, to: &out)
            return out
        case let .number(n): return n
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
    return render(v)
}
