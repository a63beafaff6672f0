import CSystem
import Foundation
import MPI
import NumPyIO
#if canImport(Glibc)
import Glibc
#endif

/// kernel.npy written by every rank at once, each its own tiles, so that no rank ever
/// holds the whole N×N matrix (used when rank 0 does not need it: no eigendecomposition).
///
/// Rank 0 creates the file under a temporary name with the .npy header and reserves its
/// full size before any work; every rank then copies each tile as it finishes it into a
/// shared mapping of the file (positional writes where the blocks could not be reserved),
/// a symmetric kernel's tiles also at their mirrored place; rank 0 finally syncs it and
/// checks its size on disk before the rename makes it kernel.npy. Reserved blocks mean a
/// full disk fails at the start, not as a SIGBUS in the mapping; Open MPI's MPI-IO was
/// seen to report success and leave a truncated file, so it is not used.
enum ParallelKernelFile {
    /// The temporary name of `file` in a run whose ranks share `token` (rank 0's pid): of
    /// the form the output directory recognizes as the tool's (`.NAME.partial-DIGITS`).
    static func temporaryName(_ file: String, token: Int64) -> String { ".\(file).partial-\(token)" }

    /// Rank 0: the temporary file with its header, extended to the full size.
    static func create(directory: String, shape: [Int], name: String) throws(NTKError) -> (path: String, dataOffset: Int, size: Int) {
        let path = directory + "/" + name
        let header = NPYFormat.header(shape: shape, dtype: .float64)
        let size = header.count + 8 * shape.reduce(1, *)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw NTKError(.cannotCreate, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = header.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        guard written == header.count else { throw NTKError(.ioError, "writing the header of \(path) failed: \(String(cString: strerror(errno)))") }
        // Reserve the blocks now, so a disk too small fails here and not halfway.
        let reserved = posix_fallocate(fd, 0, off_t(size))
        if reserved != 0 && reserved != EOPNOTSUPP && reserved != EINVAL {
            unlink(path)
            throw NTKError(.ioError, "cannot reserve \(size) bytes for \(path): \(String(cString: strerror(reserved)))")
        }
        if reserved != 0 && ftruncate(fd, off_t(size)) != 0 {
            unlink(path)
            throw NTKError(.ioError, "cannot size \(path) to \(size) bytes: \(String(cString: strerror(errno)))")
        }
        return (path, header.count, size)
    }

    /// Every rank's handle on the file while its tiles are computed: each tile (and, for
    /// a symmetric kernel, its mirror image) goes into the file as soon as it is done, and
    /// the kernel starts writing it to disk at once, so that the final sync has little
    /// left to wait for and no rank keeps its tiles.
    ///
    /// When the file's blocks are all allocated (rank 0 reserved them), the tiles are
    /// copied into a shared mapping of the file: memory copies instead of one system
    /// call per row segment, and no risk of SIGBUS from a full disk. Otherwise (a file
    /// system without fallocate) they go out by positional writes, which report a full
    /// disk as an error.
    final class Writer {
        let path: String
        let fd: Int32
        let dataOffset: Int
        let plan: TilePlan
        let entry: Int
        let fullLayout: Bool
        /// Whether a symmetric kernel's off-diagonal tiles are also written at their mirrored
        /// place; without, only the upper tiles (diagonal tiles in full) are written and
        /// `fillLowerTriangle` completes the file afterwards.
        let mirror: Bool
        let size: Int
        private var mapping: UnsafeMutableRawPointer?
        private var isOpen = true
        /// Bytes of the mapping faulted in since it was last dropped (an upper bound).
        private var mappedBytes = 0
        /// `Self.windowLimit` (a test may lower it).
        private let windowLimit: Int

        /// The mapped pages are dropped (not the data) when they may exceed this many bytes,
        /// so the resident file pages of a rank stay below about min(file size, windowLimit).
        static let windowLimit = 256 << 20

        init(path: String, dataOffset: Int, plan: TilePlan, entry: Int, fullLayout: Bool, mirror: Bool = true) throws(NTKError) {
            let fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw NTKError(.ioError, "cannot open \(path) to write tiles: \(String(cString: strerror(errno)))") }
            self.path = path
            self.fd = fd
            self.dataOffset = dataOffset
            self.plan = plan
            self.entry = entry
            self.fullLayout = fullLayout
            self.mirror = mirror
            size = dataOffset + 8 * plan.rows * plan.columns * entry * entry
            // Test hooks: the positional writes of a file system without fallocate, and a
            // small mapping window (to exercise the dropping of mapped pages).
            let environment = ProcessInfo.processInfo.environment
            let positional = environment["NTK_TEST_POSITIONAL_WRITES"] != nil
            windowLimit = environment["NTK_TEST_WINDOW_BYTES"].flatMap(Int.init) ?? Self.windowLimit
            var status = stat()
            let allocated = fstat(fd, &status) == 0 && Int(status.st_size) == size && Int(status.st_blocks) * 512 >= size
            if allocated, !positional, let m = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), m != MAP_FAILED {
                mapping = m
            } else {
                mapping = nil
            }
        }

        deinit { finish() }

        /// Unmaps and closes the file (before rank 0 syncs it: a page still mapped
        /// writable in another process makes the sync slower).
        func finish() {
            guard isOpen else { return }
            isOpen = false
            if let mapping { munmap(mapping, size) }
            mapping = nil
            // Start writing this rank's pages to disk while the other ranks finish.
            _ = ntk_start_writeback(fd, 0, 0)
            close(fd)
        }

        /// Seconds spent in `accept`.
        private(set) var seconds = 0.0

        /// Checks that a finished tile is finite and writes it.
        func accept(index: Int, values: [Double]) throws(NTKError) {
            let start = Clock.now
            defer { seconds += Clock.seconds(since: start) }
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw NTKError(.dataError, "tile \(index) of the kernel has a non-finite entry (flat \(bad)): the network overflows on this data; rescale the inputs or the parameters")
            }
            try write(index: index, values: values)
        }

        /// Writes one finished tile, in the engine's layout: (rows·k', columns·k') with row
        /// i·k + a, column j·k + b.
        func write(index: Int, values: [Double]) throws(NTKError) {
            if let mapping {
                // The pages a tile and its mirror touch: their bytes, and up to a page more
                // per row segment.
                let t = plan.tiles[index]
                mappedBytes += 2 * (8 * values.count + 4096 * (plan.rowRange(t.row).count + plan.columnRange(t.column).count))
                if size > windowLimit && mappedBytes > windowLimit {
                    // Unmap the pages written so far (they stay in the page cache, dirty, on
                    // their way to disk), so that this rank's resident set stays bounded.
                    _ = madvise(mapping, size, 4 /* MADV_DONTNEED */)
                    mappedBytes = 0
                }
                let data = (mapping + dataOffset).assumingMemoryBound(to: Double.self)
                values.withUnsafeBufferPointer {
                    copy(tile: $0.baseAddress!, index: index, plan: plan, entry: entry, fullLayout: fullLayout, mirror: mirror, into: data)
                }
            } else {
                try writeTilesPositionally(fd: fd, path: path, dataOffset: dataOffset, plan: plan, entry: entry,
                                           fullLayout: fullLayout, mirror: mirror, values: [index: values])
            }
        }
    }

    /// One tile (and its mirror image) into the mapped data of the file (C order: (N, M) or
    /// (N, M, k, k)). Without `upper`, only the mirror image of an off-diagonal tile of a
    /// symmetric kernel (the stripe writer places the two parts in different row blocks).
    static func copy(tile: UnsafePointer<Double>, index: Int, plan: TilePlan, entry k: Int, fullLayout: Bool, mirror: Bool = true,
                     upper: Bool = true, into data: UnsafeMutablePointer<Double>) {
        let t = plan.tiles[index]
        let rows = plan.rowRange(t.row), columns = plan.columnRange(t.column)
        let width = columns.count * k
        let columnsTotal = plan.columns
        let diagonal = plan.symmetric && t.row == t.column
        if diagonal && !upper { return }
        // Offset of (sample i, sample j, a, b).
        @inline(__always) func offset(_ i: Int, _ j: Int, _ a: Int, _ b: Int) -> Int {
            fullLayout ? ((i * columnsTotal + j) * k + a) * k + b : i * columnsTotal + j
        }
        if k == 1 {
            if diagonal {
                guard upper else { return }
                // The upper half, mirrored within the tile so the file is exactly symmetric.
                for (r, i) in rows.enumerated() {
                    let row = data + offset(i, columns.lowerBound, 0, 0)
                    for s in 0..<r { row[s] = tile[s * width + r] }
                    (row + r).update(from: tile + r * width + r, count: width - r)
                }
                return
            }
            if upper {
                for (r, i) in rows.enumerated() {
                    (data + offset(i, columns.lowerBound, 0, 0)).update(from: tile + r * width, count: width)
                }
            }
            guard plan.symmetric && mirror else { return }
            // The mirror image: Θ[j, i] = Θ[i, j], in 16 x 16 blocks for the caches.
            let block = 16
            for r0 in stride(from: 0, to: rows.count, by: block) {
                for s0 in stride(from: 0, to: columns.count, by: block) {
                    for s in s0..<min(s0 + block, columns.count) {
                        let target = data + offset(columns.lowerBound + s, rows.lowerBound, 0, 0)
                        for r in r0..<min(r0 + block, rows.count) { target[r] = tile[r * width + s] }
                    }
                }
            }
            return
        }
        for (r, i) in rows.enumerated() {
            for (s, j) in columns.enumerated() {
                for a in 0..<k { for b in 0..<k {
                    // A diagonal tile's lower half is the mirror of its upper half, so the
                    // file is exactly symmetric: Θ[i, j, a, b] = Θ[j, i, b, a].
                    let value = diagonal && (j < i || (j == i && b < a))
                        ? tile[(s * k + b) * width + r * k + a] : tile[(r * k + a) * width + s * k + b]
                    if upper { data[offset(i, j, a, b)] = value }
                    if plan.symmetric && mirror && !diagonal { data[offset(j, i, b, a)] = value }
                } }
            }
        }
    }

    /// The tiles by pwrite, row segment by row segment.
    static func writeTilesPositionally(fd: Int32, path: String, dataOffset: Int, plan: TilePlan, entry k: Int, fullLayout: Bool,
                                       mirror: Bool = true, values: [Int: [Double]]) throws(NTKError) {
        let columnsTotal = plan.columns
        // Offset of (sample i, sample j, a, b) in the file's C order: (N, M) or (N, M, k, k).
        func offset(_ i: Int, _ j: Int, _ a: Int, _ b: Int) -> Int {
            dataOffset + 8 * (fullLayout ? ((i * columnsTotal + j) * k + a) * k + b : i * columnsTotal + j)
        }
        var buffer = [Double]()
        func put(_ at: Int, _ doubles: ArraySlice<Double>) throws(NTKError) {
            let failure = doubles.withUnsafeBytes { FileSystem.writeAll(fd, $0, at: at) }
            if let failure { throw NTKError(.ioError, "writing \(path) failed: \(failure); nothing was replaced") }
        }
        for (index, tile) in values.sorted(by: { $0.key < $1.key }) {
            let t = plan.tiles[index]
            let rows = plan.rowRange(t.row), columns = plan.columnRange(t.column)
            let width = columns.count * k
            // Row segments: for sample i, the values [i, j0..<j1, :, :] are contiguous.
            for (r, i) in rows.enumerated() {
                buffer.removeAll(keepingCapacity: true)
                for (s, j) in columns.enumerated() {
                    for a in 0..<k { for b in 0..<k {
                        // A diagonal tile's lower half is the mirror of its upper half, so
                        // the file is exactly symmetric: Θ[i, j, a, b] = Θ[j, i, b, a].
                        if plan.symmetric && t.row == t.column && (j < i || (j == i && b < a)) {
                            buffer.append(tile[(s * k + b) * width + r * k + a])
                        } else {
                            buffer.append(tile[(r * k + a) * width + s * k + b])
                        }
                    } }
                }
                try put(offset(i, columns.lowerBound, 0, 0), buffer[...])
            }
            // The mirror image of an off-diagonal tile of a symmetric kernel: Θ[j, i, b, a] = Θ[i, j, a, b].
            if plan.symmetric && mirror && t.row != t.column {
                for (s, j) in columns.enumerated() {
                    buffer.removeAll(keepingCapacity: true)
                    for r in 0..<rows.count {
                        for b in 0..<k { for a in 0..<k { buffer.append(tile[(r * k + a) * width + s * k + b]) } }
                    }
                    try put(offset(j, rows.lowerBound, 0, 0), buffer[...])
                }
            }
        }
    }

    /// Rank 0, after every rank has written: flush, and check the size on disk.
    static func finish(path: String, size: Int) throws(NTKError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NTKError(.ioError, "cannot reopen \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw NTKError(.ioError, "flushing \(path) failed: \(String(cString: strerror(errno)))") }
        var status = stat()
        guard fstat(fd, &status) == 0, Int(status.st_size) == size else {
            throw NTKError(.ioError, "\(path) has \(Int(status.st_size)) bytes on disk instead of \(size): the write was truncated")
        }
    }
}
