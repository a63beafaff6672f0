import LinearAlgebra
import MPI
import TileKernels

/// A symmetric kernel as an operator, its tiles staying where the ranks computed them:
/// Θ X for a block of vectors is every rank's tiles times X, summed over the ranks by one
/// reduction. No rank holds more than its share of the kernel, and the block Lanczos
/// eigensolver (`BlockKrylov`) needs nothing else.
///
/// A tile (I, J) of the upper triangle contributes Y_I += T X_J and, off the diagonal,
/// Y_J += Tᵀ X_I. Diagonal tiles were computed on their upper triangle (and possibly some
/// entries below); they are mirrored here once, so the operator is exactly symmetric.
struct TileOperator: KernelOperator {
    let plan: TilePlan
    /// Doubles per sample pair and axis: k for the full kernel, else 1.
    let entry: Int
    /// This rank's tiles by index, row-major (rows·entry, columns·entry).
    let tiles: [Int: [Double]]
    /// Their indices, ascending: products are summed in this order, so that a run's results
    /// do not depend on a dictionary's (per-process random) iteration order.
    let indices: [Int]
    let world: Communicator

    init(plan: TilePlan, entry: Int, tiles: [Int: [Double]], world: Communicator) {
        self.plan = plan
        self.entry = entry
        self.world = world
        var mirrored = tiles
        for (index, values) in tiles where plan.symmetric && plan.tiles[index].row == plan.tiles[index].column {
            let size = plan.rowRange(plan.tiles[index].row).count * entry
            var full = values
            for i in 0..<size { for j in (i + 1)..<size { full[j * size + i] = full[i * size + j] } }
            mirrored[index] = full
        }
        self.tiles = mirrored
        self.indices = mirrored.keys.sorted()
    }

    /// The order of the operator (its rows).
    var order: Int { plan.rows * entry }
    /// Its columns (the order, when symmetric).
    var columns: Int { plan.columns * entry }

    /// Θ X for `count` vectors, rows of `x` (row-major (count, columns)), as rows of length
    /// `order`. A rectangular kernel (a cross kernel Θ(X*, X)) applies its tiles as they are.
    /// Collective.
    func apply(_ x: [Double], count: Int) throws -> [Double] {
        let n = order, input = columns
        var y = [Double](repeating: 0, count: count * n)
        // The products run in the tile kernels (the SIMD GEMM of the tiles themselves, faster
        // than BLAS at these thin shapes), each into a scratch block added into Y.
        let largest = plan.tileSize * entry
        var scratch = [Double](repeating: 0, count: count * largest)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    let s = sp.baseAddress!
                    func add(into start: Int, width: Int) {
                        for r in 0..<count {
                            let target = yp.baseAddress! + r * n + start, source = s + r * width
                            for j in 0..<width { target[j] += source[j] }
                        }
                    }
                    for index in indices {
                        let tile = tiles[index]!
                        let t = plan.tiles[index]
                        let rows = plan.rowRange(t.row), columns = plan.columnRange(t.column)
                        let r0 = rows.lowerBound * entry, c0 = columns.lowerBound * entry
                        let height = rows.count * entry, width = columns.count * entry
                        tile.withUnsafeBufferPointer { tp in
                            // Y[:, I] += X[:, J] Tᵀ: (count × width) times (width × height).
                            InnerProducts.multiplyTransposed(m: count, n: height, k: width, a: xp.baseAddress! + c0, lda: input,
                                                             b: tp.baseAddress!, ldb: width, c: s, ldc: height)
                            add(into: r0, width: height)
                            if plan.symmetric && t.row != t.column {
                                // Y[:, J] += X[:, I] T: (count × height) times (height × width).
                                InnerProducts.multiply(m: count, n: width, k: height, a: xp.baseAddress! + r0, lda: n,
                                                       b: tp.baseAddress!, ldb: width, c: s, ldc: width)
                                add(into: c0, width: width)
                            }
                        }
                    }
                }
            }
        }
        try world.allreduce(&y, .sum)
        return y
    }

    /// ‖Θ‖_F from every rank's tiles (those off the diagonal of a symmetric kernel count
    /// twice). Collective.
    func frobeniusNorm() throws -> Double {
        var sum = 0.0
        for index in indices {
            let t = plan.tiles[index]
            var squares = 0.0
            for value in tiles[index]! { squares += value * value }
            sum += (plan.symmetric && t.row != t.column ? 2 : 1) * squares
        }
        return try world.allreduce(sum, .sum).squareRoot()
    }

    /// tr Θ from the diagonal tiles (symmetric kernels). Collective.
    func trace() throws -> Double {
        var sum = 0.0
        for index in indices where plan.tiles[index].row == plan.tiles[index].column {
            let tile = tiles[index]!
            let size = plan.rowRange(plan.tiles[index].row).count * entry
            for i in 0..<size { sum += tile[i * size + i] }
        }
        return try world.allreduce(sum, .sum)
    }
}
