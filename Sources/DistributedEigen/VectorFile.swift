import MPI
#if canImport(Glibc)
import Glibc
#endif

extension ScaLAPACKEigen {
    /// Writes distributed eigenvectors into an existing file, from every rank at once.
    ///
    /// The file holds, from byte `dataOffset` on, a row-major (v.n, count) float64 array
    /// (little-endian, as an .npy body): element (i, j) is component i of eigenvector j,
    /// column j of `v`, as numpy.linalg.eigh returns them. The caller creates the file
    /// (header, size) beforehand, and syncs and checks it afterwards. Each rank writes
    /// its own rows' segments with pwrite (one per local row and column block) and fsyncs
    /// them, so a network file system sees every rank's data; POSIX writes report a full
    /// disk where Open MPI's MPI-IO was seen not to.
    ///
    /// - Throws: `DistributedEigenError.io` on every rank when any rank's open, write or
    ///   sync fails (with the first failing rank's message).
    /// Collective: every rank calls it with its piece of the same matrix.
    public static func writeVectors(_ v: BlockCyclicMatrix, columns count: Int, path: String, dataOffset: Int,
                                    world: Communicator) throws {
        precondition(count >= 0 && count <= v.columns, "writeVectors: count exceeds the matrix's columns")
        try agree(writePiece(v, columns: count, path: path, dataOffset: dataOffset), world: world) { DistributedEigenError.io($0) }
    }

    /// This rank's part of `writeVectors`; returns a message on failure.
    static func writePiece(_ v: BlockCyclicMatrix, columns count: Int, path: String, dataOffset: Int) -> String? {
        let nb = v.blockSize, ld = v.localRows
        let localColumns = BlockCyclicMatrix.localCount(count, blockSize: nb, index: v.myColumn, processes: v.gridColumns)
        if ld == 0 || localColumns == 0 { return nil }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return "cannot open \(path) to write eigenvectors: \(String(cString: strerror(errno)))" }
        defer { close(fd) }

        // One local row block at a time, transposed to row-major so that each file
        // segment (one row, one column block: contiguous in the file) is contiguous here.
        var buffer = [Double](repeating: 0, count: min(nb, ld) * localColumns)
        var rowStart = 0
        while rowStart < ld {
            let rows = min(nb, ld - rowStart)
            v.local.withUnsafeBufferPointer { local in
                for j in 0..<localColumns {
                    let column = j * ld + rowStart
                    for r in 0..<rows { buffer[r * localColumns + j] = local[column + r] }
                }
            }
            for r in 0..<rows {
                var j = 0
                while j < localColumns {
                    let width = min(nb - j % nb, localColumns - j)
                    let (row, column) = v.globalIndex(localRow: rowStart + r, localColumn: j)
                    let at = dataOffset + 8 * (row * count + column)
                    let failure = buffer.withUnsafeBytes { raw -> String? in
                        let base = raw.baseAddress! + 8 * (r * localColumns + j)
                        var done = 0
                        while done < 8 * width {
                            let written = pwrite(fd, base + done, 8 * width - done, off_t(at + done))
                            if written < 0 {
                                if errno == EINTR { continue }
                                return String(cString: strerror(errno))
                            }
                            done += written
                        }
                        return nil
                    }
                    if let failure { return "writing eigenvectors to \(path) failed: \(failure)" }
                    j += width
                }
            }
            rowStart += rows
        }
        if fsync(fd) != 0 { return "flushing eigenvectors to \(path) failed: \(String(cString: strerror(errno)))" }
        return nil
    }
}
