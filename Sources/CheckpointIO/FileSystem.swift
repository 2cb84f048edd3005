#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few path and directory operations the readers need, on plain POSIX calls
/// (no Foundation: it costs start-up time the `inspect` budget cannot spare).
public enum FileSystem {
    public enum Kind: Sendable { case missing, file, directory }

    public static func kind(of path: String) throws -> Kind {
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return .missing }
            throw CheckpointError.system(path: path, operation: "stat", errno: code)
        }
        return (st.st_mode & S_IFMT) == S_IFDIR ? .directory : .file
    }

    /// Names of the entries of a directory (no `.`/`..`), sorted.
    public static func list(directory path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw CheckpointError.system(path: path, operation: "opendir", errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func join(_ dir: String, _ name: String) -> String {
        if dir.isEmpty || dir == "." { return name }
        return dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    public static func directoryName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Reads a whole small file (config.json, an index) into memory.
    public static func readFile(_ path: String, limit: Int = 256 << 20) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        if file.size > limit {
            throw CheckpointError.malformed(path: path, reason: "file is \(file.size) bytes, more than the \(limit)-byte limit for this kind of file")
        }
        return Array(file.bytes)
    }
}
