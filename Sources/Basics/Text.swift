/// Byte-exact names and UTF-8 decoding, shared by the JSON parser and the format readers.

/// A name compared byte for byte. Swift's `String` equality is Unicode canonical
/// equivalence, which would call "é" and "e\u{301}" the same tensor; file formats
/// (and the reference readers) compare bytes.
package struct ExactName: Hashable {
    package let bytes: [UInt8]
    package init(_ s: String) { bytes = Array(s.utf8) }
}

/// Decodes UTF-8, or returns nil when the bytes are not valid UTF-8.
package func decodeUTF8(_ raw: UnsafeRawBufferPointer) -> String? {
    String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self)
}

/// Decodes UTF-8, replacing invalid sequences with U+FFFD.
package func decodeUTF8Lossy(_ raw: UnsafeRawBufferPointer) -> String {
    String(decoding: raw.bindMemory(to: UInt8.self), as: UTF8.self)
}

/// A JSON value as an error message shows it: scalars as written, containers by kind.
package func jsonText(_ v: JSONValue) -> String {
    switch v {
    case let .number(t): return t
    case let .string(s): return "\"\(s)\""
    case let .bool(b): return b ? "true" : "false"
    case .null: return "null"
    case .array: return "an array"
    case .object: return "an object"
    }
}
