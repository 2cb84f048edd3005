/// Decodes `Decodable` types from a `JSONValue`, so configs can be `Codable` structs
/// without Foundation (whose static build cannot be linked here, and whose dynamic
/// load costs `ckpt inspect` several milliseconds of start-up).
public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try T(from: _Decoder(value: value, codingPath: []))
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decode(type, from: try JSONParser.parse(bytes))
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

private func pathText(_ path: [any CodingKey]) -> String {
    path.isEmpty ? "top level" : path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
}

private func mismatch(_ expected: String, _ value: JSONValue, _ path: [any CodingKey]) -> DecodingError {
    .typeMismatch(Any.self, .init(codingPath: path, debugDescription: "\(pathText(path)): expected \(expected), found \(jsonText(value))"))
}

private struct _Decoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let pairs = value.objectValue else { throw mismatch("an object", value, codingPath) }
        var dict: [String: JSONValue] = [:]
        for (k, v) in pairs { dict[k] = v }
        return KeyedDecodingContainer(Keyed<Key>(values: dict, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard let items = value.arrayValue else { throw mismatch("an array", value, codingPath) }
        return Unkeyed(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        Single(value: value, codingPath: codingPath)
    }
}

private func decodeScalar<T: Decodable>(_ type: T.Type, _ value: JSONValue, _ path: [any CodingKey]) throws -> T {
    func int<I: FixedWidthInteger>(_: I.Type) throws -> I {
        guard case let .number(text) = value else { throw mismatch("an integer", value, path) }
        if let v = I(text) { return v }
        // Accept integral values written as floats ("4096.0", "1e3"), as Python's json emits them.
        if let d = Double(text), let v = I(exactly: d) { return v }
        throw mismatch("an integer that fits \(I.self)", value, path)
    }
    switch type {
    case is String.Type:
        guard let s = value.stringValue else { throw mismatch("a string", value, path) }
        return s as! T
    case is Bool.Type:
        guard case let .bool(b) = value else { throw mismatch("true or false", value, path) }
        return b as! T
    case is Double.Type:
        guard let d = value.doubleValue else { throw mismatch("a number", value, path) }
        return d as! T
    case is Float.Type:
        guard let d = value.doubleValue else { throw mismatch("a number", value, path) }
        return Float(d) as! T
    case is Int.Type: return try int(Int.self) as! T
    case is Int64.Type: return try int(Int64.self) as! T
    case is Int32.Type: return try int(Int32.self) as! T
    case is UInt64.Type: return try int(UInt64.self) as! T
    case is UInt32.Type: return try int(UInt32.self) as! T
    default:
        return try T(from: _Decoder(value: value, codingPath: path))
    }
}

private struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let values: [String: JSONValue]
    let codingPath: [any CodingKey]
    var allKeys: [Key] { values.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { values[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSONValue {
        guard let v = values[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "\(pathText(codingPath)): missing key '\(key.stringValue)'"))
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { (values[key.stringValue] ?? .null) == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeScalar(type, try value(key), codingPath + [key])
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let v = values[key.stringValue], v != .null else { return nil }
        return try decodeScalar(type, v, codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try _Decoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try _Decoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { _Decoder(value: .object(values.map { ($0.key, $0.value) }), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { _Decoder(value: try value(key), codingPath: codingPath + [key]) }
}

private struct Unkeyed: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    private mutating func next() throws -> (JSONValue, [any CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "\(pathText(codingPath)): array has only \(items.count) elements"))
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], codingPath + [AnyKey(intValue: currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        if !isAtEnd && items[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, p) = try next()
        return try decodeScalar(type, v, p)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next()
        return try _Decoder(value: v, codingPath: p).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next()
        return try _Decoder(value: v, codingPath: p).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next()
        return _Decoder(value: v, codingPath: p)
    }
}

private struct Single: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]
    func decodeNil() -> Bool { value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeScalar(type, value, codingPath) }
}

extension DecodingError {
    /// The message without Swift's type dump: "rope_scaling.factor: expected a number, found \"x\"".
    public var readableDescription: String {
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c):
            return c.debugDescription
        @unknown default:
            return "\(self)"
        }
    }
}
