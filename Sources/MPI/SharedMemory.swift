import CMPI

/// Memory shared by the ranks of one node (an MPI-3 shared-memory window): one
/// allocation, made by the node's first rank, that every rank of the node reads and
/// writes directly, without copies between them.
///
/// Writes become visible to the other ranks at the next `synchronize()`. The window
/// lives until `free()`, which, like the allocation, every rank of the node must call.
public final class SharedMemory: @unchecked Sendable {
    /// The ranks sharing the memory (one node).
    public let node: Communicator
    /// The start of the shared bytes, in this process's address space.
    public let base: UnsafeMutableRawPointer?
    /// Their number.
    public let byteCount: Int
    private var window: MPI_Win?

    /// Allocates `byteCount` bytes shared by the ranks of `node`, which must all run on
    /// one node (a communicator from `splitShared()`). Collective over `node`.
    public init(node: Communicator, byteCount: Int) throws(MPIError) {
        self.node = node
        self.byteCount = byteCount
        var local: UnsafeMutableRawPointer? = nil
        var window: MPI_Win? = nil
        let mine = node.isRoot ? byteCount : 0
        try check(MPI_Win_allocate_shared(MPI_Aint(mine), 8, ntk_mpi_info_null(), node.handle, &local, &window))
        var size: MPI_Aint = 0
        var unit: Int32 = 0
        var shared: UnsafeMutableRawPointer? = nil
        try check(MPI_Win_shared_query(window, 0, &size, &unit, &shared))
        // A passive epoch over the whole life of the window, so that `synchronize` can
        // use MPI_Win_sync.
        try check(MPI_Win_lock_all(ntk_mpi_mode_nocheck(), window))
        self.window = window
        self.base = byteCount > 0 ? shared : nil
    }

    /// Makes every rank's writes so far visible to every rank of the node. Collective
    /// over `node`.
    public func synchronize() throws(MPIError) {
        try check(MPI_Win_sync(window))
        try node.barrier()
        try check(MPI_Win_sync(window))
    }

    /// Releases the memory. Collective over `node`; call once, after the last use.
    public func free() throws(MPIError) {
        guard window != nil else { return }
        try check(MPI_Win_unlock_all(window))
        try check(MPI_Win_free(&window))
        window = nil
    }
}
