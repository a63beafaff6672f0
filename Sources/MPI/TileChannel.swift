import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Arrays of doubles sent from rank to rank while every rank goes on working: each array
/// goes out with a nonblocking send (from a copy the channel owns until it is delivered)
/// under a tag chosen by the sender (a tile index, say), and `receive` takes whatever has
/// arrived, from any rank, without waiting.
///
/// Lifetime: `init` (collective) before the work; `send`, `receive` and `progress` during
/// it on any rank; then `close` (collective), which tells every rank how many arrays each
/// other rank sent it, hands over those still in flight, completes this rank's sends and
/// frees the channel's communicator, so that nothing is left unmatched at MPI_Finalize
/// however the work ended (a stop after some of the sends included).
public final class TileChannel {
    private let communicator: Communicator
    /// Outstanding sends and the copies they send from.
    private var requests: [MPI_Request?] = []
    private var buffers: [UnsafeMutableBufferPointer<Double>] = []
    private var sent: [Int64]
    private var received: [Int64]
    /// The largest tag this MPI library accepts.
    public let tagLimit: Int

    /// A channel over the ranks of `world`. Collective.
    public init(world: Communicator) throws(MPIError) {
        var duplicate: MPI_Comm? = nil
        try check(MPI_Comm_dup(world.handle, &duplicate))
        communicator = try Communicator(handle: duplicate)
        sent = [Int64](repeating: 0, count: communicator.size)
        received = [Int64](repeating: 0, count: communicator.size)
        tagLimit = Int(ntk_mpi_tag_ub(duplicate))
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    /// Sends `values` to rank `destination` under `tag` (0 ... `tagLimit`), without waiting.
    public func send(_ values: [Double], to destination: Int, tag: Int) throws(MPIError) {
        precondition(destination != communicator.rank && tag >= 0 && tag <= tagLimit && values.count <= Int(Int32.max))
        let copy = UnsafeMutableBufferPointer<Double>.allocate(capacity: Swift.max(1, values.count))
        _ = copy.initialize(from: values)
        var request = ntk_mpi_request_null()
        let code = MPI_Isend(copy.baseAddress, Int32(values.count), Double.mpiDatatype.handle, Int32(destination), Int32(tag),
                             communicator.handle, &request)
        guard code == ntk_mpi_success() else {
            copy.deallocate()
            try check(code)
            return
        }
        requests.append(request)
        buffers.append(copy)
        sent[destination] += 1
        try progress()
    }

    /// Frees the copies of the sends that have completed.
    public func progress() throws(MPIError) {
        var index = 0
        while index < requests.count {
            var done: Int32 = 0
            try check(MPI_Test(&requests[index], &done, ntk_mpi_status_ignore()))
            if done != 0 {
                buffers[index].deallocate()
                requests.swapAt(index, requests.count - 1)
                buffers.swapAt(index, buffers.count - 1)
                requests.removeLast()
                buffers.removeLast()
            } else {
                index += 1
            }
        }
    }

    /// One array that has arrived from any rank, with its sender and tag; nil when none has.
    public func receive() throws(MPIError) -> (source: Int, tag: Int, values: [Double])? {
        var flag: Int32 = 0
        var status = MPI_Status()
        try check(MPI_Iprobe(ntk_mpi_any_source(), ntk_mpi_any_tag(), communicator.handle, &flag, &status))
        guard flag != 0 else { return nil }
        return try receive(matching: status)
    }

    private func receive(matching status: MPI_Status) throws(MPIError) -> (source: Int, tag: Int, values: [Double]) {
        var probed = status
        var count: Int32 = 0
        try check(MPI_Get_count(&probed, Double.mpiDatatype.handle, &count))
        let source = probed.MPI_SOURCE, tag = probed.MPI_TAG
        var code: Int32 = 0
        let values = [Double](unsafeUninitializedCapacity: Int(count)) { buffer, initialized in
            code = MPI_Recv(buffer.baseAddress, count, Double.mpiDatatype.handle, source, tag, communicator.handle, ntk_mpi_status_ignore())
            initialized = Int(count)
        }
        try check(code)
        received[Int(source)] += 1
        return (Int(source), Int(tag), values)
    }

    /// Receives every array still in flight to this rank (each passed to `deliver`),
    /// completes this rank's sends and frees the communicator. Collective.
    public func close(deliver: (Int, Int, [Double]) -> Void) throws(MPIError) {
        let incoming = try communicator.alltoall(sent)
        for source in 0..<communicator.size where source != communicator.rank {
            while received[source] < incoming[source] {
                var status = MPI_Status()
                try check(MPI_Probe(Int32(source), ntk_mpi_any_tag(), communicator.handle, &status))
                let message = try receive(matching: status)
                deliver(message.source, message.tag, message.values)
            }
        }
        if !requests.isEmpty {
            try check(MPI_Waitall(Int32(requests.count), &requests, ntk_mpi_statuses_ignore()))
        }
        for buffer in buffers { buffer.deallocate() }
        requests = []
        buffers = []
        communicator.free()
    }
}
