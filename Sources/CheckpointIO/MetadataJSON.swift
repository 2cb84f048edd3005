import Basics

// Metadata and JSON meet here: config.json values become metadata entries, and
// `inspect --json` writes metadata as JSON.

extension JSONValue {
    /// Converts to metadata: integers become int64/uint64, other numbers float64.
    public var metadataValue: MetadataValue {
        switch self {
        case let .object(pairs):
            return .object(pairs.map { MetadataEntry(key: $0.key, value: $0.value.metadataValue) })
        case let .array(items):
            let values = items.map(\.metadataValue)
            let types = Set(values.map(\.typeName))
            return .array(MetadataArray(values: values, elementType: types.count == 1 ? types.first! : "mixed"))
        case let .string(s): return .string(s)
        case let .number(text):
            if let i = Int64(text) { return .int64(i) }
            if let u = UInt64(text) { return .uint64(u) }
            return .float64(Double(text) ?? .nan)
        case let .bool(b): return .bool(b)
        case .null: return .null
        }
    }
}

extension JSONWriter {
    /// Writes a metadata value. Arrays longer than `arrayLimit` become
    /// `{"type": …, "count": …}` unless `full`.
    public mutating func metadata(_ value: MetadataValue, key: String? = nil, full: Bool, arrayLimit: Int = 64) {
        switch value {
        case let .uint8(v): int(Int(v), key: key)
        case let .int8(v): int(Int(v), key: key)
        case let .uint16(v): int(Int(v), key: key)
        case let .int16(v): int(Int(v), key: key)
        case let .uint32(v): int(Int(v), key: key)
        case let .int32(v): int(Int(v), key: key)
        case let .uint64(v): raw(String(v), key: key)
        case let .int64(v): raw(String(v), key: key)
        case let .float32(v): raw(Self.number(v), key: key)
        case let .float64(v): double(v, key: key)
        case let .bool(v): bool(v, key: key)
        case let .string(s): string(s, key: key)
        case .null: null(key: key)
        case let .object(entries):
            beginObject(key: key)
            for e in entries { metadata(e.value, key: e.key, full: full, arrayLimit: arrayLimit) }
            endObject()
        case let .array(a):
            if !full && a.count > arrayLimit {
                beginObject(key: key)
                string(a.elementType, key: "type")
                int(a.count, key: "count")
                endObject()
            } else {
                beginArray(key: key)
                for v in a.values() { metadata(v, full: full, arrayLimit: arrayLimit) }
                endArray()
            }
        }
    }
}
