import CSystem
import Foundation
import MPI
#if canImport(Glibc)
import Glibc
#endif

/// A consumer of finished tiles that talks to other ranks while the tiles are computed
/// (`GramJob.computeKernel` calls it).
protocol TileStream: AnyObject {
    /// One finished tile of this rank (computed or reused).
    func accept(index: Int, values: [Double]) throws(NTKError)
    /// Takes what other ranks sent; called between tiles and while waiting for them.
    func poll() throws(MPIError)
    /// Collective, once every rank has left its tile loop (a stop included): receives what
    /// is still in flight and waits for this rank's writes. Returns this rank's failure and
    /// how many of its row blocks are incomplete (none after a full run).
    func finish() throws(MPIError) -> (failure: NTKError?, incomplete: Int)
}

/// kernel.npy written in whole row blocks with direct I/O, while the tiles are computed.
///
/// Why: a tile's rows are 2 KiB pieces of 4 KiB pages (B = 256), so tiles cannot go to the
/// file without the page cache, and filling the page cache costs CPU that the tiles need:
/// at N = 16000 on 2 ranks about 2 s of copying and faulting in pages of a shared mapping,
/// plus the kernel's writeback, in a 12.5 s run. A row block of the kernel, rows [a, b) ×
/// every column, is one contiguous range of the file, so once it is complete it goes out
/// with O_DIRECT from an aligned buffer: no page cache, the transfer done by the device.
///
/// How: the tiles are dealt by whole rows (`TilePlan.Dealing.rows`), so every rank moves
/// through the rows in step with the others and row block i is complete soon after every
/// rank has passed row i. The rank that computes row i owns row block i; a symmetric
/// kernel's off-diagonal tile (j, i) also belongs, mirrored, to row block i, and goes to its
/// owner by a nonblocking send (`TileChannel`). When a row block has all its tiles, a
/// thread of the owner assembles it into one aligned buffer and writes its whole 4 KiB
/// pages with O_DIRECT; the at most two partial pages where it meets its neighbours go
/// through the page cache (another rank writes the rest of such a page), and rank 0's
/// final fsync flushes both. Tiles wait in memory until their row block is complete:
/// about a quarter of the kernel at the middle of the run, so this writer is used only
/// when the kernel takes at most half the memory (as the mirrored shared mapping) and all
/// ranks share one node (partial pages from two nodes would meet in two page caches).
final class StripeKernelFile: TileStream {
    let plan: TilePlan
    let entry: Int
    let fullLayout: Bool
    let dataOffset: Int
    let path: String
    let rank: Int
    /// Doubles per kernel row: columns × entry².
    let rowDoubles: Int
    /// The rank that owns each row block.
    let rowOwners: [Int]
    /// Tiles each owned row block needs.
    private var expected: [Int: Int] = [:]
    private var pending: [Int: [Contribution]] = [:]
    private let channel: TileChannel
    private let writer: Writer
    /// Seconds this rank spent in `accept` and `poll` (the tile loop's share of the writing).
    private(set) var seconds = 0.0

    struct Contribution {
        let index: Int
        let values: [Double]
        /// The tile itself (row block = its row) or its mirror image (row block = its column).
        let upper: Bool
    }

    /// The bytes of one row block's buffer (with a page of margin at each end).
    static func bufferBytes(plan: TilePlan, entry: Int) -> Int {
        let rowBytes = 8 * plan.columns * entry * entry
        return plan.tileSize * rowBytes + 2 * Writer.alignment
    }

    /// The largest row-block buffer the writer takes (a wider kernel uses the shared mapping).
    static let bufferLimit = 256 << 20

    /// Opens kernel.npy (created by rank 0, of its full size) for direct writes. Collective
    /// in effect: every rank of `world` creates one, with the same plan (dealt by rows).
    init(path: String, dataOffset: Int, plan: TilePlan, entry: Int, fullLayout: Bool, world: Communicator) throws {
        precondition(plan.dealing == .rows)
        self.plan = plan
        self.entry = entry
        self.fullLayout = fullLayout
        self.dataOffset = dataOffset
        self.path = path
        rank = world.rank
        rowDoubles = plan.columns * entry * entry
        var owners = [Int](repeating: 0, count: plan.rowBlocks)
        for (index, tile) in plan.tiles.enumerated() where tile.column == (plan.symmetric ? tile.row : 0) {
            owners[tile.row] = plan.owners[index]
        }
        rowOwners = owners
        for block in 0..<plan.rowBlocks where owners[block] == world.rank {
            expected[block] = plan.columnBlocks
        }
        channel = try TileChannel(world: world)
        writer = try Writer(path: path, capacity: Self.bufferBytes(plan: plan, entry: entry))
    }

    func accept(index: Int, values: [Double]) throws(NTKError) {
        let start = Clock.now
        defer { seconds += Clock.seconds(since: start) }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw NTKError(.dataError, "tile \(index) of the kernel has a non-finite entry (flat \(bad)): the network overflows on this data; rescale the inputs or the parameters")
        }
        let tile = plan.tiles[index]
        add(block: tile.row, Contribution(index: index, values: values, upper: true))
        if plan.symmetric && tile.row != tile.column {
            let owner = rowOwners[tile.column]
            if owner == rank {
                add(block: tile.column, Contribution(index: index, values: values, upper: false))
            } else {
                do { try channel.send(values, to: owner, tag: index) } catch { throw NTKError(.software, "MPI: \(error)") }
            }
        }
        do { try takeArrivals() } catch { throw NTKError(.software, "MPI: \(error)") }
    }

    func poll() throws(MPIError) {
        let start = Clock.now
        defer { seconds += Clock.seconds(since: start) }
        try takeArrivals()
    }

    private func takeArrivals() throws(MPIError) {
        try channel.progress()
        while let message = try channel.receive() {
            add(block: plan.tiles[message.tag].column, Contribution(index: message.tag, values: message.values, upper: false))
        }
    }

    private func add(block: Int, _ contribution: Contribution) {
        pending[block, default: []].append(contribution)
        if pending[block]!.count == expected[block] {
            writer.enqueue(Writer.Job(block: block, contributions: pending.removeValue(forKey: block)!, owner: self))
        }
    }

    func finish() throws(MPIError) -> (failure: NTKError?, incomplete: Int) {
        try channel.close { _, tag, values in
            add(block: plan.tiles[tag].column, Contribution(index: tag, values: values, upper: false))
        }
        let failure = writer.finish()
        return (failure, expected.keys.filter { !writer.written.contains($0) }.count)
    }

    /// Seconds the writing thread spent assembling row blocks and writing them.
    var threadSeconds: Double { writer.seconds }

    /// The file range of row block `block`: [start, end).
    func range(of block: Int) -> (start: Int, end: Int) {
        let rows = plan.rowRange(block)
        return (dataOffset + 8 * rows.lowerBound * rowDoubles, dataOffset + 8 * rows.upperBound * rowDoubles)
    }

    /// Places the contributions of row block `block` into `buffer`, whose first byte stands
    /// for file offset `base`.
    func assemble(block: Int, contributions: [Contribution], buffer: UnsafeMutableRawPointer, base: Int) {
        // A pointer to where the kernel's entry (0, 0) would be if the whole file were in
        // memory (the buffer's first byte is file offset `base`): only the entries of this
        // row block are ever touched through it.
        let origin = UnsafeMutablePointer<Double>(bitPattern: Int(bitPattern: buffer) &+ (dataOffset - base))!
        for contribution in contributions {
            contribution.values.withUnsafeBufferPointer { values in
                ParallelKernelFile.copy(tile: values.baseAddress!, index: contribution.index, plan: plan, entry: entry, fullLayout: fullLayout,
                                        mirror: !contribution.upper, upper: contribution.upper, into: origin)
            }
        }
    }

    /// Assembles complete row blocks and writes them, on a thread of its own.
    final class Writer: @unchecked Sendable {
        struct Job {
            let block: Int
            let contributions: [Contribution]
            let owner: StripeKernelFile
        }

        private let direct: Int32
        private let buffered: Int32
        private let path: String
        private let buffer: UnsafeMutableRawPointer
        private var queue: BackgroundQueue<Job>!
        /// The row blocks written (read after `finish`).
        private(set) var written: Set<Int> = []
        static let alignment = KernelFileOperator.alignment

        init(path: String, capacity: Int) throws {
            self.path = path
            direct = ntk_open_write_direct(path)
            guard direct >= 0 else { throw NTKError(.ioError, "cannot open \(path) for direct writes: \(SystemError.text(errno))") }
            buffered = open(path, O_WRONLY | O_CLOEXEC)
            guard buffered >= 0 else {
                close(direct)
                throw NTKError(.ioError, "cannot open \(path) to write the kernel: \(SystemError.text(errno))")
            }
            var pointer: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&pointer, Self.alignment, capacity) == 0, let pointer else {
                close(direct)
                close(buffered)
                throw NTKError(.software, "cannot allocate a row-block buffer of \(capacity) bytes")
            }
            buffer = pointer
            queue = BackgroundQueue { [unowned self] job in
                if let error = write(job) { return error }
                written.insert(job.block)
                return nil
            }
        }

        deinit {
            close(direct)
            close(buffered)
            free(buffer)
        }

        func enqueue(_ job: Job) {
            // Unbounded: a failure is reported by `finish`.
            try? queue.submit(job)
        }

        /// Waits for every queued row block and ends the thread; the first failure, if any.
        func finish() -> NTKError? { queue.finish() }

        /// Seconds the thread spent assembling and writing row blocks.
        var seconds: Double { queue.seconds }

        private func write(_ job: Job) -> NTKError? {
            let (start, end) = job.owner.range(of: job.block)
            let a = Self.alignment
            let base = start / a * a
            job.owner.assemble(block: job.block, contributions: job.contributions, buffer: buffer, base: base)
            let inner = (start + a - 1) / a * a, outer = end / a * a
            var pieces: [(fd: Int32, from: Int, to: Int)] = []
            if inner < outer {
                pieces.append((direct, inner, outer))
                if start < inner { pieces.append((buffered, start, inner)) }
                if outer < end { pieces.append((buffered, outer, end)) }
            } else {
                pieces.append((buffered, start, end))
            }
            for piece in pieces {
                let bytes = UnsafeRawBufferPointer(start: buffer + (piece.from - base), count: piece.to - piece.from)
                if let failure = FileSystem.writeAll(piece.fd, bytes, at: piece.from) {
                    return NTKError(.ioError, "writing \(path) failed: \(failure); nothing was replaced")
                }
            }
            return nil
        }
    }
}
