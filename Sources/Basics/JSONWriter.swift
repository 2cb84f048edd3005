/// Builds JSON text (CLI output, config.json, index files). Keys are written in the order given; non-finite floats become
/// null (JSON has no NaN or infinity).
public struct JSONWriter {
    public private(set) var text = ""
    private var needsComma: [Bool] = [false]
    private let pretty: Bool
    private var depth: Int { needsComma.count - 1 }

    public init(pretty: Bool = false) { self.pretty = pretty }

    private mutating func separator() {
        if needsComma[needsComma.count - 1] { text += "," }
        needsComma[needsComma.count - 1] = true
        if pretty && depth > 0 { text += "\n" + String(repeating: "  ", count: depth) }
    }

    public mutating func beginObject(key: String? = nil) { open("{", key: key) }
    public mutating func endObject() { close("}") }
    public mutating func beginArray(key: String? = nil) { open("[", key: key) }
    public mutating func endArray() { close("]") }

    private mutating func open(_ bracket: String, key: String?) {
        if let key { self.key(key) } else if depth > 0 { separator() }
        text += bracket
        needsComma.append(false)
    }

    private mutating func close(_ bracket: String) {
        let had = needsComma.removeLast()
        if pretty && had { text += "\n" + String(repeating: "  ", count: depth) }
        text += bracket
    }

    private mutating func key(_ k: String) {
        separator()
        Self.appendString(k, to: &text)
        text += pretty ? ": " : ":"
    }

    /// Writes a raw JSON value (already valid JSON text).
    public mutating func raw(_ json: String, key: String? = nil) {
        if let key { self.key(key) } else { separator() }
        text += json
    }

    public mutating func string(_ s: String, key: String? = nil) {
        if let key { self.key(key) } else { separator() }
        Self.appendString(s, to: &text)
    }

    public mutating func int(_ v: Int, key: String? = nil) { raw(String(v), key: key) }

    /// Several keyed integers, then several keyed numbers, in the order given.
    public mutating func fields(ints: KeyValuePairs<String, Int> = [:], doubles: KeyValuePairs<String, Double> = [:]) {
        for (k, v) in ints { int(v, key: k) }
        for (k, v) in doubles { double(v, key: k) }
    }
    public mutating func bool(_ v: Bool, key: String? = nil) { raw(v ? "true" : "false", key: key) }
    public mutating func null(key: String? = nil) { raw("null", key: key) }
    public mutating func double(_ v: Double?, key: String? = nil) {
        guard let v, v.isFinite else { return raw("null", key: key) }
        raw(Self.number(v), key: key)
    }

    /// A number that stays a float literal when integral ("30.0", not "30"): readers with
    /// typed fields (transformers v5's configs) refuse an int where a float is declared.
    public mutating func real(_ v: Double, key: String? = nil) {
        guard v.isFinite else { return raw("null", key: key) }
        let s = Self.number(v)
        raw(s.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) ? s : s + ".0", key: key)
    }

    public static func number(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    public static func number(_ v: Float) -> String {
        guard v.isFinite else { return "null" }
        if v == v.rounded() && abs(v) < 1e7 { return String(Int64(v)) }
        return "\(v)"
    }

    public static func appendString(_ s: String, to out: inout String) {
        out += "\""
        var run = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": run += "\\\""
            case "\\": run += "\\\\"
            case "\n": run += "\\n"
            case "\r": run += "\\r"
            case "\t": run += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F:
                let h = String(u.value, radix: 16)
                run += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: run.unicodeScalars.append(u)
            }
        }
        out += run
        out += "\""
    }
}
