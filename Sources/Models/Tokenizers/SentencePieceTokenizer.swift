/// SentencePiece tokenization as llama.cpp does it, for GGUF `llama` vocabularies (SPM:
/// Llama 2, Mistral, Gemma …) and `t5` vocabularies (UGM: unigram, T5 and kin). Ids match
/// llama.cpp's `tokenize(text, add_special=false, parse_special)`:
///
/// - Special tokens are split out of the text first (`tokenizer_st_partition`): user-defined
///   tokens always, control and unknown tokens only with `special`; longest token first,
///   each over every remaining piece of text, left to right.
/// - SPM, per piece of text: a space is prefixed when `add_space_prefix` (default on) and
///   the piece starts the input or follows a special token; spaces become U+2581; the bytes
///   are cut into symbols by the length each lead byte announces (so invalid UTF-8 makes
///   odd symbols, never an error); adjacent symbols whose concatenation is a token are
///   merged highest score first, leftmost on equal scores; a final symbol that is not a
///   token is written as its bytes' `<0xXX>` tokens.
/// - UGM, per piece of text: the precompiled normalizer (longest match in its double
///   array; invalid UTF-8 → U+FFFD per byte), spaces → U+2581 with the dummy prefix and
///   extra spaces removed as the file says, then the Viterbi best segmentation by summed
///   scores (user-defined tokens score 0; a character no token covers is UNK scored
///   10 below the lowest score, and runs of UNK collapse to one).
public struct SentencePieceTokenizer: Tokenizer {
    public let files: TokenizerFiles
    /// Token text bytes by id (empty texts become `[EMPTY_<id>]`, as llama.cpp loads them).
    private let texts: [[UInt8]]
    private let ids: [ArraySlice<UInt8>: Int32]
    private let scores: [Float]
    private let attrs: [Attr]
    /// The `<0xXX>` token of each byte (or the byte's own one-byte token), -1 if none.
    private let byteTokens: [Int32]
    /// Control, unknown and user-defined tokens, longest first.
    private let specials: [(text: [UInt8], id: Int32, onlyWithSpecial: Bool)]
    private let addSpacePrefix: Bool
    private let unknownID: Int32
    private let unigram: Unigram?

    /// llama.cpp's token attributes (`llama_token_attr`), as it derives them from the types.
    struct Attr: OptionSet, Sendable {
        let rawValue: UInt8
        static let normal = Attr(rawValue: 1), unknown = Attr(rawValue: 2), control = Attr(rawValue: 4)
        static let userDefined = Attr(rawValue: 8), unused = Attr(rawValue: 16), byte = Attr(rawValue: 32)
    }

    /// Texts llama.cpp makes control tokens whatever their stored type (end-of-generation and
    /// fill-in-the-middle markers, found by their text when a vocabulary is loaded).
    static let controlByText: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
        "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    ]

    static let escapedSpace: [UInt8] = [0xE2, 0x96, 0x81]

    public init(_ files: TokenizerFiles) throws {
        guard files.model == .spm || files.model == .ugm else {
            throw TokenizerFiles.Unsupported(description: "a '\(files.model.rawValue)' vocabulary is byte-level BPE, not SentencePiece")
        }
        self.files = files
        let count = files.tokens.count
        var texts: [[UInt8]] = []
        texts.reserveCapacity(count)
        var ids: [ArraySlice<UInt8>: Int32] = [:]
        ids.reserveCapacity(count)
        for (i, t) in files.tokens.enumerated() {
            let bytes = t.isEmpty ? Array("[EMPTY_\(i)]".utf8) : Array(t.utf8)
            texts.append(bytes)
            // llama.cpp refuses a vocabulary with duplicates; the first id is kept here.
            if ids[bytes[...]] == nil { ids[bytes[...]] = Int32(i) }
        }
        self.texts = texts
        self.ids = ids
        scores = files.scores.count == count ? files.scores : [Float](repeating: 0, count: count)
        var attrs: [Attr] = files.types.map { type in
            switch type {
            case .normal: return .normal
            case .unknown: return .unknown
            case .control: return .control
            case .userDefined: return .userDefined
            case .unused: return .unused
            case .byte: return .byte
            }
        }
        attrs += [Attr](repeating: .normal, count: max(0, count - attrs.count))
        // The tokenizer proper is built from the stored types, before llama.cpp's promotions.
        unigram = files.model == .ugm ? Unigram(files: files, texts: texts, attrs: attrs, scores: scores) : nil
        for (i, t) in files.tokens.enumerated() where Self.controlByText.contains(t) { attrs[i].insert(.control) }
        self.attrs = attrs
        var byteTokens = [Int32](repeating: -1, count: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            let name: [UInt8] = Array("<0x".utf8) + [hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
            byteTokens[b] = ids[name[...]] ?? ids[[UInt8(b)][...]] ?? -1
        }
        self.byteTokens = byteTokens
        specials = attrs.indices.filter { !attrs[$0].isDisjoint(with: [.control, .userDefined, .unknown]) }
            .sorted { texts[$0].count != texts[$1].count ? texts[$0].count > texts[$1].count : $0 < $1 }
            .map { (texts[$0], Int32($0), !attrs[$0].isDisjoint(with: [.control, .unknown])) }
        addSpacePrefix = files.addSpacePrefix ?? (files.model == .spm)
        unknownID = files.unknownID.map(Int32.init) ?? -1
    }

    public func encode(_ text: String, special: Bool = false) -> [Int32] {
        encode(bytes: Array(text.utf8), special: special)
    }

    public func encode(bytes: [UInt8], special: Bool = false) -> [Int32] {
        var out: [Int32] = []
        var previousSpecial = true
        for fragment in partition(bytes, special: special) {
            switch fragment {
            case let .token(id):
                out.append(id)
                previousSpecial = true
            case let .text(range):
                if let unigram {
                    unigram.encode(Array(bytes[range]), tokenizer: self, into: &out)
                } else {
                    var text: [UInt8] = []
                    text.reserveCapacity(range.count + 8)
                    if addSpacePrefix && previousSpecial { text += Self.escapedSpace }
                    for b in bytes[range] {
                        if b == 0x20 { text += Self.escapedSpace } else { text.append(b) }
                    }
                    encodeSPM(text, into: &out)
                }
                previousSpecial = false
            }
        }
        return out
    }

    /// The bytes a token stands for, as llama.cpp's `token_to_piece`: U+2581 → space in
    /// normal tokens, `<0xXX>` → that byte, user-defined tokens as written, control and
    /// unknown tokens as written only with `special`, unused tokens nothing.
    public func bytes(of id: Int32, special: Bool = false) -> [UInt8] {
        guard id >= 0, Int(id) < texts.count else { return [] }
        let i = Int(id), attr = attrs[i], text = texts[i]
        if !attr.isDisjoint(with: [.control, .unknown]) { return special ? text : [] }
        if attr.contains(.userDefined) { return text }
        if attr.contains(.normal) {
            var out: [UInt8] = []
            out.reserveCapacity(text.count)
            var j = 0
            while j < text.count {
                if j + 2 < text.count, text[j] == 0xE2, text[j + 1] == 0x96, text[j + 2] == 0x81 {
                    out.append(0x20)
                    j += 3
                } else {
                    out.append(text[j])
                    j += 1
                }
            }
            return out
        }
        if attr.contains(.byte) {
            // strtol of the two characters after "<0x"
            var value = 0
            for c in text.dropFirst(3).prefix(2) {
                guard let d = Int(String(UnicodeScalar(c)), radix: 16) else { break }
                value = value * 16 + d
            }
            return [UInt8(truncatingIfNeeded: value)]
        }
        return []
    }

    // MARK: special tokens

    enum Fragment { case text(Range<Int>), token(Int32) }

    /// llama.cpp's `tokenizer_st_partition` over byte ranges of the input.
    private func partition(_ bytes: [UInt8], special: Bool) -> [Fragment] {
        var fragments: [Fragment] = bytes.isEmpty ? [] : [.text(0..<bytes.count)]
        for (needle, id, onlyWithSpecial) in specials where !(onlyWithSpecial && !special) && !needle.isEmpty {
            var next: [Fragment] = []
            next.reserveCapacity(fragments.count)
            for f in fragments {
                guard case let .text(range) = f else { next.append(f); continue }
                var start = range.lowerBound, i = range.lowerBound
                while i + needle.count <= range.upperBound {
                    if bytes[i] == needle[0] && bytes[i..<(i + needle.count)].elementsEqual(needle) {
                        if i > start { next.append(.text(start..<i)) }
                        next.append(.token(id))
                        i += needle.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < range.upperBound { next.append(.text(start..<range.upperBound)) }
            }
            fragments = next
        }
        return fragments
    }

    // MARK: SPM

    /// A candidate merge; the queue serves the highest score first, then the leftmost.
    private struct Bigram {
        let score: Float
        let left: Int
        let right: Int
        let size: Int

        func precedes(_ o: Bigram) -> Bool { score > o.score || (score == o.score && left < o.left) }
    }

    /// llama.cpp's `llm_tokenizer_spm_session::tokenize` on already escaped text.
    private func encodeSPM(_ text: [UInt8], into out: inout [Int32]) {
        guard !text.isEmpty else { return }
        var start: [Int] = [], length: [Int] = [], prev: [Int] = [], next: [Int] = []
        var offset = 0
        while offset < text.count {
            let n = min(LlamaUTF8.length(lead: text[offset]), text.count - offset)
            prev.append(start.count - 1)
            start.append(offset)
            length.append(n)
            offset += n
            next.append(offset == text.count ? -1 : start.count)
        }
        var heap: [Bigram] = []
        heap.reserveCapacity(start.count)
        func push(_ b: Bigram) {
            heap.append(b)
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard heap[i].precedes(heap[parent]) else { break }
                heap.swapAt(i, parent)
                i = parent
            }
        }
        func pop() -> Bigram {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var best = i
                    if l < heap.count && heap[l].precedes(heap[best]) { best = l }
                    if r < heap.count && heap[r].precedes(heap[best]) { best = r }
                    if best == i { break }
                    heap.swapAt(i, best)
                    i = best
                }
            }
            return top
        }
        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let size = length[left] + length[right]
            guard let id = ids[text[start[left]..<(start[left] + size)]] else { return }
            push(Bigram(score: scores[Int(id)], left: left, right: right, size: size))
        }
        for i in 1..<start.count { tryAdd(i - 1, i) }
        while !heap.isEmpty {
            let b = pop()
            // Skip merges made stale by an earlier one.
            guard length[b.left] > 0, length[b.right] > 0, length[b.left] + length[b.right] == b.size else { continue }
            length[b.left] += length[b.right]
            length[b.right] = 0
            next[b.left] = next[b.right]
            if next[b.right] >= 0 { prev[next[b.right]] = b.left }
            tryAdd(prev[b.left], b.left)
            tryAdd(b.left, next[b.left])
        }
        var i = 0
        while i != -1 {
            let piece = text[start[i]..<(start[i] + length[i])]
            if let id = ids[piece] {
                out.append(id)
            } else {
                // Byte fallback (llama.cpp throws where the vocabulary has no token for a byte;
                // the unknown token stands in here).
                for b in piece { out.append(byteTokens[Int(b)] >= 0 ? byteTokens[Int(b)] : unknownID) }
            }
            i = next[i]
        }
    }

    // MARK: UGM

    /// llama.cpp's `llm_tokenizer_ugm` and its session.
    struct Unigram: Sendable {
        /// Normal, user-defined and unused tokens: what the segmentation may use.
        let matchable: [ArraySlice<UInt8>: Int32]
        let maxLength: Int
        /// Every prefix of every user-defined token (llama.cpp walks a trie of them).
        let userDefinedPrefixes: Set<ArraySlice<UInt8>>
        let unknownScore: Float
        let xcda: [UInt32]
        let replacements: [UInt8]
        let addSpacePrefix: Bool
        let removeExtraWhitespaces: Bool

        init(files: TokenizerFiles, texts: [[UInt8]], attrs: [Attr], scores: [Float]) {
            var matchable: [ArraySlice<UInt8>: Int32] = [:]
            var prefixes = Set<ArraySlice<UInt8>>()
            var maxLength = 0
            var minScore = Float.greatestFiniteMagnitude
            for (i, a) in attrs.enumerated() {
                if a.contains(.normal) { minScore = min(minScore, scores[i]) }
                if !a.isDisjoint(with: [.normal, .userDefined, .unused]) {
                    if matchable[texts[i][...]] == nil { matchable[texts[i][...]] = Int32(i) }
                    maxLength = max(maxLength, texts[i].count)
                }
                if a.contains(.userDefined) {
                    for n in texts[i].indices { prefixes.insert(texts[i][0...n]) }
                }
            }
            self.matchable = matchable
            self.maxLength = maxLength
            userDefinedPrefixes = prefixes
            unknownScore = minScore - 10
            // The charsmap: a 4-byte length, that many bytes of double-array entries, then
            // NUL-terminated replacement strings.
            let map = files.precompiledCharsmap
            var xcda: [UInt32] = []
            var replacements: [UInt8] = []
            func word(_ o: Int) -> UInt32 {
                var v: UInt32 = 0
                for k in (0..<4).reversed() { v = v << 8 | UInt32(map[o + k]) }
                return v
            }
            if map.count >= 4 {
                let size = Int(word(0))
                if size + 4 < map.count {
                    xcda = stride(from: 4, to: 4 + size - size % 4, by: 4).map(word)
                    replacements = Array(map[(4 + size)...])
                }
            }
            self.xcda = xcda
            self.replacements = replacements
            addSpacePrefix = files.addSpacePrefix ?? false
            removeExtraWhitespaces = files.removeExtraWhitespaces ?? false
        }

        func encode(_ input: [UInt8], tokenizer t: SentencePieceTokenizer, into out: inout [Int32]) {
            let text = normalize(input)
            let n = text.count
            guard n > 0 else { return }
            let unknown = t.unknownID
            var bestID = [Int32](repeating: unknown, count: n + 1)
            var bestFrom = [Int](repeating: 0, count: n + 1)
            var bestScore = [Double](repeating: -Double.greatestFiniteMagnitude, count: n + 1)
            bestScore[0] = 0
            var pos = 0
            while pos < n {
                let units = min(LlamaUTF8.length(lead: text[pos]), n - pos)
                var wholeCharacterFound = false
                let current = bestScore[pos]
                var len = 1
                while len <= min(maxLength, n - pos) {
                    if let id = matchable[text[pos..<(pos + len)]] {
                        if len == units { wholeCharacterFound = true }
                        // User-defined tokens score 0, above every log-probability.
                        let score = current + (t.attrs[Int(id)].contains(.userDefined) ? 0 : Double(t.scores[Int(id)]))
                        if score > bestScore[pos + len] {
                            bestScore[pos + len] = score
                            bestID[pos + len] = id
                            bestFrom[pos + len] = pos
                        }
                    }
                    len += 1
                }
                if !wholeCharacterFound {
                    let score = current + Double(unknownScore)
                    if score > bestScore[pos + units] {
                        bestScore[pos + units] = score
                        bestID[pos + units] = unknown
                        bestFrom[pos + units] = pos
                    }
                }
                pos += units
            }
            var reversed: [Int32] = []
            var at = n
            var previousUnknown = false
            while true {
                let isUnknown = bestID[at] == unknown
                if !(previousUnknown && isUnknown) { reversed.append(bestID[at]) }
                if bestFrom[at] == 0 { break }
                previousUnknown = isUnknown
                at = bestFrom[at]
            }
            out += reversed.reversed()
        }

        /// llama.cpp's `normalize`: the charsmap, then spaces → U+2581 (a dummy prefix
        /// before the first non-space with `add_space_prefix`; with `remove_extra_whitespaces`
        /// one before every run of non-spaces and none for the spaces themselves).
        func normalize(_ input: [UInt8]) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(input.count * 3)
            let space = SentencePieceTokenizer.escapedSpace
            var spacePrepended = false
            var inNonSpace = false
            var offset = 0
            while offset < input.count {
                let (piece, consumed) = normalizePrefix(input, offset)
                for c in piece {
                    if c != 0x20 {
                        if !inNonSpace {
                            inNonSpace = true
                            if (addSpacePrefix && !spacePrepended) || removeExtraWhitespaces {
                                out += space
                                spacePrepended = true
                            }
                        }
                        out.append(c)
                    } else {
                        inNonSpace = false
                        if !removeExtraWhitespaces { out += space }
                    }
                }
                offset += consumed
            }
            return out
        }

        /// llama.cpp's `normalize_prefix`: the normalized form of the input at `offset` and
        /// how many input bytes it stands for.
        func normalizePrefix(_ input: [UInt8], _ offset: Int) -> (ArraySlice<UInt8>, Int) {
            // A stretch that follows a path of the user-defined tokens' trie stays as it is.
            var userLength = 0
            while offset + userLength < input.count, userDefinedPrefixes.contains(input[offset...(offset + userLength)]) {
                userLength += 1
            }
            if userLength > 0 { return (input[offset..<(offset + userLength)], userLength) }
            if !xcda.isEmpty {
                func node(_ i: UInt32) -> UInt32? { Int(i) < xcda.count ? xcda[Int(i)] : nil }
                func base(_ p: UInt32) -> UInt32 { (p >> 10) << ((p & (1 << 9)) >> 6) }
                var longestLength = 0
                var longestOffset = 0
                if let root = node(0) {
                    var index = base(root)
                    var p = offset
                    while p < input.count {
                        let c = input[p]
                        if c == 0 { break }
                        index ^= UInt32(c)
                        guard let packed = node(index), packed & ((1 << 31) | 0xFF) == UInt32(c) else { break }
                        let leaf = (packed >> 8) & 1 == 1
                        index ^= base(packed)
                        if leaf {
                            guard let valueNode = node(index) else { break }
                            longestLength = p - offset + 1
                            longestOffset = Int(valueNode & ((1 << 31) - 1))
                        }
                        p += 1
                    }
                }
                if longestLength > 0, longestOffset < replacements.count,
                   let end = replacements[longestOffset...].firstIndex(of: 0) {
                    return (replacements[longestOffset..<end], longestLength)
                }
            }
            if case let (_, length)? = LlamaUTF8.decode(input, at: offset) {
                return (input[offset..<(offset + length)], length)
            }
            // Invalid UTF-8: one byte, normalized to U+FFFD.
            return ([0xEF, 0xBF, 0xBD][...], 1)
        }
    }
}
