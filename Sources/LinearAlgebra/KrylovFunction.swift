import Foundation

/// g(A) b for several functions g of a symmetric operator A known only through products,
/// by Lanczos (the Krylov approximation of a matrix function; docs/maths.md §10).
///
/// For each right-hand side b, m Lanczos steps from q₁ = b/‖b‖ give A Q_m = Q_m T_m + …, and
/// g(A) b ≈ ‖b‖ Q_m g(T_m) e₁, exact when g is a polynomial of degree < m and, for smooth g,
/// converging as the best polynomial approximation of g on the spectrum. With `deflation`
/// (K exact eigenpairs V, λ), g(A) b = V g(λ) Vᵀ b + g(PAP) P b with P = I − VVᵀ: the top of
/// the spectrum is handled exactly and the Krylov part sees only the rest (the same gain as
/// CG's spectral preconditioner).
///
/// Every `check` steps the approximations are compared with the previous check's; the
/// run stops when, for every function and right-hand side, ‖u_m − u_prev‖/‖u_m‖ ≤ `tolerance`
/// (u = g(T)e₁, an a posteriori estimate of the error, recorded), or when a Krylov space
/// closes (then the approximation is exact). All right-hand sides advance together: one
/// product of A with the block per step. Vectors are rows (count, n), as in `BlockKrylov`.
public enum KrylovFunction {
    public struct Result: Sendable {
        /// Per function, g(A) B as rows (count, n).
        public var values: [[Double]]
        /// Per function and right-hand side, the last relative change ‖u_m − u_prev‖/‖u_m‖
        /// (0 where the Krylov space closed: exact).
        public var estimatedErrors: [[Double]]
        /// Lanczos steps (the most of any right-hand side) and products with the block.
        public var steps: Int
        public var products: Int
        /// Per right-hand side, what the a posteriori error bounds of `KrylovFunction.bounds`
        /// need (docs/maths.md §10).
        public var projections: [Projection]
    }

    /// One right-hand side's Lanczos run, for the error bounds: T_m, the next off-diagonal
    /// h = β_m (0 when the space closed), ‖Pb‖, the defect of the computed Lanczos relation
    /// ‖PAPQ − QT − h q_{m+1}e_mᵀ‖_F (from the reorthogonalization's coefficients: rounding,
    /// for exact recurrences 0), Vᵀb, and with the deflated pairs' residuals R (rows rᵢ =
    /// Avᵢ − λᵢvᵢ) the coupling rᵢ·q_l (m × K, row-major: row l for q_l) through which A
    /// leaves range(P).
    public struct Projection: Sendable {
        public var alpha: [Double]
        public var beta: [Double]
        public var h: Double
        public var norm: Double
        public var defect: Double
        public var coefficients: [Double]
        public var coupling: [Double]
    }

    public enum Failure: Error, CustomStringConvertible {
        case notConverged(steps: Int, estimate: Double, tolerance: Double)
        public var description: String {
            switch self {
            case let .notConverged(steps, estimate, tolerance):
                return "the Krylov approximation of the dynamics did not converge in \(steps) steps (estimated error \(estimate), tolerance \(tolerance)); use --solver eigen, or fewer times far from 0 and inf"
            }
        }
    }

    public static func apply(functions: [@Sendable (Double) -> Double], n: Int, rhs b: [Double], count: Int,
                             deflation: (vectors: [Double], values: [Double])? = nil, residuals: [Double]? = nil,
                             tolerance: Double = 1e-10, maxSteps: Int = 2000, check: Int = 10,
                             apply: ([Double], Int) throws -> [Double]) throws -> Result {
        precondition(b.count == count * n && count >= 1 && !functions.isEmpty)
        let kDeflated = deflation?.values.count ?? 0
        precondition(residuals == nil || residuals!.count == kDeflated * n)
        // rᵢ · q for the deflated pairs' residuals, K values per basis vector.
        func couple(_ q: ArraySlice<Double>) -> [Double] {
            guard let residuals, kDeflated > 0 else { return [] }
            var out = [Double](repeating: 0, count: kDeflated)
            let row = Array(q)
            GEMM.multiplyTransposed(m: 1, n: kDeflated, k: n, a: row, lda: n, b: residuals, ldb: n, c: &out, ldc: kDeflated)
            return out
        }
        // X ← X − (X V) Vᵀ for `rows` rows; returns X V (before the projection).
        func project(_ x: inout [Double], rows: Int) -> [Double] {
            guard let deflation else { return [] }
            return LanczosSteps.project(&x, rows: rows, n: n, vectors: deflation.vectors, k: kDeflated)
        }
        var start = b
        let coefficients = project(&start, rows: count)   // Vᵀ b per row
        _ = project(&start, rows: count)
        var norms = [Double](repeating: 0, count: count)
        var v = start
        for r in 0..<count {
            var s = 0.0
            for e in 0..<n { s += v[r * n + e] * v[r * n + e] }
            norms[r] = s.squareRoot()
            let inverse = norms[r] > 0 ? 1 / norms[r] : 0
            for e in 0..<n { v[r * n + e] *= inverse }
        }
        var basis = [[Double]](repeating: [], count: count)
        var coupling = [[Double]](repeating: [], count: count)
        var defects = [Double](repeating: 0, count: count)
        var h = [Double](repeating: 0, count: count)
        for r in 0..<count where norms[r] > 0 {
            basis[r] += v[(r * n)..<((r + 1) * n)]
            coupling[r] = couple(v[(r * n)..<((r + 1) * n)])
        }
        var alpha = [[Double]](repeating: [], count: count), beta = [[Double]](repeating: [], count: count)
        var active = norms.map { $0 > 0 }
        var closed = norms.map { !($0 > 0) }
        var previous = [[[Double]]](repeating: [[Double]](repeating: [], count: count), count: functions.count)
        var errors = [[Double]](repeating: [Double](repeating: .infinity, count: count), count: functions.count)
        for r in 0..<count where closed[r] { for j in functions.indices { errors[j][r] = 0 } }
        var products = 0, steps = 0

        // g(T) e₁ for the rule of right-hand side r, every function.
        func small(_ r: Int) throws -> [[Double]] {
            let size = alpha[r].count
            guard size > 0 else { return functions.map { _ in [] } }
            let eigen = try LanczosSteps.tridiagonal(alpha: alpha[r], beta: beta[r])
            let s = eigen.vectors!
            return functions.map { g in
                var u = [Double](repeating: 0, count: size)
                for j in 0..<size {
                    let weight = s[j] * g(eigen.values[j])   // (Sᵀe₁)_j g(θ_j)
                    for i in 0..<size { u[i] += s[i * size + j] * weight }
                }
                return u
            }
        }

        while active.contains(true) {
            if steps >= maxSteps {
                let worst = errors.flatMap { $0 }.max() ?? .infinity
                throw Failure.notConverged(steps: steps, estimate: worst, tolerance: tolerance)
            }
            var w = try apply(v, count)
            _ = project(&w, rows: count)
            products += 1
            steps += 1
            var next = [Double](repeating: 0, count: count * n)
            for r in 0..<count where active[r] {
                let row = r * n
                var wr = Array(w[row..<(row + n)])
                var a = 0.0
                for e in 0..<n { a += v[row + e] * wr[e] }
                alpha[r].append(a)
                let size = alpha[r].count
                // The column's defect fⱼ = w − αqⱼ − βⱼ₋₁qⱼ₋₁ − βⱼqⱼ₊₁ = Q(c − αeⱼ − βⱼ₋₁eⱼ₋₁).
                var removed = LanczosSteps.reorthogonalize(&wr, against: basis[r], count: size, n: n)
                removed[size - 1] -= a
                if size >= 2 { removed[size - 2] -= beta[r][size - 2] }
                defects[r] += removed.reduce(0) { $0 + $1 * $1 }
                var bnorm = 0.0
                for e in 0..<n { bnorm += wr[e] * wr[e] }
                bnorm = bnorm.squareRoot()
                let largest = alpha[r].reduce(0) { Swift.max($0, abs($1)) }
                if !(bnorm > 1e-12 * Swift.max(largest, Double.leastNormalMagnitude)) || size >= n - kDeflated {
                    // The Krylov space closed: g(T) e₁ is exact (what is left over, wr, is
                    // the relation's defect).
                    defects[r] += bnorm * bnorm
                    active[r] = false
                    closed[r] = true
                    for j in functions.indices { errors[j][r] = 0 }
                    continue
                }
                beta[r].append(bnorm)
                h[r] = bnorm
                for e in 0..<n { next[row + e] = wr[e] / bnorm }
                basis[r] += next[row..<(row + n)]
                coupling[r] += couple(next[row..<(row + n)])
            }
            v = next
            if steps % check == 0 {
                for r in 0..<count where active[r] {
                    let current = try small(r)
                    var converged = true
                    for j in functions.indices {
                        let old = previous[j][r]
                        var diff = 0.0, size = 0.0
                        for i in current[j].indices {
                            let o = i < old.count ? old[i] : 0
                            diff += (current[j][i] - o) * (current[j][i] - o)
                            size += current[j][i] * current[j][i]
                        }
                        errors[j][r] = old.isEmpty ? .infinity : (size > 0 ? (diff / size).squareRoot() : diff.squareRoot())
                        if !(errors[j][r] <= tolerance) { converged = false }
                        previous[j][r] = current[j]
                    }
                    if converged { active[r] = false }
                }
            }
        }

        // x = V g(λ) Vᵀ b + ‖Pb‖ Q g(T) e₁.
        var values = [[Double]](repeating: [Double](repeating: 0, count: count * n), count: functions.count)
        for r in 0..<count {
            let u = try small(r)
            let size = alpha[r].count
            for j in functions.indices {
                if size > 0 {
                    basis[r].withUnsafeBufferPointer { q in
                        values[j].withUnsafeMutableBufferPointer { out in
                            u[j].withUnsafeBufferPointer { up in
                                // (1 × n) = ‖Pb‖ uᵀ (1 × size) Q (size × n)
                                GEMM.multiply(m: 1, n: n, k: size, alpha: norms[r], a: up.baseAddress!, lda: size, b: q.baseAddress!, ldb: n,
                                              beta: 0, c: out.baseAddress! + r * n, ldc: n)
                            }
                        }
                    }
                }
                if let deflation, kDeflated > 0 {
                    for i in 0..<kDeflated {
                        let weight = functions[j](deflation.values[i]) * coefficients[r * kDeflated + i]
                        for e in 0..<n { values[j][r * n + e] += weight * deflation.vectors[e * kDeflated + i] }
                    }
                }
            }
        }
        // The last basis vector q_{m+1} enters the bounds only through h; its coupling goes.
        let projections = (0..<count).map { r -> Projection in
            let size = alpha[r].count
            let m = residuals == nil ? 0 : kDeflated * size
            return Projection(alpha: alpha[r], beta: Array(beta[r].prefix(Swift.max(0, size - 1))), h: closed[r] ? 0 : h[r],
                              norm: norms[r], defect: defects[r].squareRoot(),
                              coefficients: kDeflated > 0 ? Array(coefficients[(r * kDeflated)..<((r + 1) * kDeflated)]) : [],
                              coupling: Array(coupling[r].prefix(m)))
        }
        return Result(values: values, estimatedErrors: errors, steps: steps, products: products, projections: projections)
    }
}
