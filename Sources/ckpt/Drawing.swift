import Basics
import CheckpointIO

/// A picture as a list of shapes, written as SVG or rendered to PNG: the plots
/// `importance show --plot` and `distill --plot` draw, in whichever the file name asks.
struct Drawing {
    struct Color: Equatable {
        var r, g, b: UInt8
        static let white = Color(r: 255, g: 255, b: 255)
        static let black = Color(r: 0, g: 0, b: 0)
        /// "#1f77b4".
        init(hex: String) {
            let v = UInt32(hex.dropFirst(), radix: 16) ?? 0
            self.init(r: UInt8(v >> 16 & 255), g: UInt8(v >> 8 & 255), b: UInt8(v & 255))
        }
        init(r: UInt8, g: UInt8, b: UInt8) { self.r = r; self.g = g; self.b = b }
        var svg: String { "rgb(\(r),\(g),\(b))" }
    }

    enum Anchor { case start, end }

    enum Shape {
        case rect(x: Double, y: Double, width: Double, height: Double, fill: Color?, stroke: Color?, title: String?)
        case line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: Color)
        case polyline([(Double, Double)], stroke: Color, width: Double)
        case circle(x: Double, y: Double, r: Double, fill: Color, title: String?)
        /// `y` is the baseline, as in SVG.
        case text(x: Double, y: Double, String, size: Double, anchor: Anchor, fill: Color)
    }

    let width: Int
    let height: Int
    var shapes: [Shape] = []

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        shapes.append(.rect(x: 0, y: 0, width: Double(width), height: Double(height), fill: .white, stroke: nil, title: nil))
    }

    mutating func text(_ x: Double, _ y: Double, _ s: String, size: Double = 11, anchor: Anchor = .start, fill: Color = .black) {
        shapes.append(.text(x: x, y: y, s, size: size, anchor: anchor, fill: fill))
    }

    /// Writes SVG or PNG, by the file name's extension.
    func write(to path: String) throws {
        try FileSystem.writeAtomically(path, path.lowercased().hasSuffix(".png") ? png() : Array(svg().utf8))
    }

    // MARK: SVG

    func svg() -> String {
        func n(_ v: Double) -> String { formatFixed(v, digits: 1) }
        func escaped(_ s: String) -> String {
            s.replacingAll("&", with: "&amp;").replacingAll("<", with: "&lt;").replacingAll(">", with: "&gt;")
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        for shape in shapes {
            switch shape {
            case let .rect(x, y, w, h, fill, stroke, title):
                s += "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(w))\" height=\"\(n(h))\" fill=\"\(fill?.svg ?? "none")\""
                if let stroke { s += " stroke=\"\(stroke.svg)\"" }
                s += title.map { "><title>\(escaped($0))</title></rect>\n" } ?? "/>\n"
            case let .line(x1, y1, x2, y2, stroke):
                s += "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(stroke.svg)\"/>\n"
            case let .polyline(points, stroke, w):
                s += "<polyline fill=\"none\" stroke=\"\(stroke.svg)\" stroke-width=\"\(n(w))\" points=\"\(points.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " "))\"/>\n"
            case let .circle(x, y, r, fill, title):
                s += "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(r))\" fill=\"\(fill.svg)\""
                s += title.map { "><title>\(escaped($0))</title></circle>\n" } ?? "/>\n"
            case let .text(x, y, text, size, anchor, fill):
                s += "<text x=\"\(n(x))\" y=\"\(n(y))\"\(size != 11 ? " font-size=\"\(n(size))\"" : "")\(anchor == .end ? " text-anchor=\"end\"" : "")"
                s += "\(fill != .black ? " fill=\"\(fill.svg)\"" : "")>\(escaped(text))</text>\n"
            }
        }
        return s + "</svg>\n"
    }

    // MARK: PNG

    /// The picture rasterised (no anti-aliasing; text in a 5 × 7 capitals font) as an RGB
    /// PNG whose image data is stored uncompressed in the zlib stream.
    func png() -> [UInt8] {
        var canvas = Canvas(width: width, height: height)
        for shape in shapes { canvas.draw(shape) }
        return PNG.encode(width: width, height: height, rgb: canvas.pixels)
    }
}

/// RGB pixels and the drawing of each shape into them.
private struct Canvas {
    let width: Int
    let height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 3)
    }

    mutating func set(_ x: Int, _ y: Int, _ c: Drawing.Color) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
    }

    mutating func fill(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Drawing.Color) {
        let a = max(0, Int(x0.rounded())), b = min(width, Int(x1.rounded())), top = max(0, Int(y0.rounded())), bottom = min(height, Int(y1.rounded()))
        guard a < b, top < bottom else { return }
        for y in top..<bottom { for x in a..<b { set(x, y, c) } }
    }

    mutating func disc(_ cx: Double, _ cy: Double, _ r: Double, _ c: Drawing.Color) {
        let r2 = r * r
        for y in Int((cy - r).rounded(.down))...Int((cy + r).rounded(.up)) {
            for x in Int((cx - r).rounded(.down))...Int((cx + r).rounded(.up)) {
                let dx = Double(x) + 0.5 - cx, dy = Double(y) + 0.5 - cy
                if dx * dx + dy * dy <= r2 { set(x, y, c) }
            }
        }
    }

    mutating func segment(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ w: Double, _ c: Drawing.Color) {
        let steps = max(1, Int((max(abs(x2 - x1), abs(y2 - y1)) * 2).rounded(.up)))
        for k in 0...steps {
            let t = Double(k) / Double(steps), x = x1 + (x2 - x1) * t, y = y1 + (y2 - y1) * t
            if w <= 1.2 { set(Int(x.rounded(.down)), Int(y.rounded(.down)), c) } else { disc(x, y, w / 2, c) }
        }
    }

    mutating func draw(_ shape: Drawing.Shape) {
        switch shape {
        case let .rect(x, y, w, h, fill, stroke, _):
            if let color = fill { self.fill(x, y, x + w, y + h, color) }
            if let stroke {
                segment(x, y, x + w, y, 1, stroke); segment(x, y + h, x + w, y + h, 1, stroke)
                segment(x, y, x, y + h, 1, stroke); segment(x + w, y, x + w, y + h, 1, stroke)
            }
        case let .line(x1, y1, x2, y2, stroke):
            segment(x1, y1, x2, y2, 1, stroke)
        case let .polyline(points, stroke, w):
            for (a, b) in zip(points, points.dropFirst()) { segment(a.0, a.1, b.0, b.1, w, stroke) }
        case let .circle(x, y, r, fill, _):
            disc(x, y, r, fill)
        case let .text(x, y, s, size, anchor, fill):
            let scale = size >= 14 ? 2 : 1
            let glyphs = s.unicodeScalars.map { Font5x7.glyph($0) }
            let advance = 6 * scale
            var left = Int(x.rounded())
            if anchor == .end { left -= glyphs.count * advance - scale }
            let top = Int(y.rounded()) - 7 * scale
            for (k, rows) in glyphs.enumerated() {
                for (ry, row) in rows.enumerated() {
                    for rx in 0..<5 where row & (0x10 >> rx) != 0 {
                        for sy in 0..<scale { for sx in 0..<scale { set(left + k * advance + rx * scale + sx, top + ry * scale + sy, fill) } }
                    }
                }
            }
        }
    }
}

/// A 5 × 7 bitmap font of capitals, digits and the punctuation the plots use; lower case
/// is drawn as capitals and anything else as '?'. Each glyph is 7 rows, bit 4 the left.
private enum Font5x7 {
    static func glyph(_ c: Unicode.Scalar) -> [UInt8] {
        var ch = Character(c)
        if ch.isLowercase, let up = ch.uppercased().first { ch = up }
        switch ch {
        case "−", "–": ch = "-"
        case "×": ch = "X"
        case "→": ch = ">"
        case "‖": ch = "|"
        case "²": ch = "2"
        default: break
        }
        return table[ch] ?? table["?"]!
    }

    private static let table: [Character: [UInt8]] = {
        let rows: [(Character, [String])] = [
            (" ", ["     ", "     ", "     ", "     ", "     ", "     ", "     "]),
            ("0", [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "]),
            ("1", ["  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "]),
            ("2", [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"]),
            ("3", ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "]),
            ("4", ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "]),
            ("5", ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "]),
            ("6", ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "]),
            ("7", ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "]),
            ("8", [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "]),
            ("9", [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "]),
            ("A", [" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"]),
            ("B", ["#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "]),
            ("C", [" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "]),
            ("D", ["###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  "]),
            ("E", ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"]),
            ("F", ["#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "]),
            ("G", [" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"]),
            ("H", ["#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"]),
            ("I", [" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "]),
            ("J", ["  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "]),
            ("K", ["#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"]),
            ("L", ["#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"]),
            ("M", ["#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"]),
            ("N", ["#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"]),
            ("O", [" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "]),
            ("P", ["#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "]),
            ("Q", [" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"]),
            ("R", ["#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"]),
            ("S", [" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "]),
            ("T", ["#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "]),
            ("U", ["#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "]),
            ("V", ["#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "]),
            ("W", ["#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "]),
            ("X", ["#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"]),
            ("Y", ["#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "]),
            ("Z", ["#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"]),
            (".", ["     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "]),
            (",", ["     ", "     ", "     ", "     ", " ##  ", "  #  ", " #   "]),
            (":", ["     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "]),
            (";", ["     ", " ##  ", " ##  ", "     ", " ##  ", "  #  ", " #   "]),
            ("-", ["     ", "     ", "     ", "#####", "     ", "     ", "     "]),
            ("+", ["     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "]),
            ("=", ["     ", "     ", "#####", "     ", "#####", "     ", "     "]),
            ("(", ["   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "]),
            (")", [" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "]),
            ("[", [" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "]),
            ("]", [" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "]),
            ("/", ["     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     "]),
            ("%", ["##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"]),
            ("_", ["     ", "     ", "     ", "     ", "     ", "     ", "#####"]),
            ("<", ["    #", "   # ", "  #  ", " #   ", "  #  ", "   # ", "    #"]),
            (">", ["#    ", " #   ", "  #  ", "   # ", "  #  ", " #   ", "#    "]),
            ("|", ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "]),
            ("'", ["  #  ", "  #  ", "     ", "     ", "     ", "     ", "     "]),
            ("!", ["  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "]),
            ("*", ["     ", "  #  ", "# # #", " ### ", "# # #", "  #  ", "     "]),
            ("#", [" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "]),
            ("?", [" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "]),
        ]
        var t: [Character: [UInt8]] = [:]
        for (c, glyph) in rows {
            t[c] = glyph.map { row in row.unicodeScalars.enumerated().reduce(UInt8(0)) { $0 | ($1.element == "#" ? UInt8(0x10 >> $1.offset) : 0) } }
        }
        return t
    }()
}

/// PNG writing: RGB, 8 bits per channel, each row with filter 0, the zlib stream made of
/// stored deflate blocks (plots are small; no compressor is needed to be correct).
enum PNG {
    static func encode(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (1 + width * 3))
        for y in 0..<height {
            raw.append(0)
            raw += rgb[(y * width * 3)..<((y + 1) * width * 3)]
        }
        var z: [UInt8] = [0x78, 0x01]
        var at = 0
        repeat {
            let n = min(65535, raw.count - at)
            z.append(at + n == raw.count ? 1 : 0)
            z += [UInt8(n & 255), UInt8(n >> 8), UInt8(~n & 255), UInt8((~n >> 8) & 255)]
            z += raw[at..<(at + n)]
            at += n
        } while at < raw.count
        z += bigEndian(adler32(raw))
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, 2, 0, 0, 0])
        out += chunk("IDAT", z)
        out += chunk("IEND", [])
        return out
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
    }

    /// CRC-32 of ISO-HDLC (zlib's, PNG's), reflected polynomial 0xEDB88320.
    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 255)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for chunk in stride(from: 0, to: bytes.count, by: 5552) {
            for x in bytes[chunk..<min(bytes.count, chunk + 5552)] { a += UInt32(x); b += a }
            a %= 65521; b %= 65521
        }
        return b << 16 | a
    }
}
