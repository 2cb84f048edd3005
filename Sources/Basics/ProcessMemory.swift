/// This process's memory as the kernel counts it (/proc/self/status): what progress lines
/// print and what memory plans start from.
public enum ProcessMemory {
    /// Resident bytes now (VmRSS), nil where /proc is unreadable.
    public static var resident: Int? { status("VmRSS:") }
    /// Peak resident bytes so far (VmHWM).
    public static var peak: Int? { status("VmHWM:") }

    private static func status(_ key: String) -> Int? {
        guard let bytes = try? FileSystem.readStream("/proc/self/status") else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(key) {
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return nil
    }
}
