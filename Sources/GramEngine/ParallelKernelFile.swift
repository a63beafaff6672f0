import Foundation
import MPI
import NumPyIO
#if canImport(Glibc)
import Glibc
#endif

/// kernel.npy written by every rank at once, each its own tiles, so that no rank ever
/// holds the whole N×N matrix (used when rank 0 does not need it: no eigendecomposition).
///
/// Rank 0 creates the file under a temporary name with the .npy header and its full
/// size; every rank then writes its tiles with positional writes (pwrite), a symmetric
/// kernel's tiles also at their mirrored place; rank 0 finally syncs it and checks its
/// size on disk before the rename makes it kernel.npy. POSIX writes report a full disk;
/// Open MPI's MPI-IO was seen to report success and leave a truncated file.
enum ParallelKernelFile {
    static let temporaryName = ".kernel.npy.partial"

    /// Rank 0: the temporary file with its header, extended to the full size.
    static func create(directory: String, shape: [Int], name: String = temporaryName) throws(NTKError) -> (path: String, dataOffset: Int, size: Int) {
        let path = directory + "/" + name
        let header = NPYFormat.header(shape: shape, dtype: .float64)
        let size = header.count + 8 * shape.reduce(1, *)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
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

    /// Every rank: writes its tiles (and, for a symmetric kernel, their mirror images)
    /// into the file. `values` are this rank's tiles in the engine's layout: (rows·k',
    /// columns·k') with row i·k + a, column j·k + b.
    static func writeTiles(path: String, dataOffset: Int, plan: TilePlan, entry k: Int, fullLayout: Bool,
                           values: [Int: [Double]]) throws(NTKError) {
        guard !values.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NTKError(.ioError, "cannot open \(path) to write tiles: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let columnsTotal = plan.columns
        // Offset of (sample i, sample j, a, b) in the file's C order: (N, M) or (N, M, k, k).
        func offset(_ i: Int, _ j: Int, _ a: Int, _ b: Int) -> Int {
            dataOffset + 8 * (fullLayout ? ((i * columnsTotal + j) * k + a) * k + b : i * columnsTotal + j)
        }
        var buffer = [Double]()
        func put(_ at: Int, _ doubles: ArraySlice<Double>) throws(NTKError) {
            var failure: String? = nil
            doubles.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(at + done))
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = String(cString: strerror(errno))
                        return
                    }
                    done += n
                }
            }
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
            if plan.symmetric && t.row != t.column {
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
