/// SplitMix64: a small seeded generator for sampling and for random baselines, so runs
/// with the same seed repeat exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// SplitMix64's output function: a bijective 64-bit mix (also a seed deriver).
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    public mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// Uniform in 0..<n (0 when n ≤ 0), by modulo: the small bias is harmless for tests and sampling.
    public mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

    /// Fisher–Yates shuffle of `a` in place, from the last element down.
    public mutating func shuffle<T>(_ a: inout [T]) {
        for i in a.indices.reversed() where i > 0 { a.swapAt(i, Int(next() % UInt64(i + 1))) }
    }
}
