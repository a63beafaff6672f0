import CELPA
import CScaLAPACK
import MPI

/// The distributed library that solves a symmetric eigenproblem on the block-cyclic grid.
public enum DistributedLibrary: Sendable, Equatable, CustomStringConvertible {
    /// ScaLAPACK: pdsyevd for all pairs, pdsyevr for values only or the top K.
    case scalapack
    /// ELPA's one-stage (dense → tridiagonal) or two-stage (dense → banded → tridiagonal)
    /// solver; all eigenvalues, with or without their vectors.
    case elpa(stage: Int)

    public var description: String {
        switch self {
        case .scalapack: return "scalapack"
        case .elpa(let stage): return "elpa (\(stage)-stage)"
        }
    }

    /// The block size the solve runs with for an n x n matrix delivered in blocks of `nb`
    /// (the tile side) on a grid whose longer side has `processes` processes: the divisor
    /// of nb nearest 64 (at least 16 when nb allows it). Both libraries' reductions slow
    /// down with large blocks: at N = 8000 on 2 ranks, ELPA's two-stage values took 19.8 s
    /// at 64 against 27.2 s at 256, pdsyevr's 41.6 s against 52.8 s, pdsyevd's pairs 49.4 s
    /// against 63.0 s (docs/cluster.md, "Eigensolvers"). ELPA also fails when a process
    /// row or column holds no block, so for it the block is made small enough that there
    /// are at least `processes` blocks (nil when even blocks of 1 are too few: n < processes).
    public func solveBlockSize(n: Int, delivered nb: Int, processes: Int) -> Int? {
        var best = nb
        if nb > 64 {
            for d in 16...nb where nb % d == 0 && abs(d - 64) < abs(best - 64) { best = d }
        }
        guard case .elpa = self else { return best }
        if (n + best - 1) / best >= processes { return best }
        guard n >= processes else { return nil }
        return (1...best).last { nb % $0 == 0 && (n + $0 - 1) / $0 >= processes }
    }
}

extension ScaLAPACKEigen {
    /// Splits each upper-triangle block of size nb into (nb/sub)² blocks of size sub,
    /// keeping those on or above the diagonal (a diagonal block's lower sub-blocks are
    /// not read). The last block row and column may be short, as in the input.
    static func split(_ blocks: [(row: Int, column: Int, values: [Double])], n: Int, blockSize nb: Int,
                      into sub: Int) -> [(row: Int, column: Int, values: [Double])] {
        guard sub != nb else { return blocks }
        let ratio = nb / sub
        var result: [(row: Int, column: Int, values: [Double])] = []
        result.reserveCapacity(blocks.count * ratio * ratio)
        for block in blocks {
            let rows = min(n, (block.row + 1) * nb) - block.row * nb
            let columns = min(n, (block.column + 1) * nb) - block.column * nb
            for a in 0..<((rows + sub - 1) / sub) {
                for b in 0..<((columns + sub - 1) / sub) {
                    let I = block.row * ratio + a, J = block.column * ratio + b
                    if I > J { continue }
                    let r0 = a * sub, c0 = b * sub
                    let r1 = min(rows, r0 + sub), c1 = min(columns, c0 + sub)
                    var values = [Double](repeating: 0, count: (r1 - r0) * (c1 - c0))
                    block.values.withUnsafeBufferPointer { source in
                        values.withUnsafeMutableBufferPointer { target in
                            for r in r0..<r1 {
                                for c in c0..<c1 { target[(r - r0) * (c1 - c0) + c - c0] = source[r * columns + c] }
                            }
                        }
                    }
                    result.append((I, J, values))
                }
            }
        }
        return result
    }

    /// All eigenvalues, and with `vectors` all eigenvectors, with ELPA. Collective.
    static func elpa(_ a: inout BlockCyclicMatrix, stage: Int, vectors wantVectors: Bool, grid: ProcessGrid,
                     world: Communicator) throws -> (values: [Double], vectors: BlockCyclicMatrix?) {
        let n = a.n, nb = a.blockSize
        var z = BlockCyclicMatrix(n: n, columns: wantVectors ? n : 0, blockSize: nb, gridRows: grid.rows, gridColumns: grid.columns,
                                  myRow: grid.myRow, myColumn: grid.myColumn)
        var w = [Double](repeating: 0, count: n)
        // ELPA reads the full matrix: mirror the upper triangle into the lower one.
        try symmetrize(&a, grid: grid, world: world)
        padIfEmpty(&a.local)
        padIfEmpty(&z.local)
        let status = ntk_elpa_solve(Int32(n), Int32(nb), Int32(a.localRows), Int32(a.localColumns), world.fortranHandle,
                                    Int32(grid.myRow), Int32(grid.myColumn), grid.context, Int32(stage), wantVectors ? 1 : 0,
                                    &a.local, &w, &z.local)
        let worst = try world.allreduce(status, .min)
        if worst != 0 {
            let text = ntk_elpa_error_string(worst).map { String(cString: $0) } ?? "error \(worst)"
            throw DistributedEigenError.elpa(stage: stage, code: worst, message: text)
        }
        a.local = []
        // Every process has all eigenvalues; take process (0, 0)'s so that all agree bitwise.
        try world.broadcast(&w, root: grid.worldRanks[0])
        guard wantVectors else { return (w, nil) }
        z.local.removeLast(z.local.count - z.localRows * z.localColumns)
        return (w, z)
    }

    /// Fills the strict lower triangle of the distributed matrix from its upper triangle
    /// (pdtran of the matrix, then a copy below the diagonal). Collective.
    static func symmetrize(_ a: inout BlockCyclicMatrix, grid: ProcessGrid, world: Communicator) throws {
        let n = a.n
        var transposed = BlockCyclicMatrix(n: n, columns: n, blockSize: a.blockSize, gridRows: grid.rows, gridColumns: grid.columns,
                                           myRow: grid.myRow, myColumn: grid.myColumn)
        let desc = try a.descriptor(context: grid.context)
        padIfEmpty(&a.local)
        padIfEmpty(&transposed.local)
        ntk_pdtran(Int32(n), Int32(n), 1.0, a.local, desc, 0.0, &transposed.local, desc)
        for j in 0..<a.localColumns {
            let column = a.globalIndex(localRow: 0, localColumn: j).column
            for i in 0..<a.localRows where a.globalIndex(localRow: i, localColumn: 0).row > column {
                a.local[j * a.localRows + i] = transposed.local[j * a.localRows + i]
            }
        }
        a.local.removeLast(a.local.count - a.localRows * a.localColumns)
    }
}
