/// Byte-level BPE tokenization as llama.cpp does it for GGUF `gpt2` vocabularies: the
/// pre-tokenizer splits text into words (per `tokenizer.ggml.pre`), each word's UTF-8
/// bytes are mapped to GPT-2's printable byte alphabet, and merges are applied lowest
/// rank first (leftmost on ties). Ids match llama.cpp's `tokenize(text, add_bos=false,
/// special=false)`: control tokens written in the text are plain text; user-defined
/// vocabulary entries are matched first.
public struct BPETokenizer: Tokenizer {
    public let files: TokenizerFiles
    private let ids: [String: Int32]
    private let ranks: [String: Int]
    private let byteSymbols: [String]
    private let userDefined: [(String, Int32)]
    /// User-defined and control tokens, longest first: what `special: true` matches.
    private let specials: [(String, Int32)]
    private let byteValues: [Character: UInt8]

    public init(_ files: TokenizerFiles) throws {
        guard files.model == .bpe else {
            throw TokenizerFiles.Unsupported(description: "a '\(files.model.rawValue)' vocabulary is SentencePiece, not byte-level BPE")
        }
        guard ["gpt-2", "gpt2", "default", "smollm", "starcoder", "refact", "llama-bpe", "qwen2", "tekken"].contains(files.pre) else {
            throw TokenizerFiles.Unsupported(description: "pre-tokenizer '\(files.pre)' is not implemented in the engine yet")
        }
        self.files = files
        var ids: [String: Int32] = [:]
        for (i, t) in files.tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids
        var ranks: [String: Int] = [:]
        for (i, m) in files.merges.enumerated() where ranks[m] == nil { ranks[m] = i }
        self.ranks = ranks
        byteSymbols = Self.byteAlphabet()
        userDefined = files.types.enumerated().filter { $0.element == .userDefined }
            .map { (files.tokens[$0.offset], Int32($0.offset)) }
            .sorted { $0.0.utf8.count > $1.0.utf8.count }
        specials = files.types.enumerated().filter { $0.element == .userDefined || $0.element == .control }
            .map { (files.tokens[$0.offset], Int32($0.offset)) }
            .sorted { $0.0.utf8.count > $1.0.utf8.count }
        var byteValues: [Character: UInt8] = [:]
        for (b, sym) in byteSymbols.enumerated() { byteValues[Character(sym)] = UInt8(b) }
        self.byteValues = byteValues
    }

    /// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for
    /// code points from U+0100 on, in byte order.
    static func byteAlphabet() -> [String] {
        var out = [String](repeating: "", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            let scalar = printable ? UInt32(b) : { defer { next += 1 }; return next }()
            out[b] = String(Character(Unicode.Scalar(scalar)!))
        }
        return out
    }

    /// Token ids of `text`. With `special`, control tokens written in the text (`<|im_start|>`,
    /// `<bos>`, …) become their ids, as llama.cpp's `parse_special`; user-defined tokens always do.
    public func encode(_ text: String, special: Bool = false) -> [Int32] {
        encode(bytes: Array(text.utf8), special: special)
    }

    /// Token ids of arbitrary bytes. As llama.cpp, the bytes are decoded to code points first
    /// (each byte of an invalid sequence becomes U+FFFD: `LlamaUTF8.codePoints`), then pre-tokenized.
    public func encode(bytes: [UInt8], special: Bool = false) -> [Int32] {
        var out: [Int32] = []
        for fragment in splitUserDefined(bytes, special ? specials : userDefined) {
            switch fragment {
            case let .token(id): out.append(id)
            case let .text(t):
                let cpts = LlamaUTF8.codePoints(t)
                // Surrogates get through llama.cpp's decoder and class as \p{C}, as U+FFFF does here.
                let scalars = cpts.map { Unicode.Scalar($0) ?? "\u{FFFF}" }
                for word in preTokenize(scalars) { encodeWord(LlamaUTF8.encode(cpts[word.indices]), into: &out) }
            }
        }
        return out
    }

    enum Fragment { case text([UInt8]), token(Int32) }

    private func splitUserDefined(_ text: [UInt8], _ matched: [(String, Int32)]) -> [Fragment] {
        var fragments: [Fragment] = [.text(text)]
        for (content, id) in matched where !content.isEmpty {
            let needle = Array(content.utf8)
            var next: [Fragment] = []
            for f in fragments {
                guard case let .text(hay) = f else { next.append(f); continue }
                var start = 0, i = 0
                while i + needle.count <= hay.count {
                    if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle {
                        if i > start { next.append(.text(Array(hay[start..<i]))) }
                        next.append(.token(id))
                        i += needle.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < hay.count { next.append(.text(Array(hay[start...]))) }
            }
            fragments = next
        }
        return fragments
    }

    /// The bytes a token stands for: byte-level symbols mapped back to bytes; user-defined
    /// tokens as written; control tokens as nothing unless `special`.
    public func bytes(of id: Int32, special: Bool = false) -> [UInt8] {
        guard id >= 0, Int(id) < files.tokens.count else { return [] }
        let text = files.tokens[Int(id)]
        switch files.types[Int(id)] {
        case .control: return special ? Array(text.utf8) : []
        case .userDefined: return Array(text.utf8)
        default:
            var out: [UInt8] = []
            for ch in text {
                if let b = byteValues[ch] { out.append(b) } else { out += Array(String(ch).utf8) }
            }
            return out
        }
    }

    // MARK: pre-tokenizer

    struct Flags {
        let letter, number, whitespace, valid: Bool
    }

    static func flags(_ s: Unicode.Scalar?) -> Flags {
        guard let s else { return Flags(letter: false, number: false, whitespace: false, valid: false) }
        let letter: Bool, number: Bool
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            letter = true; number = false
        case .decimalNumber, .letterNumber, .otherNumber:
            letter = false; number = true
        default:
            letter = false; number = false
        }
        return Flags(letter: letter, number: number, whitespace: isWhitespace(s), valid: true)
    }

    /// The `\s` of llama.cpp's unicode tables.
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// Words of `text`: digits one by one first (smollm and kin), then GPT-2's rule
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    func preTokenize(_ cpts: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [Range<Int>] = [0..<cpts.count]
        if ["smollm", "starcoder", "refact"].contains(files.pre) {
            pieces = pieces.flatMap { r -> [Range<Int>] in
                var out: [Range<Int>] = []
                var start = r.lowerBound
                for i in r where Self.flags(cpts[i]).number {
                    if start < i { out.append(start..<i) }
                    out.append(i..<(i + 1))
                    start = i + 1
                }
                if start < r.upperBound { out.append(start..<r.upperBound) }
                return out
            }
        }
        var words: [ArraySlice<Unicode.Scalar>] = []
        switch files.pre {
        case "llama-bpe": for r in pieces { llama3Split(cpts, r, maxDigits: 3) { words.append(cpts[$0]) } }
        case "qwen2": for r in pieces { llama3Split(cpts, r, maxDigits: 1) { words.append(cpts[$0]) } }
        case "tekken": for r in pieces { tekkenSplit(cpts, r) { words.append(cpts[$0]) } }
        default: for r in pieces { gpt2Split(cpts, r) { words.append(cpts[$0]) } }
        }
        return words
    }

    /// The length of `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (2 or 3), or nil.
    static func contraction(_ c: [Unicode.Scalar], _ pos: Int, _ end: Int, ignoringCase: Bool) -> Int? {
        func at(_ i: Int) -> Unicode.Scalar? {
            guard i < end else { return nil }
            return ignoringCase ? c[i].properties.lowercaseMapping.unicodeScalars.first : c[i]
        }
        guard c[pos] == "'", let next = at(pos + 1) else { return nil }
        if "stmd".unicodeScalars.contains(next) { return 2 }
        if let nn = at(pos + 2), (next == "r" && nn == "e") || (next == "v" && nn == "e") || (next == "l" && nn == "l") { return 3 }
        return nil
    }

    private func gpt2Split(_ c: [Unicode.Scalar], _ range: Range<Int>, emit: (Range<Int>) -> Void) {
        let end = range.upperBound
        func at(_ i: Int) -> Unicode.Scalar? { i < end ? c[i] : nil }
        var start = range.lowerBound
        var pos = start
        func add(_ to: Int) {
            if to > start { emit(start..<to) }
            start = to
            pos = to
        }
        while pos < end {
            let cpt = c[pos]
            let flags = Self.flags(cpt)
            if let n = Self.contraction(c, pos, end, ignoringCase: false) { add(pos + n); continue }
            let space = cpt == " "
            var f2 = space ? Self.flags(at(pos + 1)) : flags
            if f2.letter {
                pos += space ? 1 : 0
                while f2.letter { pos += 1; f2 = Self.flags(at(pos)) }
                add(pos); continue
            }
            if f2.number {
                pos += space ? 1 : 0
                while f2.number { pos += 1; f2 = Self.flags(at(pos)) }
                add(pos); continue
            }
            if !(f2.whitespace || f2.letter || f2.number) && f2.valid {
                pos += space ? 1 : 0
                while !(f2.whitespace || f2.letter || f2.number) && f2.valid { pos += 1; f2 = Self.flags(at(pos)) }
                add(pos); continue
            }
            var spaces = 0
            while pos + spaces < end, Self.isWhitespace(c[pos + spaces]) { spaces += 1 }
            if spaces > 1 && pos + spaces < end {
                add(pos + spaces - 1); continue
            }
            if spaces > 0 { add(pos + spaces); continue }
            add(pos + 1)
        }
    }

    /// Llama 3's rule (Qwen2's with single digits):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    private func llama3Split(_ c: [Unicode.Scalar], _ range: Range<Int>, maxDigits: Int, emit: (Range<Int>) -> Void) {
        let end = range.upperBound
        func at(_ i: Int) -> Unicode.Scalar? { i < end ? c[i] : nil }
        func isNewline(_ s: Unicode.Scalar?) -> Bool { s == "\r" || s == "\n" }
        var start = range.lowerBound
        var pos = start
        func add(_ to: Int) {
            if to > start { emit(start..<to) }
            start = to
            pos = to
        }
        while pos < end {
            let cpt = c[pos]
            let flags = Self.flags(cpt)
            if let n = Self.contraction(c, pos, end, ignoringCase: true) { add(pos + n); continue }
            if !(isNewline(cpt) || flags.number), flags.letter || Self.flags(at(pos + 1)).letter {
                pos += 1
                while Self.flags(at(pos)).letter { pos += 1 }
                add(pos); continue
            }
            if flags.number {
                var run = 0
                while Self.flags(at(pos)).number {
                    pos += 1
                    run += 1
                    if run == maxDigits { add(pos); run = 0 }
                }
                add(pos); continue
            }
            let space = cpt == " "
            var f2 = space ? Self.flags(at(pos + 1)) : flags
            if !(f2.whitespace || f2.letter || f2.number) && flags.valid {
                pos += space ? 1 : 0
                while !(f2.whitespace || f2.letter || f2.number) && f2.valid { pos += 1; f2 = Self.flags(at(pos)) }
                while isNewline(at(pos)) { pos += 1 }
                add(pos); continue
            }
            add(Self.whitespaceMatchEnd(c, pos, end))
        }
    }

    /// Mistral-NeMo's Tekken rule as llama.cpp runs it (its regex with the case classes
    /// spelled as "a letter that is not a-z" and "a letter that is not A-Z"):
    /// `[^\r\n\p{L}\p{N}]?U*L+|[^\r\n\p{L}\p{N}]?U+L*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    private func tekkenSplit(_ c: [Unicode.Scalar], _ range: Range<Int>, emit: (Range<Int>) -> Void) {
        var pos = range.lowerBound
        while pos < range.upperBound {
            let e = Self.tekkenMatchEnd(c, pos, range.upperBound)
            emit(pos..<e)
            pos = e
        }
    }

    /// Where the Tekken rule's match at `pos` ends (always past `pos`).
    static func tekkenMatchEnd(_ c: [Unicode.Scalar], _ pos: Int, _ end: Int) -> Int {
        func at(_ i: Int) -> Unicode.Scalar? { i < end ? c[i] : nil }
        func isNewline(_ s: Unicode.Scalar?) -> Bool { s == "\r" || s == "\n" }
        func upper(_ i: Int) -> Bool { guard let s = at(i) else { return false }; return flags(s).letter && !("a"..."z").contains(s) }
        func lower(_ i: Int) -> Bool { guard let s = at(i) else { return false }; return flags(s).letter && !("A"..."Z").contains(s) }
        func lowerRun(_ from: Int) -> Int {
            var e = from
            while lower(e) { e += 1 }
            return e
        }
        let cpt = c[pos]
        let f = flags(cpt)
        // The two letter alternatives, after an optional non-letter, non-digit prefix.
        let first = !isNewline(cpt) && !f.letter && !f.number ? pos + 1 : pos
        var uppers = first
        while upper(uppers) { uppers += 1 }
        // U*L+: the longest run of U that a run of L follows (U* gives back a letter at a time).
        var k = uppers
        while k >= first && !lower(k) { k -= 1 }
        if k >= first { return lowerRun(k) }
        if uppers > first { return lowerRun(uppers) }  // U+L*
        if f.number { return pos + 1 }
        let space = cpt == " "
        var p = pos + (space ? 1 : 0)
        var f2 = flags(at(p))
        if !(f2.whitespace || f2.letter || f2.number) && f2.valid {
            while !(f2.whitespace || f2.letter || f2.number) && f2.valid { p += 1; f2 = flags(at(p)) }
            while isNewline(at(p)) || at(p) == "/" { p += 1 }
            return p
        }
        return whitespaceMatchEnd(c, pos, end)
    }

    /// Where `\s*[\r\n]+|\s+(?!\S)|\s+` matching at `pos` ends (the last three
    /// alternatives of the Llama 3 and Tekken rules), or `pos + 1` when none does.
    static func whitespaceMatchEnd(_ c: [Unicode.Scalar], _ pos: Int, _ end: Int) -> Int {
        var spaces = 0
        var lastNewlineEnd = 0
        while pos + spaces < end, isWhitespace(c[pos + spaces]) {
            if c[pos + spaces] == "\r" || c[pos + spaces] == "\n" { lastNewlineEnd = pos + spaces + 1 }
            spaces += 1
        }
        if lastNewlineEnd > 0 { return lastNewlineEnd }
        if spaces > 1 && pos + spaces < end { return pos + spaces - 1 }
        return pos + max(spaces, 1)
    }

    // MARK: BPE

    private func encodeWord(_ utf8: [UInt8], into out: inout [Int32]) {
        var symbols: [String] = []
        symbols.reserveCapacity(utf8.count)
        for b in utf8 { symbols.append(byteSymbols[Int(b)]) }
        if files.pre == "llama-bpe" || files.pre == "tekken", let id = ids[symbols.joined()] {
            // Llama 3 looks the whole word up before merging (ignore_merges).
            out.append(id)
            return
        }
        while symbols.count > 1 {
            var best = Int.max, at = -1
            for i in 0..<(symbols.count - 1) {
                if let r = ranks[symbols[i] + " " + symbols[i + 1]], r < best { best = r; at = i }
            }
            if at < 0 { break }
            symbols[at] += symbols[at + 1]
            symbols.remove(at: at + 1)
        }
        for s in symbols {
            if let id = ids[s] {
                out.append(id)
            } else {
                // Not in the vocabulary: its bytes one by one, as llama.cpp falls back.
                for ch in s { if let id = ids[String(ch)] { out.append(id) } }
            }
        }
    }
}
