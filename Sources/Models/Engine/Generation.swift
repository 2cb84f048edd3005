import Basics
import CKernels
import CheckpointIO
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// A chat prompt format, recognised from the model's Jinja `chat_template` the way
/// llama.cpp's `llm_chat_detect_template` does (by telltale markers), then applied by
/// fixed code: no template interpreter, and the same output llama.cpp gives.
public enum ChatFormat: String, Sendable, CaseIterable {
    case chatml, llama3, gemma, mistral

    public static func detect(_ template: String?) -> ChatFormat? {
        guard let t = template else { return nil }
        if t.contains("<|im_start|>") { return .chatml }
        if t.contains("<|start_header_id|>") && t.contains("<|end_header_id|>") { return .llama3 }
        if t.contains("<start_of_turn>") { return .gemma }
        if t.contains("[INST]") { return .mistral }
        return nil
    }

    /// One user turn and the opening of the assistant's, ready to tokenize with specials.
    public func prompt(user: String, system: String? = nil) -> String {
        switch self {
        case .chatml:
            return (system.map { "<|im_start|>system\n\($0)<|im_end|>\n" } ?? "") + "<|im_start|>user\n\(user)<|im_end|>\n<|im_start|>assistant\n"
        case .llama3:
            return (system.map { "<|start_header_id|>system<|end_header_id|>\n\n\($0)<|eot_id|>" } ?? "")
                + "<|start_header_id|>user<|end_header_id|>\n\n\(user)<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        case .gemma:
            // Gemma has no system role: llama.cpp prepends the system text to the first user turn.
            return "<start_of_turn>user\n\(system.map { $0 + "\n\n" } ?? "")\(user)<end_of_turn>\n<start_of_turn>model\n"
        case .mistral:
            return "[INST] \(system.map { $0 + "\n\n" } ?? "")\(user) [/INST]"
        }
    }
}

/// Picks the next token from a row of logits: greedy at temperature 0, otherwise top-k,
/// then top-p (nucleus), then a draw from the tempered softmax. Seeded, so runs repeat.
public struct Sampler: Sendable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    private var random: SplitMix64

    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 0.95, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.random = SplitMix64(seed: seed)
    }

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        if temperature <= 0 { return Int32(best) }
        let kept = Self.best(topK > 0 ? min(topK, logits.count) : logits.count, of: logits)
        let m = Double(logits[best])
        var probs = kept.map { exp((Double(logits[$0]) - m) / Double(temperature)) }
        let z = probs.reduce(0, +)
        probs = probs.map { $0 / z }
        var cut = probs.count, acc = 0.0
        for (i, p) in probs.enumerated() {
            acc += p
            if acc >= Double(topP) { cut = i + 1; break }
        }
        let total = probs.prefix(cut).reduce(0, +)
        var u = random.uniform() * total
        for (i, p) in probs.prefix(cut).enumerated() {
            u -= p
            if u <= 0 { return Int32(kept[kept.startIndex + i]) }
        }
        return Int32(kept[kept.startIndex + cut - 1])
    }

    /// The indices of the `k` largest logits, largest first, ties by index: a sort of the
    /// whole vocabulary's prefix, found in one pass that keeps a sorted list of k.
    static func best(_ k: Int, of logits: UnsafeBufferPointer<Float>) -> [Int] {
        guard k < logits.count / 4 else {
            var order = Array(0..<logits.count)
            order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            return Array(order.prefix(k))
        }
        var top: [Int] = []
        top.reserveCapacity(k + 1)
        for i in 0..<logits.count {
            let v = logits[i]
            if top.count == k, let last = top.last, v <= logits[last] { continue }
            // Insert after every kept logit ≥ v (earlier indices win ties).
            var at = top.count
            while at > 0 && logits[top[at - 1]] < v { at -= 1 }
            top.insert(i, at: at)
            if top.count > k { top.removeLast() }
        }
        return top
    }
}

/// Text generation with a KV cache: the prompt in one batch, then a token at a time.
public final class Generator {
    public let stream: LayerStream
    public let tokenizer: any Tokenizer
    public var sampler: Sampler
    /// Tokens that end generation: EOS and the end-of-turn markers of chat formats.
    public let stopTokens: Set<Int32>

    public init(stream: LayerStream, tokenizer: any Tokenizer, sampler: Sampler) {
        self.stream = stream
        self.tokenizer = tokenizer
        self.sampler = sampler
        var stops = Set<Int32>()
        if let e = tokenizer.files.eosID { stops.insert(Int32(e)) }
        let markers: Set<String> = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"]
        for (i, t) in tokenizer.files.tokens.enumerated() where tokenizer.files.types[i] == .control && markers.contains(t) {
            stops.insert(Int32(i))
        }
        stopTokens = stops
    }

    /// Generates up to `maxTokens` after `prompt`, calling `emit` with each token's bytes.
    /// Returns the generated ids and the seconds spent on the prompt and on generation.
    @discardableResult
    public func generate(prompt: [Int32], maxTokens: Int, emit: ([UInt8]) -> Void) throws -> (ids: [Int32], promptSeconds: Double, genSeconds: Double) {
        let capacity = min(stream.spec.contextLength, prompt.count + maxTokens)
        let cache = KVCache(spec: stream.spec, capacity: capacity)
        var next: Int32 = 0
        var sampler = self.sampler
        let t0 = monotonicSeconds()
        try stream.run([prompt], cache: cache, outputs: { _ in (prompt.count - 1)..<prompt.count }) { _, _, logits in
            next = sampler.sample(logits)
        }
        let t1 = monotonicSeconds()
        var out: [Int32] = []
        while out.count < maxTokens {
            if stopTokens.contains(next) { break }
            out.append(next)
            emit(tokenizer.bytes(of: next))
            if out.count == maxTokens || cache.count >= capacity { break }
            let pos = cache.count
            try stream.run([[next]], cache: cache, outputs: { _ in pos..<(pos + 1) }) { _, _, logits in
                next = sampler.sample(logits)
            }
        }
        self.sampler = sampler
        return (out, t1 - t0, monotonicSeconds() - t1)
    }
}
