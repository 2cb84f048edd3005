/// A parsed JSON document. Objects keep their key order; numbers keep their source
/// text, so 64-bit offsets and sizes are read exactly (never through a `Double`).
public indirect enum JSONValue: Sendable, Equatable {
    case object([(key: String, value: JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        guard case let .object(pairs) = self else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    public var objectValue: [(key: String, value: JSONValue)]? {
        if case let .object(o) = self { return o }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// The value as a non-negative integer that fits in `Int`, or nil ("-0" is not one).
    public var nonNegativeInt: Int? {
        guard case let .number(text) = self, !text.hasPrefix("-"), let v = UInt64(text), let i = Int(exactly: v) else { return nil }
        return i
    }

    public var doubleValue: Double? {
        guard case let .number(text) = self else { return nil }
        return Double(text)
    }

}

/// Why a JSON text was rejected, with the byte offset where parsing stopped.
public struct JSONError: UserFacingError, Sendable {
    public let offset: Int
    public let reason: String
    public var description: String { "\(reason) at byte \(offset)" }
    public var exitCode: ExitCode { .dataError }
}

/// A strict RFC 8259 parser over borrowed bytes. Duplicate keys in one object are an
/// error (a checkpoint header with two entries for one tensor is ambiguous), as are
/// invalid UTF-8, lone surrogates, and nesting deeper than `maxDepth`.
public struct JSONParser {
    public static let maxDepth = 128

    private let bytes: UnsafeRawBufferPointer
    private var pos = 0

    private init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Parses a complete document; trailing non-space bytes are an error.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        var p = JSONParser(bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.pos != bytes.count { throw p.fail("unexpected data after the JSON value") }
        return v
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        do {
            return try bytes.withUnsafeBytes { raw in try parse(raw) }
        } catch let e as JSONError {
            throw e
        } catch {
            throw JSONError(offset: 0, reason: "\(error)")
        }
    }

    private func fail(_ reason: String) -> JSONError { JSONError(offset: pos, reason: reason) }

    private var peek: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private mutating func skipSpace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: StaticString) throws(JSONError) {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= bytes.count else { throw fail("truncated literal") }
        let lit = UnsafeRawBufferPointer(start: literal.utf8Start, count: n)
        for i in 0..<n where bytes[pos + i] != lit[i] { throw fail("invalid literal") }
        pos += n
    }

    private mutating func value(depth: Int) throws(JSONError) -> JSONValue {
        guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth) levels") }
        guard let c = peek else { throw fail("unexpected end of JSON") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail("unexpected character '\(printable(c))'")
        }
    }

    private func printable(_ c: UInt8) -> String {
        (0x20..<0x7F).contains(c) ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
    }

    private mutating func object(depth: Int) throws(JSONError) -> JSONValue {
        pos += 1
        var pairs: [(key: String, value: JSONValue)] = []
        var seen = Set<ExactName>()
        skipSpace()
        if peek == UInt8(ascii: "}") { pos += 1; return .object(pairs) }
        while true {
            skipSpace()
            guard peek == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyStart = pos
            let key = try string()
            if !seen.insert(ExactName(key)).inserted {
                throw JSONError(offset: keyStart, reason: "duplicate key \"\(key)\"")
            }
            skipSpace()
            guard peek == UInt8(ascii: ":") else { throw fail("expected ':' after key \"\(key)\"") }
            pos += 1
            skipSpace()
            let v = try value(depth: depth + 1)
            pairs.append((key, v))
            skipSpace()
            guard let c = peek else { throw fail("unexpected end of JSON inside an object") }
            pos += 1
            if c == UInt8(ascii: "}") { return .object(pairs) }
            guard c == UInt8(ascii: ",") else { pos -= 1; throw fail("expected ',' or '}' in an object") }
        }
    }

    private mutating func array(depth: Int) throws(JSONError) -> JSONValue {
        pos += 1
        var items: [JSONValue] = []
        skipSpace()
        if peek == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard let c = peek else { throw fail("unexpected end of JSON inside an array") }
            pos += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            guard c == UInt8(ascii: ",") else { pos -= 1; throw fail("expected ',' or ']' in an array") }
        }
    }

    private mutating func number() throws(JSONError) -> String {
        let start = pos
        if peek == UInt8(ascii: "-") { pos += 1 }
        guard let first = peek, (0x30...0x39).contains(first) else { throw fail("invalid number") }
        if first == 0x30 { pos += 1 } else { digits() }
        if peek == UInt8(ascii: ".") {
            pos += 1
            guard let d = peek, (0x30...0x39).contains(d) else { throw fail("invalid number: no digits after '.'") }
            digits()
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            pos += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { pos += 1 }
            guard let d = peek, (0x30...0x39).contains(d) else { throw fail("invalid number: no digits in exponent") }
            digits()
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    private mutating func digits() {
        while let d = peek, (0x30...0x39).contains(d) { pos += 1 }
    }

    private mutating func string() throws(JSONError) -> String {
        pos += 1
        let start = pos
        // Fast path: no escapes; validate the UTF-8 run in one go.
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
                guard let s = decodeUTF8(raw) else { throw JSONError(offset: start, reason: "string is not valid UTF-8") }
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in a string") }
            pos += 1
        }
        guard pos < bytes.count else { throw fail("unterminated string") }
        // Slow path with escapes.
        var out: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw JSONError(offset: start, reason: "string is not valid UTF-8")
                }
                return s
            }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); pos += 1; continue }
            pos += 1
            guard let e = peek else { throw fail("unterminated escape") }
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard pos + 1 < bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") else {
                        throw fail("lone high surrogate in \\u escape")
                    }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("lone low surrogate in \\u escape")
                }
                out.append(contentsOf: Array(String(Character(UnicodeScalar(scalar)!)).utf8))
            default:
                throw fail("invalid escape '\\\(printable(e))'")
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hex4() throws(JSONError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }
}
