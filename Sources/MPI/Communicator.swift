import CMPI

/// A typed MPI communicator. All collectives must be called by every rank of it, in the
/// same order.
public struct Communicator: @unchecked Sendable {
    let handle: MPI_Comm?
    /// This process's rank, 0 ..< size.
    public let rank: Int
    /// The number of ranks.
    public let size: Int

    init(handle: MPI_Comm?) throws(MPIError) {
        self.handle = handle
        var rank: Int32 = 0
        var size: Int32 = 0
        try check(MPI_Comm_rank(handle, &rank))
        try check(MPI_Comm_size(handle, &size))
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// The largest message tag the MPI library accepts on this communicator (≥ 32767).
    public var tagLimit: Int { Int(ntk_mpi_tag_ub(handle)) }

    /// True on rank 0, the rank that assembles and writes results.
    public var isRoot: Bool { rank == 0 }

    /// The communicator's Fortran handle (MPI_Comm_c2f), for libraries with a Fortran
    /// interface (ELPA's `mpi_comm_parent`).
    public var fortranHandle: Int32 { ntk_mpi_comm_c2f(handle) }

    /// Blocks until every rank has called it. Collective.
    public func barrier() throws(MPIError) {
        try check(MPI_Barrier(handle))
    }

    /// Combines one value from every rank; every rank gets the result. Collective.
    public func allreduce<T: MPIElement>(_ value: T, _ operation: ReduceOperation) throws(MPIError) -> T {
        var input = value
        var output = value
        try check(MPI_Allreduce(&input, &output, 1, T.mpiDatatype.handle, operation.handle, handle))
        return output
    }

    /// Element-wise in-place reduction of an array across all ranks. Collective; every
    /// rank must pass the same count.
    public func allreduce<T: MPIElement>(_ values: inout [T], _ operation: ReduceOperation) throws(MPIError) {
        let count = Int32(values.count)
        let type = T.mpiDatatype.handle
        let op = operation.handle
        let comm = handle
        let code = values.withUnsafeMutableBytes { buffer in
            MPI_Allreduce(ntk_mpi_in_place(), buffer.baseAddress, count, type, op, comm)
        }
        try check(code)
    }

    /// Sends `bytes` from `root` to every rank; returns them everywhere. Collective.
    /// The payload may be of any length (sent in pieces below MPI's 32-bit counts).
    public func broadcast(bytes: [UInt8], root: Int = 0) throws(MPIError) -> [UInt8] {
        var length = Int64(bytes.count)
        try check(MPI_Bcast(&length, 1, ntk_mpi_int64(), Int32(root), handle))
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length))
        try broadcast(&buffer, root: root)
        return buffer
    }

    /// Broadcasts an array in place from `root`; every rank must pass the same count.
    /// Collective.
    public func broadcast<T: MPIElement>(_ values: inout [T], root: Int = 0) throws(MPIError) {
        let count = values.count
        let code = values.withUnsafeMutableBufferPointer { broadcastChunks($0.baseAddress, count: count, T.self, root: root) }
        try check(code)
    }

    /// MPI_Bcast of `count` elements at `base` in pieces that fit MPI's Int32 counts.
    private func broadcastChunks<T: MPIElement>(_ base: UnsafeMutablePointer<T>?, count total: Int, _: T.Type, root: Int) -> Int32 {
        let chunk = 1 << 28
        var code: Int32 = ntk_mpi_success()
        var start = 0
        while start < total && code == ntk_mpi_success() {
            let count = min(chunk, total - start)
            code = MPI_Bcast(base! + start, Int32(count), T.mpiDatatype.handle, Int32(root), handle)
            start += count
        }
        return code
    }

    /// Broadcasts `buffer` in place from `root`; every rank must pass the same count.
    /// Collective.
    public func broadcast<T: MPIElement>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        try check(broadcastChunks(buffer.baseAddress, count: buffer.count, T.self, root: root))
    }

    /// Gathers a variable amount of data from every rank to `root`.
    ///
    /// - Parameters:
    ///   - send: this rank's contribution.
    ///   - counts: on `root`, the element count of every rank (ignored elsewhere); each
    ///     and their total must fit in Int32.
    ///   - receive: on `root`, room for the sum of `counts`, filled in rank order.
    /// Collective.
    public func gatherv<T: MPIElement>(send: UnsafeBufferPointer<T>, counts: [Int], root: Int = 0,
                                       receive: UnsafeMutableBufferPointer<T>?) throws(MPIError) {
        let type = T.mpiDatatype.handle
        if rank == root {
            var counts32 = counts.map { Int32($0) }
            var displacements = [Int32](repeating: 0, count: counts.count)
            var offset = 0
            for (index, count) in counts.enumerated() {
                displacements[index] = Int32(offset)
                offset += count
            }
            try check(MPI_Gatherv(send.baseAddress, Int32(send.count), type,
                                  receive?.baseAddress, &counts32, &displacements, type,
                                  Int32(root), handle))
        } else {
            try check(MPI_Gatherv(send.baseAddress, Int32(send.count), type,
                                  nil, nil, nil, type, Int32(root), handle))
        }
    }

    /// Sends `send[r]` to rank r and returns, at index r, what rank r sent to this rank:
    /// one element per pair of ranks (e.g. the counts before an `alltoallv`). Collective;
    /// every rank passes `size` elements.
    public func alltoall<T: MPIElement>(_ send: [T]) throws(MPIError) -> [T] {
        precondition(send.count == size, "alltoall takes one element per rank")
        var receive = send
        let type = T.mpiDatatype.handle
        let comm = handle
        let code = send.withUnsafeBufferPointer { input in
            receive.withUnsafeMutableBufferPointer { output in
                MPI_Alltoall(input.baseAddress, 1, type, output.baseAddress, 1, type, comm)
            }
        }
        try check(code)
        return receive
    }

    /// Exchanges variable amounts of data between every pair of ranks: the first
    /// `sendCounts[0]` elements of `send` go to rank 0, the next `sendCounts[1]` to rank
    /// 1, and so on; `receive` is filled in rank order, `receiveCounts[r]` elements from
    /// rank r (which must equal what rank r sends here: exchange the counts first with
    /// `alltoall`). Each buffer's total must fit in Int32: move larger data in rounds.
    /// Collective.
    public func alltoallv<T: MPIElement>(send: UnsafeBufferPointer<T>, sendCounts: [Int],
                                         receive: UnsafeMutableBufferPointer<T>, receiveCounts: [Int]) throws(MPIError) {
        precondition(sendCounts.count == size && receiveCounts.count == size, "alltoallv takes one count per rank")
        func layout(_ counts: [Int], capacity: Int) -> (counts: [Int32], displacements: [Int32]) {
            var displacements = [Int32](repeating: 0, count: counts.count)
            var offset = 0
            for (index, count) in counts.enumerated() {
                displacements[index] = Int32(offset)
                offset += count
            }
            precondition(offset <= capacity && offset <= Int(Int32.max), "alltoallv counts exceed the buffer or Int32")
            return (counts.map { Int32($0) }, displacements)
        }
        var (sendCounts32, sendDisplacements) = layout(sendCounts, capacity: send.count)
        var (receiveCounts32, receiveDisplacements) = layout(receiveCounts, capacity: receive.count)
        let type = T.mpiDatatype.handle
        try check(MPI_Alltoallv(send.baseAddress, &sendCounts32, &sendDisplacements, type,
                                receive.baseAddress, &receiveCounts32, &receiveDisplacements, type, handle))
    }

    /// Agrees on a failure across ranks. Each rank passes its own exit status (0 for
    /// success); every rank gets the largest, and the lowest failing rank (or nil). Use
    /// it before the next collective after any step that can fail on one rank only.
    /// Collective.
    public func agree(status: Int32) throws(MPIError) -> (status: Int32, firstFailingRank: Int?) {
        let worst = try allreduce(status, .max)
        if worst == 0 { return (0, nil) }
        let candidate = status != 0 ? Int32(rank) : Int32(size)
        let first = try allreduce(candidate, .min)
        return (worst, Int(first))
    }

    /// Ends every rank of the job at once with `code`. Use where ranks cannot agree
    /// (one rank failed inside a collective sequence); print the reason first, to stderr.
    public func abort(code: Int32) -> Never {
        MPI_Abort(handle, code)
        fatalError("MPI_Abort returned")
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Communicator {
    /// Like `allreduce(_:_:)`, but waits without occupying a core: the reduction is
    /// started non-blocking and polled with growing sleeps (up to 1 ms). Use it where a
    /// rank may wait long for another (rank 0 eigendecomposing with the idle cores).
    /// Collective; all ranks must use this same call (MPI never matches a non-blocking
    /// collective with a blocking one).
    public func allreduceQuietly<T: MPIElement>(_ value: T, _ operation: ReduceOperation) throws(MPIError) -> T {
        var input = value
        var output = value
        var request = ntk_mpi_request_null()
        try check(MPI_Iallreduce(&input, &output, 1, T.mpiDatatype.handle, operation.handle, handle, &request))
        var done: Int32 = 0
        var pause: UInt32 = 50
        while true {
            try check(MPI_Test(&request, &done, ntk_mpi_status_ignore()))
            if done != 0 { break }
            usleep(pause)
            pause = min(pause * 2, 1000)
        }
        return output
    }

    /// `agree(status:)` waiting quietly (see `allreduceQuietly`). Collective.
    public func agreeQuietly(status: Int32) throws(MPIError) -> (status: Int32, firstFailingRank: Int?) {
        let worst = try allreduceQuietly(status, .max)
        if worst == 0 { return (0, nil) }
        let candidate = status != 0 ? Int32(rank) : Int32(size)
        let first = try allreduceQuietly(candidate, .min)
        return (worst, Int(first))
    }

    /// The ranks of the same `color`, ordered by `key` (then by rank), as a communicator
    /// of their own; release it with `free()`. Collective.
    public func split(color: Int, key: Int) throws(MPIError) -> Communicator {
        var part: MPI_Comm? = nil
        try check(MPI_Comm_split(handle, Int32(color), Int32(key), &part))
        return try Communicator(handle: part)
    }

    /// The ranks sharing this rank's node (shared memory), in rank order, as a
    /// communicator of their own; release it with `free()`. Collective.
    public func splitShared() throws(MPIError) -> Communicator {
        var local: MPI_Comm? = nil
        try check(MPI_Comm_split_type(handle, ntk_mpi_comm_type_shared(), Int32(rank), ntk_mpi_info_null(), &local))
        return try Communicator(handle: local)
    }

    /// Releases a communicator made by `split` or `splitShared` (not the world). Collective.
    public func free() {
        var h = handle
        MPI_Comm_free(&h)
    }

    /// The number of ranks sharing this rank's node (shared memory), and this rank's
    /// index among them. Collective.
    public func nodeLocal() throws(MPIError) -> (rank: Int, size: Int) {
        var local: MPI_Comm? = nil
        try check(MPI_Comm_split_type(handle, ntk_mpi_comm_type_shared(), Int32(rank), ntk_mpi_info_null(), &local))
        var r: Int32 = 0, s: Int32 = 0
        try check(MPI_Comm_rank(local, &r))
        try check(MPI_Comm_size(local, &s))
        MPI_Comm_free(&local)
        return (Int(r), Int(s))
    }
}
