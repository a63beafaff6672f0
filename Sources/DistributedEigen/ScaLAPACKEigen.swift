import CScaLAPACK
import MPI

/// The symmetric eigendecomposition of a matrix distributed over all MPI ranks, with
/// ScaLAPACK, so that no rank ever holds the whole N x N matrix.
///
/// Each rank holds about 4 N^2 / ranks doubles during the solve (the matrix, the
/// eigenvectors and ScaLAPACK's workspace), besides the caller's blocks.
public enum ScaLAPACKEigen {
    /// The largest relative error accepted by the trace check (as LAPACK's tests).
    public static let checkThreshold = 60.0

    /// Eigendecomposes the symmetric n x n matrix given by its upper-triangle blocks.
    ///
    /// Every rank passes the upper-triangle blocks it holds: block (I, J), I <= J, as
    /// row-major values of rows [I*nb, min(n, (I+1)*nb)) x columns [J*nb, min(n,
    /// (J+1)*nb)); together the ranks give each such block exactly once (a diagonal
    /// block's lower half is not read). The blocks become a block-cyclic matrix with block
    /// size nb on a near-square grid over all ranks (`ProcessGrid`) in one all-to-all
    /// exchange. Then:
    ///
    /// - all pairs (`vectors`, no `top`): pdsyevd (divide and conquer);
    /// - values only, or the `top` largest pairs: pdsyevr (MRRR), which can compute a
    ///   subset; pdsyevd cannot (its values-only mode is not implemented);
    /// - with `library: .elpa(stage:)`: ELPA's one- or two-stage solver (all values, with or
    ///   without vectors; no `top`).
    ///
    /// Either runs on the blocks split to a size near 64 (`DistributedLibrary.solveBlockSize`).
    ///
    /// - Returns: the eigenvalues in ascending order (the `top` largest when given,
    ///   still ascending) on every rank, and with `vectors` the matching eigenvectors,
    ///   distributed: column j belongs to values[j] (nil without vectors).
    /// - Throws: `DistributedEigenError` on every rank alike: `.invalidBlocks` for blocks
    ///   of the wrong shape, out of range, missing or repeated; `.nonFinite` for NaN or
    ///   infinity in the upper triangle (checked before ScaLAPACK sees it); `.scalapack`
    ///   when a routine reports info != 0; `.check` when the full spectrum's sum misses
    ///   the trace; `.tooLarge` past 32-bit local sizes. An `MPIError` if MPI fails.
    ///
    /// Collective: every rank calls it with the same n, nb, vectors and top.
    public static func solve(n: Int, blockSize nb: Int, blocks: [(row: Int, column: Int, values: [Double])],
                             vectors wantVectors: Bool, top: Int?, library: DistributedLibrary = .scalapack,
                             world: Communicator) throws -> (values: [Double], vectors: BlockCyclicMatrix?) {
        precondition(n >= 0 && nb >= 1, "solve needs n >= 0 and a block size >= 1")
        precondition(top.map { $0 >= 1 } ?? true, "top must be at least 1")
        precondition(library == .scalapack || top == nil, "ELPA computes the whole spectrum: no top")
        try validate(n: n, blockSize: nb, blocks: blocks, world: world)
        let keep = min(top ?? n, n)
        if n == 0 {
            let (rows, columns) = ProcessGrid.shape(ranks: world.size)
            let empty = BlockCyclicMatrix(n: 0, columns: 0, blockSize: nb, gridRows: rows, gridColumns: columns,
                                          myRow: world.rank / columns, myColumn: world.rank % columns)
            return ([], wantVectors ? empty : nil)
        }

        let grid = try ProcessGrid(world: world)
        defer { grid.release() }
        // ELPA needs a block in every process row and column; for the rare matrix smaller
        // than the grid's longer side (n < processes), ScaLAPACK solves it instead.
        var library = library
        var solveNB = library.solveBlockSize(n: n, delivered: nb, processes: max(grid.rows, grid.columns))
        if solveNB == nil {
            library = .scalapack
            solveNB = library.solveBlockSize(n: n, delivered: nb, processes: max(grid.rows, grid.columns))
        }
        var a = try BlockCyclicMatrix.assemble(n: n, blockSize: solveNB!, blocks: split(blocks, n: n, blockSize: nb, into: solveNB!),
                                               grid: grid, world: world)
        let (trace, largest) = try traceAndLargest(a, world: world)

        var result: (values: [Double], vectors: BlockCyclicMatrix?)
        if case .elpa(let stage) = library {
            result = try elpa(&a, stage: stage, vectors: wantVectors, grid: grid, world: world)
        } else if wantVectors && keep == n {
            result = try divideAndConquer(&a, grid: grid, world: world)
        } else {
            result = try mrrr(&a, keep: keep, vectors: wantVectors, grid: grid, world: world)
        }

        for value in result.values where !value.isFinite {
            throw DistributedEigenError.check(name: "non-finite eigenvalue", value: value, threshold: 0)
        }
        if keep == n {
            // The spectrum must add up to the trace (as SymmetricEigen checks LAPACK's).
            let sum = result.values.reduce(0, +)
            let scaled = abs(trace - sum) / (Double(n) * max(largest, .leastNormalMagnitude) * Double.ulpOfOne * Double(n))
            if !(scaled <= checkThreshold) {
                throw DistributedEigenError.check(name: "|trace - sum(eigenvalues)| / (n^2 max|A| eps)", value: scaled,
                                                  threshold: checkThreshold)
            }
        }
        return result
    }

    // MARK: - Input checks

    /// Checks the blocks' shapes and finiteness on every rank, then agrees. Collective.
    static func validate(n: Int, blockSize nb: Int, blocks: [(row: Int, column: Int, values: [Double])],
                         world: Communicator) throws {
        let blockCount = (n + nb - 1) / nb
        var problem: String? = nil
        var firstNonFinite = Int64.max
        for block in blocks {
            let (I, J) = (block.row, block.column)
            guard I >= 0, J >= I, J < blockCount else {
                problem = "block (\(I), \(J)) is not an upper-triangle block of a \(blockCount) x \(blockCount) block matrix"
                break
            }
            let rows = min(n, (I + 1) * nb) - I * nb, columns = min(n, (J + 1) * nb) - J * nb
            guard block.values.count == rows * columns else {
                problem = "block (\(I), \(J)) has \(block.values.count) values instead of \(rows) x \(columns)"
                break
            }
            block.values.withUnsafeBufferPointer { values in
                for r in 0..<rows {
                    // Only the upper triangle is read: on a diagonal block, from the diagonal on.
                    let first = I == J ? r : 0
                    for c in first..<columns where !values[r * columns + c].isFinite {
                        let index = Int64((I * nb + r) * n + J * nb + c)
                        if index < firstNonFinite { firstNonFinite = index }
                        break
                    }
                }
            }
        }
        try agree(problem, world: world) { DistributedEigenError.invalidBlocks($0) }
        let first = try world.allreduce(firstNonFinite, .min)
        if first != Int64.max { throw DistributedEigenError.nonFinite(row: Int(first) / n, column: Int(first) % n) }
    }

    /// The trace and the largest |a_ij| of the upper triangle of the distributed matrix.
    /// Collective.
    static func traceAndLargest(_ a: BlockCyclicMatrix, world: Communicator) throws -> (trace: Double, largest: Double) {
        var trace = 0.0, largest = 0.0
        // Global rows grow with the local row, so a column's upper part is a prefix.
        let globalRows = (0..<a.localRows).map { a.globalIndex(localRow: $0, localColumn: 0).row }
        a.local.withUnsafeBufferPointer { local in
            for j in 0..<a.localColumns {
                let column = a.globalIndex(localRow: 0, localColumn: j).column
                var i = 0
                while i < a.localRows && globalRows[i] <= column {
                    let value = local[j * a.localRows + i]
                    if globalRows[i] == column { trace += value }
                    largest = max(largest, abs(value))
                    i += 1
                }
            }
        }
        return (try world.allreduce(trace, .sum), try world.allreduce(largest, .max))
    }

    // MARK: - Drivers

    /// All eigenpairs with pdsyevd. Collective.
    static func divideAndConquer(_ a: inout BlockCyclicMatrix, grid: ProcessGrid, world: Communicator) throws -> (values: [Double], vectors: BlockCyclicMatrix?) {
        let n = a.n, nb = a.blockSize
        var z = BlockCyclicMatrix(n: n, columns: n, blockSize: nb, gridRows: grid.rows, gridColumns: grid.columns,
                                  myRow: grid.myRow, myColumn: grid.myColumn)
        let descA = try a.descriptor(context: grid.context)
        let descZ = try z.descriptor(context: grid.context)
        var w = [Double](repeating: 0, count: n)
        // ScaLAPACK may touch element 1 of a local array that holds nothing.
        padIfEmpty(&a.local)
        padIfEmpty(&z.local)
        let upper = CChar(bitPattern: UInt8(ascii: "U")), jobz = CChar(bitPattern: UInt8(ascii: "V"))

        var workQuery = [Double](repeating: 0, count: 1)
        var iworkQuery = [Int32](repeating: 0, count: 1)
        var info = ntk_pdsyevd(jobz, upper, Int32(n), &a.local, descA, &w, &z.local, descZ, &workQuery, -1, &iworkQuery, 1)
        try agreeOnInfo(info, routine: "pdsyevd (workspace query)", world: world)

        // The query's answer is raised to what every stage reads (Reference-ScaLAPACK
        // issue #74: PDLASRT inside PDSTEDC may need more than PDSYEVD asks for).
        let np = a.localRows, nq = a.localColumns, columns = grid.columns
        let lwork = try int32(max(Int(workQuery[0]),
                                  max(1 + 6 * n + 2 * np * nq, 3 * n + max(nb * (np + 1), 3 * nb)) + 2 * n,
                                  2 * n + max(n, np * (nb + nq)),
                                  2 * n + max(nb * (nb - 1) / 2, (np + nq) * nb) + nb * nb) + 64, what: "pdsyevd workspace")
        let liwork = try int32(max(Int(iworkQuery[0]), 7 * n + 8 * columns + 2, n + 2 * (nb + columns)), what: "pdsyevd integer workspace")
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        info = ntk_pdsyevd(jobz, upper, Int32(n), &a.local, descA, &w, &z.local, descZ, &work, lwork, &iwork, liwork)
        work = []
        try agreeOnInfo(info, routine: "pdsyevd", world: world)
        a.local = []
        // PDSTEDC leaves the eigenvalues only on process (0, 0) when n <= nb: take them from there.
        try world.broadcast(&w, root: grid.worldRanks[0])
        z.local.removeLast(z.local.count - z.localRows * z.localColumns)
        return (w, z)
    }

    /// Values only, or the `keep` largest pairs, with pdsyevr. Collective.
    static func mrrr(_ a: inout BlockCyclicMatrix, keep: Int, vectors wantVectors: Bool, grid: ProcessGrid,
                     world: Communicator) throws -> (values: [Double], vectors: BlockCyclicMatrix?) {
        let n = a.n, nb = a.blockSize
        let processes = grid.rows * grid.columns
        // With vectors, compute at least nb pairs: PDSYEVR sizes PDORMTR's workspace from
        // the number of pairs, too small below nb, and then skips the back-transformation
        // without reporting it. The extra pairs are dropped below.
        let computed = wantVectors ? min(n, max(keep, nb)) : keep
        let range = CChar(bitPattern: computed == n ? UInt8(ascii: "A") : UInt8(ascii: "I"))
        let jobz = CChar(bitPattern: wantVectors ? UInt8(ascii: "V") : UInt8(ascii: "N"))
        let upper = CChar(bitPattern: UInt8(ascii: "U"))
        let il = Int32(n - computed + 1), iu = Int32(n)

        var z = BlockCyclicMatrix(n: n, columns: wantVectors ? n : 0, blockSize: nb, gridRows: grid.rows,
                                  gridColumns: grid.columns, myRow: grid.myRow, myColumn: grid.myColumn)
        let descA = try a.descriptor(context: grid.context)
        // Z is not referenced without vectors; its descriptor must still be valid.
        let descZ = wantVectors ? try z.descriptor(context: grid.context) : descA
        var w = [Double](repeating: 0, count: n)
        padIfEmpty(&a.local)
        padIfEmpty(&z.local)

        var found: Int32 = 0
        var workQuery = [Double](repeating: 0, count: 3)
        var iworkQuery = [Int32](repeating: 0, count: 1)
        var info = ntk_pdsyevr(jobz, range, upper, Int32(n), &a.local, descA, il, iu, &found, &w, &z.local, descZ,
                               &workQuery, -1, &iworkQuery, -1)
        try agreeOnInfo(info, routine: "pdsyevr (workspace query)", world: world)

        // The workspace: PDSYEVR's own minimum and its documented one, and what PDSYNTRD
        // reads for UPLO = 'U'. The query's "optimal" size is not used: it provisions
        // PDSYTTRD's copy of the whole matrix (about n^2 / rows^2 on every rank), which
        // only the 'L' path uses; it would defeat the point of distributing.
        let np = a.localRows
        let nn = max(n, nb, 2)
        let np0 = BlockCyclicMatrix.localCount(nn, blockSize: nb, index: 0, processes: grid.rows)
        let prefix = 5 * n + 2
        var lworkNeeded = prefix + 1 + max((np + 1) * nb, 3 * nb)
        if wantVectors {
            let np00 = BlockCyclicMatrix.localCount(n, blockSize: nb, index: 0, processes: grid.rows)
            let mq00 = BlockCyclicMatrix.localCount(computed, blockSize: nb, index: 0, processes: grid.columns)
            let mq0 = BlockCyclicMatrix.localCount(max(computed, nb, 2), blockSize: nb, index: 0, processes: grid.columns)
            let perProcess = (computed + processes - 1) / processes
            lworkNeeded = max(lworkNeeded,
                              prefix + max(18 * n, np00 * mq00 + 2 * nb * nb) + (perProcess + 2) * n,
                              2 + 5 * n + max(18 * nn, np0 * mq0 + 2 * nb * nb) + (2 + perProcess) * nn)
        } else {
            lworkNeeded = max(lworkNeeded, prefix + 12 * n, 2 + 5 * n + max(12 * nn, nb * (np0 + 1)))
        }
        let lwork = try int32(lworkNeeded + 64, what: "pdsyevr workspace")
        let nnp = max(n, processes + 1, 4)
        let liwork = try int32(max(Int(iworkQuery[0]), (wantVectors ? 12 : 10) * nnp + 2 * n), what: "pdsyevr integer workspace")
        var work = [Double](repeating: 0, count: Int(lwork))
        var iwork = [Int32](repeating: 0, count: Int(liwork))
        info = ntk_pdsyevr(jobz, range, upper, Int32(n), &a.local, descA, il, iu, &found, &w, &z.local, descZ,
                           &work, lwork, &iwork, liwork)
        work = []
        try agreeOnInfo(info, routine: "pdsyevr", world: world)
        a.local = []
        let foundEverywhere = try world.allreduce(found, .min)
        let foundSomewhere = try world.allreduce(found, .max)
        if Int(foundEverywhere) != computed || Int(foundSomewhere) != computed {
            throw DistributedEigenError.scalapack(routine: "pdsyevr (found \(foundEverywhere) of \(computed) eigenvalues)", info: 0)
        }
        try world.broadcast(&w, root: grid.worldRanks[0])
        let values = Array(w[(computed - keep)..<computed])
        guard wantVectors else { return (values, nil) }

        // The kept pairs are Z's columns computed - keep ..< computed.
        var kept = BlockCyclicMatrix(n: n, columns: keep, blockSize: nb, gridRows: grid.rows, gridColumns: grid.columns,
                                     myRow: grid.myRow, myColumn: grid.myColumn)
        if computed == keep {
            // The first `keep` global columns are the first local columns.
            kept.local = Array(z.local.prefix(kept.localRows * kept.localColumns))
        } else {
            let descZ2 = try z.descriptor(context: grid.context)
            let descK = try kept.descriptor(context: grid.context)
            padIfEmpty(&kept.local)
            ntk_pdgemr2d(Int32(n), Int32(keep), z.local, Int32(computed - keep + 1), descZ2, &kept.local, descK, grid.context)
            kept.local.removeLast(kept.local.count - kept.localRows * kept.localColumns)
        }
        return (values, kept)
    }

    // MARK: - Helpers

    static func padIfEmpty(_ array: inout [Double]) {
        if array.isEmpty { array = [0] }
    }

    static func int32(_ value: Int, what: String) throws -> Int32 {
        guard value <= Int(Int32.max) else { throw DistributedEigenError.tooLarge("\(what) of \(value) elements") }
        return Int32(value)
    }

    /// Throws `.scalapack` on every rank if any rank's info is non-zero. Collective.
    static func agreeOnInfo(_ info: Int32, routine: String, world: Communicator) throws {
        let low = try world.allreduce(info, .min), high = try world.allreduce(info, .max)
        if low != 0 || high != 0 { throw DistributedEigenError.scalapack(routine: routine, info: low < 0 ? low : high) }
    }
}
