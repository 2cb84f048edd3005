/// FNV-1a, 64-bit: a stable fingerprint of small canonical descriptions (a model's
/// config and tensor index, a vocabulary). Not for integrity of large data, not secure.
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    public mutating func add(_ bytes: some Sequence<UInt8>) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }

    public mutating func add(_ s: String) {
        add(s.utf8)
        add(CollectionOfOne(0))  // keeps "ab"+"c" apart from "a"+"bc"
    }

    /// 16 lowercase hex digits.
    public var hex: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
