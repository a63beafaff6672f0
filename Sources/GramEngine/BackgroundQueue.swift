import Foundation

/// Jobs done one after another on a thread of their own while the caller goes on (the tile
/// loop hands its disk writes to one: the checkpoint's records, the kernel file's row
/// blocks). `submit` queues a job, waiting while `depth` jobs already wait (unbounded
/// without a depth); after the first failure no further job runs, and `submit` and
/// `finish` report it. No MPI call may be made from a job (MPI runs funneled).
final class BackgroundQueue<Job>: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var closing = false
    private var stopped = false
    private var failure: NTKError? = nil
    private let depth: Int?
    private let work: (Job) -> NTKError?
    private var busy = 0.0

    init(depth: Int? = nil, work: @escaping (Job) -> NTKError?) {
        self.depth = depth
        self.work = work
        let thread = Thread { [self] in run() }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Queues `job`; throws the failure of an earlier job, if any.
    func submit(_ job: Job) throws(NTKError) {
        condition.lock()
        defer { condition.unlock() }
        while let depth, queue.count >= depth, failure == nil { condition.wait() }
        if let failure { throw failure }
        queue.append(job)
        condition.broadcast()
    }

    /// Waits until every queued job is done and ends the thread: the first failure, if any.
    /// Call once, on every path out of the work that submits.
    func finish() -> NTKError? {
        condition.lock()
        defer { condition.unlock() }
        closing = true
        condition.broadcast()
        while !stopped { condition.wait() }
        return failure
    }

    /// Seconds the thread spent in jobs (read after `finish`).
    var seconds: Double {
        condition.lock()
        defer { condition.unlock() }
        return busy
    }

    private func run() {
        condition.lock()
        while true {
            while queue.isEmpty && !closing { condition.wait() }
            if queue.isEmpty { break }
            let job = queue.removeFirst()
            condition.unlock()
            let start = Clock.now
            let error = work(job)
            let elapsed = Clock.seconds(since: start)
            condition.lock()
            busy += elapsed
            if let error, failure == nil {
                failure = error
                queue.removeAll()
            }
            condition.broadcast()
        }
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
