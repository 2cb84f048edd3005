import Basics
/// A metadata value from either format: GGUF key/values keep their exact stored type
/// (so a rewrite can reproduce them), JSON-derived values (safetensors headers, index
/// files) use the 64-bit and object cases.
public indirect enum MetadataValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double)
    case bool(Bool)
    case string(String)
    case array(MetadataArray)
    case object([MetadataEntry])
    case null

    /// The GGUF value type that stores this value; nil for JSON-only values.
    public var ggufType: GGUFValueType? {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        case .object, .null: return nil
        }
    }

    /// The GGUF name of the stored type (`uint32`, `string`, `array`, …; `object`, `null`).
    public var typeName: String {
        if let t = ggufType { return t.name }
        if case .object = self { return "object" }
        return "null"
    }

    /// The value as an integer, if it is one that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(exactly: v)
        case let .float64(v): return Int(exactly: v)
        default: return nil
        }
    }

    /// The value as a floating-point number, if it is numeric.
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: MetadataArray? {
        if case let .array(a) = self { return a }
        return nil
    }
}

/// One key/value pair, in file order.
public struct MetadataEntry: Sendable, Equatable {
    public let key: String
    public let value: MetadataValue
    public init(key: String, value: MetadataValue) {
        self.key = key
        self.value = value
    }
}

extension Array where Element == MetadataEntry {
    /// The value of the first entry named `key`.
    public subscript(key: String) -> MetadataValue? {
        first { $0.key == key }?.value
    }
}

/// An array-valued metadata entry. GGUF arrays (a 262k-entry vocabulary) are not
/// decoded when the file is opened: they stay a typed byte range in the mapped file
/// and are decoded only when asked.
public struct MetadataArray: Sendable, Equatable {
    enum Storage: Sendable, Equatable {
        case values([MetadataValue])
        case gguf(GGUFArrayRef)
    }

    let storage: Storage
    /// The element type's name (`string`, `int32`, `array` for nested arrays, …).
    public let elementType: String
    public let count: Int

    public init(values: [MetadataValue], elementType: String) {
        self.storage = .values(values)
        self.elementType = elementType
        self.count = values.count
    }

    init(gguf ref: GGUFArrayRef) {
        self.storage = .gguf(ref)
        self.elementType = ref.elementType.name
        self.count = ref.count
    }

    /// Decodes every element. The file was validated when opened, so this cannot fail
    /// for GGUF arrays; it allocates one value per element.
    public func values() -> [MetadataValue] {
        switch storage {
        case let .values(v): return v
        case let .gguf(ref): return ref.decodeAll()
        }
    }

    /// Decodes a string array without building `MetadataValue`s (vocabularies).
    public func strings() -> [String]? {
        switch storage {
        case let .values(v):
            var out: [String] = []
            out.reserveCapacity(v.count)
            for e in v { guard let s = e.stringValue else { return nil }; out.append(s) }
            return out
        case let .gguf(ref):
            return ref.decodeStrings()
        }
    }

    /// The largest element of an integer array, read without decoding the array into
    /// values (a per-layer list can be long in a hostile file); nil for other types.
    public func maxInteger() -> Int? {
        switch storage {
        case let .values(v):
            return v.compactMap(\.intValue).max()
        case let .gguf(ref):
            return ref.maxInteger()
        }
    }

    public static func == (a: MetadataArray, b: MetadataArray) -> Bool {
        a.elementType == b.elementType && a.count == b.count && a.values() == b.values()
    }
}
