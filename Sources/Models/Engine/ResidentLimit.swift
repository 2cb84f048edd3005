import Basics
import CheckpointIO

/// How much of a model the engine lets stay resident when the user names no limit: half
/// of what the machine (or the cgroup the process runs in, when that is smaller) has. A
/// model larger than this streams, its pages dropped behind each layer, so a teacher
/// larger than RAM never sits whole in memory and the page cache never pushes the
/// process out of its cgroup.
public enum ResidentLimit {
    public static var defaultBytes: Int {
        let available = [physicalMemory, cgroupLimit].compactMap { $0 }.min() ?? (8 << 30)
        return available / 2
    }

    /// MemTotal from /proc/meminfo.
    static var physicalMemory: Int? {
        guard let bytes = try? FileSystem.readStream("/proc/meminfo") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("MemTotal:") {
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return nil
    }

    /// The memory limit of this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`), if set.
    static var cgroupLimit: Int? {
        guard let bytes = try? FileSystem.readStream("/proc/self/cgroup") else { return nil }
        var limits: [Int] = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            let file: String
            if parts[0] == "0" && parts[1].isEmpty {
                file = "/sys/fs/cgroup" + path + "/memory.max"
            } else if parts[1].split(separator: ",").contains("memory") {
                file = "/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"
            } else { continue }
            if let text = try? FileSystem.readStream(file),
               let v = Int(String(decoding: text, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? ""),
               v > 0, v < (1 << 60) {
                limits.append(v)
            }
        }
        return limits.min()
    }
}
