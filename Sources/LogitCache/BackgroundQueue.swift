import Basics
#if canImport(Glibc)
import Glibc
#endif

/// One worker thread running jobs in order, with at most `capacity` waiting: compression
/// and writing overlap the teacher's compute, and a slow disk holds the producer back
/// instead of letting chunks pile up in memory. The first error stops the queue and is
/// rethrown by `submit` or `finish`.
public final class BackgroundQueue: @unchecked Sendable {
    public typealias Job = () throws -> Void
    private var jobs: [Job] = []
    private var running = false
    private var closed = false
    private var failure: (any Error)?
    private let capacity: Int
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()
    private var thread = pthread_t()

    public init(capacity: Int = 1) {
        self.capacity = max(capacity, 1)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
        let me = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let q = Unmanaged<BackgroundQueue>.fromOpaque(arg!).takeRetainedValue()
            q.work()
            return nil
        }, me)
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    private func work() {
        pthread_mutex_lock(&mutex)
        while true {
            while jobs.isEmpty && !closed { pthread_cond_wait(&changed, &mutex) }
            if jobs.isEmpty && closed { break }
            let job = jobs.removeFirst()
            running = true
            let skip = failure != nil
            pthread_mutex_unlock(&mutex)
            var err: (any Error)?
            if !skip { do { try job() } catch { err = error } }
            pthread_mutex_lock(&mutex)
            running = false
            if failure == nil, let err { failure = err }
            pthread_cond_broadcast(&changed)
        }
        pthread_mutex_unlock(&mutex)
    }

    /// Queues `job`, waiting while the queue is full.
    public func submit(_ job: @escaping Job) throws {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while jobs.count >= capacity && failure == nil { pthread_cond_wait(&changed, &mutex) }
        if let failure { throw failure }
        jobs.append(job)
        pthread_cond_broadcast(&changed)
    }

    /// Waits for every queued job, stops the thread, rethrows the first error.
    public func finish() throws {
        pthread_mutex_lock(&mutex)
        closed = true
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&mutex)
        pthread_join(thread, nil)
        if let failure { throw failure }
    }
}
