import Foundation
import Testing
@testable import LinearAlgebra

/// Block Lanczos against LAPACK's dense eigensolver.
@Suite struct BlockKrylovTests {
    /// A kernel-like PSD matrix: Σᵢ cᵢ gᵢgᵢᵀ with decaying weights, plus a tight cluster
    /// near the top to make the block size matter.
    static func matrix(n: Int, seed: UInt64) -> [Double] {
        var state = seed
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) * 0x1.0p-53 - 0.5
        }
        let rank = min(n, 80)
        var g = (0..<(rank * n)).map { _ in uniform() }
        for r in 0..<rank { let w = pow(Double(r + 1), -1.2) * (r == 1 ? 0.999 : 1); for p in 0..<n { g[r * n + p] *= w.squareRoot() } }
        var a = [Double](repeating: 0, count: n * n)
        // A = Gᵀ G with G (rank × n) rows scaled.
        for i in 0..<n { for j in 0..<n { var s = 0.0; for r in 0..<rank { s += g[r * n + i] * g[r * n + j] }; a[i * n + j] = s } }
        for i in 0..<n { a[i * n + i] += 1e-3 }
        return a
    }

    /// Tolerance: eigenvalues within 1e-10 of LAPACK's relative to λ_max (the bound;
    /// the solver's own stopping residual is 1e-11 λ_max and the eigenvalue error is at most
    /// the residual), and the returned residual within that bound.
    @Test("the top K eigenpairs agree with LAPACK dsyevd to 1e-10 relative, for K = 1, 10, 32", arguments: [1, 10, 32])
    func agreesWithLAPACK(k: Int) throws {
        let n = 300
        let a = Self.matrix(n: n, seed: 11)
        let reference = try SymmetricEigen.compute(matrix: a, n: n, vectors: false).values
        var products = 0
        let result = try BlockKrylov.largest(k, n: n) { x, count in
            products += 1
            var y = [Double](repeating: 0, count: count * n)
            GEMM.multiply(m: count, n: n, k: n, a: x, lda: n, b: a, ldb: n, c: &y, ldc: n)  // rows · A (A symmetric)
            return y
        }
        let top = Array(reference.suffix(k))
        let scale = reference.last!
        #expect(result.values.count == k)
        #expect(zip(result.values, top).allSatisfy { abs($0 - $1) <= 1e-10 * scale }, "\(zip(result.values, top).map { abs($0 - $1) / scale }.max()!)")
        #expect(result.maxResidual <= 1e-10 * scale)
        #expect(products == result.products)
        // A v = λ v for the returned columns.
        var worst = 0.0
        for j in 0..<k {
            for i in 0..<n {
                var s = 0.0
                for p in 0..<n { s += a[i * n + p] * result.vectors[p * k + j] }
                worst = max(worst, abs(s - result.values[j] * result.vectors[i * k + j]))
            }
        }
        #expect(worst <= 1e-9 * scale)
    }
}
