import Basics
import CheckpointIO

/// Text to token ids and back, with exactly llama.cpp's ids, whatever the vocabulary's
/// kind (byte-level BPE, SentencePiece BPE or unigram).
public protocol Tokenizer: Sendable {
    /// The vocabulary and settings it was built from.
    var files: TokenizerFiles { get }
    /// Token ids of `text`. With `special`, control tokens written in the text become
    /// their ids (llama.cpp's `parse_special`); user-defined tokens always do.
    func encode(_ text: String, special: Bool) -> [Int32]
    /// Token ids of arbitrary bytes, as llama.cpp tokenizes them: invalid UTF-8 is not an
    /// error (byte-level BPE reads each bad byte as U+FFFD; SentencePiece splits by lead
    /// byte and falls back to byte tokens; unigram normalizes a bad byte to U+FFFD).
    func encode(bytes: [UInt8], special: Bool) -> [Int32]
    /// The bytes a token stands for (control tokens: nothing unless `special`).
    func bytes(of id: Int32, special: Bool) -> [UInt8]
}

extension Tokenizer {
    public func encode(_ text: String) -> [Int32] { encode(text, special: false) }
    public func encode(bytes: [UInt8]) -> [Int32] { encode(bytes: bytes, special: false) }
    public func bytes(of id: Int32) -> [UInt8] { bytes(of: id, special: false) }

    /// Whether llama.cpp prepends BOS when tokenizing for this model (`add_bos_token`;
    /// without it, SentencePiece BPE vocabularies default to yes, the others to no).
    public var addsBOS: Bool { files.addBOS ?? (files.model == .spm) }

    /// Whether llama.cpp appends EOS when tokenizing for this model (`add_eos_token`;
    /// without it, unigram vocabularies default to yes, the others to no).
    public var addsEOS: Bool { files.addEOS ?? (files.model == .ugm) }

    /// The text of `ids` (bytes that are not UTF-8 become U+FFFD).
    public func decode(_ ids: [Int32], special: Bool = false) -> String {
        String(decoding: ids.flatMap { bytes(of: $0, special: special) }, as: UTF8.self)
    }
}

/// Builds the tokenizer a model carries.
public enum Tokenizers {
    /// The tokenizer for `files`, by vocabulary kind.
    public static func make(_ files: TokenizerFiles) throws -> any Tokenizer {
        switch files.model {
        case .bpe: return try BPETokenizer(files)
        case .spm, .ugm: return try SentencePieceTokenizer(files)
        }
    }

    /// The tokenizer a model carries: GGUF `tokenizer.ggml.*` fields, or `tokenizer.json`
    /// beside HF safetensors (or in the directory given). Errors name the model path.
    public static func forModel(path: String) throws -> any Tokenizer {
        let files: TokenizerFiles?
        do {
            if try FileSystem.kind(of: path) == .directory {
                files = try TokenizerFiles(hfDirectory: path)
            } else if path.hasSuffix(".gguf") {
                files = try TokenizerFiles(gguf: openCheckpoint(path: path).metadata)
            } else {
                files = try TokenizerFiles(hfDirectory: FileSystem.checkpointDirectory(path))
            }
            guard let files else { throw CheckpointError.unsupported(path: path, reason: "it carries no tokenizer") }
            return try make(files)
        } catch let e as TokenizerFiles.Unsupported {
            throw CheckpointError.unsupported(path: path, reason: e.description)
        }
    }
}

/// UTF-8 as llama.cpp's unicode.cpp reads and writes it, invalid input included.
enum LlamaUTF8 {
    /// `unicode_len_utf8`: the sequence length a lead byte announces, from its top four bits
    /// (continuation bytes count as 1, F8…FF as 4).
    static func length(lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// `unicode_cpt_from_utf8`: the code point at `i` and its length, or nil where llama.cpp
    /// throws (a continuation byte first, F8…FF, or missing continuation bytes). Overlong
    /// forms, surrogates and values above U+10FFFF are not checked.
    static func decode(_ b: [UInt8], at i: Int) -> (UInt32, Int)? {
        let c = b[i]
        func cont(_ k: Int) -> UInt32? { i + k < b.count && b[i + k] & 0xC0 == 0x80 ? UInt32(b[i + k] & 0x3F) : nil }
        if c & 0x80 == 0 { return (UInt32(c), 1) }
        if c & 0x40 == 0 { return nil }
        if c & 0x20 == 0 {
            guard let c1 = cont(1) else { return nil }
            return (UInt32(c & 0x1F) << 6 | c1, 2)
        }
        if c & 0x10 == 0 {
            guard let c1 = cont(1), let c2 = cont(2) else { return nil }
            return (UInt32(c & 0x0F) << 12 | c1 << 6 | c2, 3)
        }
        if c & 0x08 == 0 {
            guard let c1 = cont(1), let c2 = cont(2), let c3 = cont(3) else { return nil }
            return (UInt32(c & 0x07) << 18 | c1 << 12 | c2 << 6 | c3, 4)
        }
        return nil
    }

    /// `unicode_cpts_from_utf8`: where a sequence is invalid, that one byte becomes U+FFFD
    /// and decoding goes on at the next byte. Code points above U+10FFFF (F4 90 80 80 and
    /// up) become U+FFFD too; llama.cpp's byte-level BPE aborts on them instead
    /// (`unicode_cpt_to_utf8` throws an uncaught std::invalid_argument).
    static func codePoints(_ b: [UInt8]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if case let (cpt, len)? = decode(b, at: i) {
                out.append(cpt > 0x10FFFF ? 0xFFFD : cpt)
                i += len
            } else {
                out.append(0xFFFD)
                i += 1
            }
        }
        return out
    }

    /// `unicode_cpt_to_utf8` (surrogates are written in three bytes, as they came).
    static func encode(_ cpts: ArraySlice<UInt32>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(cpts.count)
        for c in cpts {
            switch c {
            case 0..<0x80: out.append(UInt8(c))
            case 0x80..<0x800: out += [UInt8(0xC0 | c >> 6), UInt8(0x80 | c & 0x3F)]
            case 0x800..<0x10000: out += [UInt8(0xE0 | c >> 12), UInt8(0x80 | c >> 6 & 0x3F), UInt8(0x80 | c & 0x3F)]
            default: out += [UInt8(0xF0 | c >> 18), UInt8(0x80 | c >> 12 & 0x3F), UInt8(0x80 | c >> 6 & 0x3F), UInt8(0x80 | c & 0x3F)]
            }
        }
        return out
    }
}
