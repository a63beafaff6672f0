import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// A stop request that any rank can raise and every rank notices at its next poll,
/// without a collective: the raising rank sends a small message to every other rank on a
/// communicator of the notice's own, and `poll` probes for one.
///
/// Lifetime: `open` (collective) before the work, `raise`/`poll` during it on any rank,
/// then `close` (collective), which receives every notice still in flight (each rank
/// learns how many were raised from one reduction) and frees the communicator, so that
/// no message is left unmatched at MPI_Finalize.
public final class StopNotice {
    private let communicator: Communicator
    private var requests: [MPI_Request?] = []
    /// The sent code: MPI reads it until the sends complete, so it has a fixed address.
    private let payload = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private var received = 0
    /// The code this rank raised, if it did.
    public private(set) var raised: Int32? = nil
    /// The first code received from another rank.
    public private(set) var noticed: Int32? = nil
    static let tag: Int32 = 7

    /// A notice over the ranks of `world`. Collective.
    public init(world: Communicator) throws(MPIError) {
        var duplicate: MPI_Comm? = nil
        try check(MPI_Comm_dup(world.handle, &duplicate))
        communicator = try Communicator(handle: duplicate)
    }

    /// Tells every other rank to stop, with `code` (a signal number, say). Once per rank.
    public func raise(code: Int32) throws(MPIError) {
        guard raised == nil else { return }
        raised = code
        let peers = communicator.size - 1
        guard peers > 0 else { return }
        payload.pointee = code
        requests = [MPI_Request?](repeating: ntk_mpi_request_null(), count: peers)
        var slot = 0
        for peer in 0..<communicator.size where peer != communicator.rank {
            try check(MPI_Isend(payload, 1, Int32.mpiDatatype.handle, Int32(peer), Self.tag, communicator.handle, &requests[slot]))
            slot += 1
        }
    }

    /// The code of a stop raised by another rank, if one has arrived (or was seen before).
    public func poll() throws(MPIError) -> Int32? {
        if noticed != nil { return noticed }
        var flag: Int32 = 0
        try check(MPI_Iprobe(ntk_mpi_any_source(), Self.tag, communicator.handle, &flag, ntk_mpi_status_ignore()))
        if flag != 0 { noticed = try receiveOne() }
        return noticed
    }

    private func receiveOne() throws(MPIError) -> Int32 {
        var code: Int32 = 0
        try check(MPI_Recv(&code, 1, Int32.mpiDatatype.handle, ntk_mpi_any_source(), Self.tag, communicator.handle, ntk_mpi_status_ignore()))
        received += 1
        return code
    }

    /// Waits without occupying a core until every rank has called it, polling meanwhile:
    /// `whileWaiting` runs between polls (to raise a stop that arrives during the wait).
    /// Collective.
    public func waitForAll(whileWaiting: () throws(MPIError) -> Void) throws(MPIError) {
        var request = ntk_mpi_request_null()
        try check(MPI_Ibarrier(communicator.handle, &request))
        var done: Int32 = 0
        var pause: UInt32 = 50
        while true {
            try check(MPI_Test(&request, &done, ntk_mpi_status_ignore()))
            if done != 0 { break }
            try whileWaiting()
            _ = try poll()
            usleep(pause)
            pause = min(pause * 2, 1000)
        }
    }

    /// Receives the notices still in flight, completes this rank's sends and frees the
    /// communicator. Returns the code raised by any rank (this one included), if any.
    /// Collective.
    public func close() throws(MPIError) -> Int32? {
        let raisers = try communicator.allreduce(Int32(raised == nil ? 0 : 1), .sum)
        let code = try communicator.allreduce(raised ?? 0, .max)
        let expected = Int(raisers) - (raised == nil ? 0 : 1)
        while received < expected {
            let value = try receiveOne()
            if noticed == nil { noticed = value }
        }
        if !requests.isEmpty {
            try check(MPI_Waitall(Int32(requests.count), &requests, ntk_mpi_statuses_ignore()))
        }
        requests = []
        communicator.free()
        return raisers > 0 ? code : nil
    }

    deinit { payload.deallocate() }
}
