import Foundation

/// (A + σI) X = B for a symmetric positive semidefinite operator A known only through
/// products A P, by preconditioned conjugate gradients, every right-hand side its own CG
/// but all sharing one product per step (one reduction when A is distributed).
///
/// The preconditioner is spectral: with the top K eigenpairs (V, λ) of A,
/// M⁻¹ = V diag(1/(λ + σ)) Vᵀ + (I − VVᵀ)/(λ_K + σ), so that M⁻¹(A + σI) has the eigenvalue 1
/// on the top K directions and (λ_j + σ)/(λ_K + σ) ≤ 1 on the rest: the condition number falls
/// from (λ_max + σ)/(λ_min + σ) to (λ_K + σ)/(λ_min + σ) (docs/maths.md §10).
///
/// Vectors are rows, as in `BlockKrylov`: B is row-major (count, n), and `apply` gets a
/// row-major (count, n) block and returns A times it. Every rank that calls `solve` with the
/// same arguments follows the same steps.
public enum ConjugateGradient {
    /// The spectral preconditioner from K eigenpairs: `vectors` row-major (n, K), column j
    /// for `values[j]` (any order).
    public struct Preconditioner: Sendable {
        public var vectors: [Double]
        public var values: [Double]
        public init(vectors: [Double], values: [Double]) {
            self.vectors = vectors
            self.values = values
        }
    }

    public struct Result: Sendable {
        /// X, row-major (count, n).
        public var solution: [Double]
        /// Steps taken (the slowest right-hand side's).
        public var iterations: Int
        /// Per right-hand side ‖B − (A + σI)X‖ / ‖B‖, recomputed with one more product.
        public var relativeResiduals: [Double]
        /// Products with blocks of `count` vectors.
        public var products: Int
    }

    public enum Failure: Error, CustomStringConvertible {
        case notConverged(iterations: Int, residual: Double, tolerance: Double)
        case indefinite

        public var description: String {
            switch self {
            case let .notConverged(iterations, residual, tolerance):
                return "conjugate gradients did not converge in \(iterations) steps (relative residual \(residual), tolerance \(tolerance)); the kernel is too ill-conditioned: add --diag-reg, or use --solver eigen"
            case .indefinite:
                return "the kernel is not positive semidefinite along a search direction (pᵀ(A + σI)p ≤ 0): add --diag-reg, or use --solver eigen"
            }
        }
    }

    /// Solves (A + σI) X = B to relative residual `tolerance` per right-hand side.
    public static func solve(n: Int, rhs b: [Double], count: Int, shift sigma: Double = 0, tolerance: Double = 1e-10,
                             maxIterations: Int = 5000, preconditioner: Preconditioner? = nil,
                             apply: ([Double], Int) throws -> [Double]) throws -> Result {
        precondition(b.count == count * n && count >= 1)
        func dot(_ a: [Double], _ c: [Double], _ row: Int) -> Double {
            var s = 0.0
            for e in (row * n)..<((row + 1) * n) { s += a[e] * c[e] }
            return s
        }
        func shifted(_ p: [Double]) throws -> [Double] {
            var q = try apply(p, count)
            if sigma != 0 { for e in q.indices { q[e] += sigma * p[e] } }
            return q
        }
        // M⁻¹ R for the block R.
        let k = preconditioner?.values.count ?? 0
        let floorValue = preconditioner.flatMap { $0.values.min() }.map { $0 + sigma }
        func preconditioned(_ r: [Double]) -> [Double] {
            guard let preconditioner, k > 0, let floorValue, floorValue > 0 else { return r }
            var z = r.map { $0 / floorValue }
            var c = [Double](repeating: 0, count: count * k)
            r.withUnsafeBufferPointer { rp in
                preconditioner.vectors.withUnsafeBufferPointer { vp in
                    c.withUnsafeMutableBufferPointer { cp in
                        GEMM.multiply(m: count, n: k, k: n, a: rp.baseAddress!, lda: n, b: vp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: k)
                    }
                }
            }
            for row in 0..<count {
                for j in 0..<k { c[row * k + j] *= 1 / (preconditioner.values[j] + sigma) - 1 / floorValue }
            }
            z.withUnsafeMutableBufferPointer { zp in
                preconditioner.vectors.withUnsafeBufferPointer { vp in
                    c.withUnsafeBufferPointer { cp in
                        GEMM.multiplyTransposed(m: count, n: n, k: k, a: cp.baseAddress!, lda: k, b: vp.baseAddress!, ldb: k,
                                                beta: 1, c: zp.baseAddress!, ldc: n)
                    }
                }
            }
            return z
        }

        let norms = (0..<count).map { dot(b, b, $0).squareRoot() }
        var x = [Double](repeating: 0, count: count * n)
        var r = b
        var z = preconditioned(r)
        var p = z
        var rz = (0..<count).map { dot(r, z, $0) }
        var active = norms.map { $0 > 0 }
        var iterations = 0, products = 0
        var worst = 0.0
        while active.contains(true) {
            if iterations >= maxIterations {
                throw Failure.notConverged(iterations: iterations, residual: worst, tolerance: tolerance)
            }
            let q = try shifted(p)
            products += 1
            iterations += 1
            worst = 0
            for row in 0..<count where active[row] {
                let curvature = dot(p, q, row)
                guard curvature > 0 else { throw Failure.indefinite }
                let alpha = rz[row] / curvature
                for e in (row * n)..<((row + 1) * n) {
                    x[e] += alpha * p[e]
                    r[e] -= alpha * q[e]
                }
                let residual = dot(r, r, row).squareRoot() / norms[row]
                worst = Swift.max(worst, residual)
                if residual <= tolerance {
                    active[row] = false
                    for e in (row * n)..<((row + 1) * n) { p[e] = 0 }
                }
            }
            guard active.contains(true) else { break }
            z = preconditioned(r)
            for row in 0..<count where active[row] {
                let next = dot(r, z, row)
                let beta = next / rz[row]
                rz[row] = next
                for e in (row * n)..<((row + 1) * n) { p[e] = z[e] + beta * p[e] }
            }
        }
        // The true residuals, with one more product.
        let ax = try shifted(x)
        products += 1
        let residuals = (0..<count).map { row -> Double in
            guard norms[row] > 0 else { return 0 }
            var s = 0.0
            for e in (row * n)..<((row + 1) * n) { s += (b[e] - ax[e]) * (b[e] - ax[e]) }
            return s.squareRoot() / norms[row]
        }
        return Result(solution: x, iterations: iterations, relativeResiduals: residuals, products: products)
    }
}
