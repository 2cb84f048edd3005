import Basics

/// One worker thread running jobs in order, with at most `capacity` waiting: compression
/// and writing overlap the teacher's compute, and a slow disk holds the producer back
/// instead of letting chunks pile up in memory. The first error stops the queue and is
/// rethrown by `submit` or `finish`.
package final class BackgroundQueue: @unchecked Sendable {
    package typealias Job = () throws -> Void
    // Everything below is guarded by `monitor`.
    private var jobs: [Job] = []
    private var closed = false
    private var failure: (any Error)?
    private let capacity: Int
    private let monitor = Monitor()
    private var thread: WorkerThread?

    package init(capacity: Int = 1, purpose: String = "background writes") throws {
        self.capacity = max(capacity, 1)
        thread = try WorkerThread(purpose: purpose) { [self] in work() }
    }

    private func work() {
        monitor.lock()
        defer { monitor.unlock() }
        while true {
            while jobs.isEmpty && !closed { monitor.wait() }
            if jobs.isEmpty { return }
            let job = jobs.removeFirst()
            let skip = failure != nil
            // The job runs unlocked, so the producer can queue the next one meanwhile.
            monitor.unlock()
            var error: (any Error)?
            if !skip { do { try job() } catch let e { error = e } }
            monitor.lock()
            if failure == nil, let error { failure = error }
            monitor.broadcast()
        }
    }

    /// Queues `job`, waiting while the queue is full.
    package func submit(_ job: @escaping Job) throws {
        try monitor.withLock {
            while jobs.count >= capacity && failure == nil { monitor.wait() }
            if let failure { throw failure }
            jobs.append(job)
            monitor.broadcast()
        }
    }

    /// Waits for every queued job, stops the thread, rethrows the first error.
    package func finish() throws {
        monitor.withLock {
            closed = true
            monitor.broadcast()
        }
        thread?.join()
        thread = nil
        if let failure = monitor.withLock({ failure }) { throw failure }
    }
}
