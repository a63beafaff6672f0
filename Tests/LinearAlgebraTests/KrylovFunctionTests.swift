import Foundation
import Testing
@testable import LinearAlgebra

/// Lanczos approximations of matrix functions against LAPACK's eigendecomposition.
@Suite struct KrylovFunctionTests {
    /// g(A) B exactly, from A = V diag(λ) Vᵀ.
    static func exact(_ a: [Double], n: Int, _ b: [Double], count: Int, _ g: (Double) -> Double) throws -> [Double] {
        exact(try SymmetricEigen.compute(matrix: a, n: n, vectors: true), n: n, b, count: count, g)
    }

    static func exact(_ eigen: SymmetricEigen, n: Int, _ b: [Double], count: Int, _ g: (Double) -> Double) -> [Double] {
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

    /// The a posteriori bounds (`KrylovFunction.bounds`) against the true errors, with
    /// deflated pairs from a loose block Lanczos (residuals ~1e-5 of λ_max, so the coupling
    /// terms matter) and runs stopped early (tolerance 1e-3 and 1e-6, so the Lanczos terms
    /// matter). Two claims, each able to fail: every true error is at most its bound (plus
    /// 1e-12 of ‖b‖ and of the result's norm for rounding, which the bounds leave out: the
    /// reference passes through an n = 200 eigendecomposition whose eigenvectors carry errors
    /// of about ε‖A‖/gap ≈ 4e-13 here, λ_max 17.8 and gaps down to 5e-3), and, when the bounds
    /// know λ_min(A) ≥ δ + 1e-3 (true of this matrix), the bound is within a
    /// factor 1e3 of the error (or below 1e-9 of ‖b‖), so it is not vacuous.
    @Test("the a posteriori error bounds hold and are within 1e3 of the true errors: flow, steps and t = inf, deflated and not, with a diagonal shift")
    func boundsHold() throws {
        let n = 200, count = 2
        let a = BlockKrylovTests.matrix(n: n, seed: 23)
        let b = (0..<(count * n)).map { cos(Double($0) * 0.61) + 0.3 }
        let product: ([Double], Int) throws -> [Double] = { x, rows in
            var y = [Double](repeating: 0, count: rows * n)
            GEMM.multiply(m: rows, n: n, k: n, a: x, lda: n, b: a, ldb: n, c: &y, ldc: n)
            return y
        }
        // The top 5 eigenvectors perturbed by 1e-5 and orthonormalized, their Rayleigh
        // quotients, and their residuals R = AV − VΛ.
        let eigen = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let kTop = 5
        var rows = [[Double]]()
        for j in 0..<kTop {
            var v = (0..<n).map { eigen.vectors![$0 * n + (n - 1 - j)] + 1e-5 * sin(Double(7 * $0 + 3 * j)) }
            for u in rows { let d = zip(u, v).reduce(0) { $0 + $1.0 * $1.1 }; for p in 0..<n { v[p] -= d * u[p] } }
            let s = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            rows.append(v.map { $0 / s })
        }
        let av = try product(rows.flatMap { $0 }, kTop)
        var values = [Double](repeating: 0, count: kTop), residuals = [Double](repeating: 0, count: kTop * n)
        var vectors = [Double](repeating: 0, count: n * kTop)
        for j in 0..<kTop {
            // Ascending, as BlockKrylov returns them.
            let slot = kTop - 1 - j
            values[slot] = (0..<n).reduce(0) { $0 + rows[j][$1] * av[j * n + $1] }
            for p in 0..<n {
                residuals[slot * n + p] = av[j * n + p] - values[slot] * rows[j][p]
                vectors[p * kTop + slot] = rows[j][p]
            }
        }
        let top = (values: values, vectors: vectors, residuals: residuals)
        let largestResidual = (0..<kTop).map { i in (0..<n).reduce(0) { $0 + residuals[i * n + $1] * residuals[i * n + $1] }.squareRoot() }.max()!
        #expect(largestResidual > 1e-6 * eigen.values.last!, "the deflated pairs should be inexact: \(largestResidual)")
        let rate = 1 / eigen.values.last!
        let times: [(KrylovFunction.Dynamics, Double)] = [(.flow(0.7), 0), (.flow(40), 0), (.flow(5000), 0), (.steps(30, rate: rate), 0),
                                                          (.steps(700, rate: rate), 0), (.flow(.infinity), 0)]
        var worstRatio = 0.0
        for shift in [0.0, 2e-3] {
            // Per time: the train change 1 − E(λ) and the coefficients ∫ E, of λ + δ clamped.
            func train(_ time: KrylovFunction.Dynamics) -> @Sendable (Double) -> Double {
                switch time {
                case .flow(let t): return { t == .infinity ? ($0 + shift > 0 ? 1 : 0) : -expm1(-t * max($0 + shift, 0)) }
                case .steps(let s, let r): return { 1 - pow(1 - r * max($0 + shift, 0), Double(s)) }
                }
            }
            func coefficients(_ time: KrylovFunction.Dynamics) -> @Sendable (Double) -> Double {
                let g = train(time)
                let atZero: Double
                switch time {
                case .flow(let t): atZero = t == .infinity ? 0 : t
                case .steps(let s, let r): atZero = r * Double(s)
                }
                return { let x = max($0 + shift, 0); return x > 0 ? g($0) / x : atZero }
            }
            var functions: [@Sendable (Double) -> Double] = []
            for (time, _) in times { functions += [train(time), coefficients(time)] }
            var shifted = a
            for i in 0..<n { shifted[i * n + i] += shift }
            let deflatedPairs = KrylovFunction.Deflated(values: top.values, vectors: top.vectors, residuals: top.residuals, n: n)
            // The certified upper end of the spectrum, as predict takes it.
            let upper = min((0..<n).reduce(0.0) { $0 + shifted[$1 * n + $1] }, a.reduce(0.0) { $0 + $1 * $1 }.squareRoot() + shift)
            for (deflated, tolerance) in [(false, 1e-3), (true, 1e-6)] {
                let result = try KrylovFunction.apply(functions: functions, n: n, rhs: b, count: count,
                                                      deflation: deflated ? (top.vectors, top.values) : nil,
                                                      residuals: deflated ? top.residuals : nil,
                                                      tolerance: tolerance, maxSteps: n, apply: product)
                for r in 0..<count {
                    let row = Array(b[(r * n)..<((r + 1) * n)])
                    let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    // λ_min(A) ≥ δ + 1e-3 for this matrix (known: the bounds then claim to be
                    // tight), or only ≥ δ (what predict knows of a kernel: they must hold).
                    for known in [true, false] {
                    let bounds = try KrylovFunction.bounds(result.projections[r], deflated: deflated ? deflatedPairs : nil,
                                                           shift: shift, upper: upper, lower: shift + (known ? 1e-3 : 0),
                                                           dynamics: times.map(\.0))
                    for (index, (time, _)) in times.enumerated() {
                        let label = "\(time), shift \(shift), deflated \(deflated), tolerance \(tolerance), rhs \(r), λ_min known \(known)"
                        // The error, and the size of the exact result (rounding scales with it).
                        func error(_ j: Int, _ g: (Double) -> Double) throws -> (Double, Double) {
                            let exact = Self.exact(eigen, n: n, row, count: 1, g)
                            let computed = result.values[j][(r * n)..<((r + 1) * n)]
                            return (zip(computed, exact).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot(),
                                    exact.reduce(0) { $0 + $1 * $1 }.squareRoot())
                        }
                        let bound = bounds[index]
                        let slack = 1e-12 * norm
                        if bound.isResidual {
                            // ‖b − AĈ‖ itself.
                            let exactCoefficients = Array(result.values[2 * index + 1][(r * n)..<((r + 1) * n)])
                            var ac = [Double](repeating: 0, count: n)
                            GEMM.multiply(m: 1, n: n, k: n, a: exactCoefficients, lda: n, b: shifted, ldb: n, c: &ac, ldc: n)
                            let residual = zip(row, ac).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
                            let value = try #require(bound.train)
                            #expect(residual <= value + slack, "\(label): residual \(residual) > \(value)")
                            #expect(value <= 1e3 * residual + 1e-9 * norm, "\(label): residual bound \(value) for \(residual)")
                            _ = known
                            continue
                        }
                        for (j, value) in [(2 * index, bound.train), (2 * index + 1, bound.coefficients)] {
                            let value = try #require(value, "\(label)")
                            let (actual, size) = try error(j, j % 2 == 0 ? train(time) : coefficients(time))
                            #expect(actual <= value + slack + 1e-12 * size, "\(label), function \(j % 2): error \(actual) > bound \(value)")
                            if known {
                                #expect(value <= 1e3 * actual + 1e-9 * norm * (j % 2 == 0 ? 1 : 1 / eigen.values[0]), "\(label), function \(j % 2): bound \(value) for \(actual)")
                                if actual > 1e-9 * norm { worstRatio = max(worstRatio, value / actual) }
                            }
                        }
                    }
                    }
                }
            }
        }
        print("KrylovFunctionTests.boundsHold: largest bound / error \(worstRatio)")
    }

    /// Past the stable learning rate (r λ̄ > 2, λ̄ = ‖A‖_F ≈ 1.1 λ_max here) the steps get no
    /// bound, rather than a wrong one.
    @Test("steps past the stable rate have no bound")
    func unstableSteps() throws {
        let n = 60
        let a = BlockKrylovTests.matrix(n: n, seed: 5)
        let b = (0..<n).map { sin(Double($0)) }
        let result = try KrylovFunction.apply(functions: [{ $0 }], n: n, rhs: b, count: 1, tolerance: 1e-8, maxSteps: n) { x, rows in
            var y = [Double](repeating: 0, count: rows * n)
            GEMM.multiply(m: rows, n: n, k: n, a: x, lda: n, b: a, ldb: n, c: &y, ldc: n)
            return y
        }
        let lambdaMax = try SymmetricEigen.compute(matrix: a, n: n, vectors: false).values.last!
        let bounds = try KrylovFunction.bounds(result.projections[0], deflated: nil, shift: 0, upper: a.reduce(0.0) { $0 + $1 * $1 }.squareRoot(), lower: 0,
                                               dynamics: [.steps(10, rate: 2.5 / lambdaMax), .steps(10, rate: 1.5 / lambdaMax)])
        #expect(bounds[0].train == nil && bounds[0].coefficients == nil)
        #expect(bounds[1].train != nil && bounds[1].coefficients != nil)
    }
}
