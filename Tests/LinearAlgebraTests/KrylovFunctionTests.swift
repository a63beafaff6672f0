import Foundation
import Testing
@testable import LinearAlgebra

/// Lanczos approximations of matrix functions against LAPACK's eigendecomposition.
@Suite struct KrylovFunctionTests {
    /// g(A) B exactly, from A = V diag(λ) Vᵀ.
    static func exact(_ a: [Double], n: Int, _ b: [Double], count: Int, _ g: (Double) -> Double) throws -> [Double] {
        let eigen = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let v = eigen.vectors!
        var result = [Double](repeating: 0, count: count * n)
        for r in 0..<count {
            for j in 0..<n {
                var c = 0.0
                for i in 0..<n { c += v[i * n + j] * b[r * n + i] }
                c *= g(eigen.values[j])
                for i in 0..<n { result[r * n + i] += c * v[i * n + j] }
            }
        }
        return result
    }

    /// Tolerance 1e-9 relative to the largest entry: the run stops when the last relative
    /// change is below 1e-12, the functions are smooth on the spectrum, and the result passes
    /// through an n = 200 eigendecomposition (rounding ~1e-13 κ-free for these bounded
    /// functions); a wrong weight, node or deflation term is off by O(1).
    @Test("exp-type dynamics functions and 1/λ of a kernel-like matrix, with and without the top eigenpairs deflated, equal the eigendecomposition's")
    func agreesWithEigen() throws {
        let n = 200, count = 3
        let a = BlockKrylovTests.matrix(n: n, seed: 17)
        let b = (0..<(count * n)).map { sin(Double($0) * 0.37) }
        let functions: [@Sendable (Double) -> Double] = [
            { -expm1(-0.3 * $0) / $0 }, { -expm1(-0.3 * $0) }, { 1 / $0 }, { -expm1(20 * log1p(-0.01 * $0)) },
        ]
        let eigen = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let k = 6
        var v = [Double](repeating: 0, count: n * k)
        for i in 0..<n { for j in 0..<k { v[i * k + j] = eigen.vectors![i * n + (n - k + j)] } }
        for deflation in [nil, (vectors: v, values: Array(eigen.values.suffix(k)))] {
            let result = try KrylovFunction.apply(functions: functions, n: n, rhs: b, count: count, deflation: deflation,
                                                  tolerance: 1e-12, maxSteps: n) { x, rows in
                var y = [Double](repeating: 0, count: rows * n)
                GEMM.multiply(m: rows, n: n, k: n, a: x, lda: n, b: a, ldb: n, c: &y, ldc: n)
                return y
            }
            for (j, g) in functions.enumerated() {
                let expected = try Self.exact(a, n: n, b, count: count, g)
                let scale = expected.reduce(0) { max($0, abs($1)) }
                let off = zip(result.values[j], expected).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
                #expect(off <= 1e-9, "function \(j), deflated \(deflation != nil): \(off)")
                #expect(result.estimatedErrors[j].allSatisfy { $0 <= 1e-12 })
            }
        }
    }
}
