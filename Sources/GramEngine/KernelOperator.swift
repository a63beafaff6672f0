import LinearAlgebra

/// A symmetric kernel Θ that no rank holds, known through products with blocks of
/// vectors: the face the distributed solvers (block Lanczos, stochastic Lanczos
/// quadrature, conjugate gradients) see. Two implementations: `TileOperator` (the tiles in
/// the memory of the ranks that computed them) and `KernelFileOperator` (out of core: the
/// kernel in kernel.npy on disk, each rank streaming its panels).
protocol KernelOperator {
    /// The order of Θ (N·k' rows).
    var order: Int { get }
    /// Θ X for `count` vectors, rows of `x` (row-major (count, order)), as rows of length
    /// `order`; every rank passes the same X and gets the same product. Collective.
    func apply(_ x: [Double], count: Int) throws -> [Double]
    /// tr Θ. Collective.
    func trace() throws -> Double
    /// ‖Θ‖_F (an upper bound on ‖Θ‖₂; also for a rectangular Θ(X*, X)). Collective.
    func frobeniusNorm() throws -> Double
}

extension KernelOperator {
    /// The `k` largest eigenpairs by block Lanczos (every rank gets the same result).
    /// Collective.
    func largest(_ k: Int) throws -> BlockKrylov.Result {
        if k > order { throw NTKError(.usage, "--eigen-top \(k) exceeds the kernel's order \(order)") }
        return try BlockKrylov.largest(k, n: order) { x, count in try apply(x, count: count) }
    }
}
