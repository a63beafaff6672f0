import Foundation
import Testing
@testable import LinearAlgebra

/// Stochastic Lanczos quadrature against the exact quadratic forms zᵀ f(A) z of its own
/// probes (LAPACK's eigendecomposition of A) and against the exact traces.
@Suite struct StochasticLanczosTests {
    static func multiply(_ a: [Double], n: Int) -> ([Double], Int) -> [Double] {
        { x, count in
            var y = [Double](repeating: 0, count: count * n)
            GEMM.multiply(m: count, n: n, k: n, a: x, lda: n, b: a, ldb: n, c: &y, ldc: n)
            return y
        }
    }

    /// (1/probes) Σ_p z_pᵀ f(A) z_p from A's eigendecomposition: what the quadrature must give
    /// exactly when it is exact for f.
    static func exactForms(_ a: [Double], n: Int, probes: Int, seed: UInt64, f: (Double) -> Double) throws -> Double {
        let eigen = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let v = eigen.vectors!, z = StochasticLanczos.probes(n: n, count: probes, seed: seed)
        var total = 0.0
        for p in 0..<probes {
            for j in 0..<n {
                var c = 0.0
                for i in 0..<n { c += v[i * n + j] * z[p * n + i] }
                total += c * c * f(eigen.values[j])
            }
        }
        return total / Double(probes)
    }

    static let functions: [(String, @Sendable (Double) -> Double)] = [
        ("x", { $0 }), ("x^2", { $0 * $0 }), ("x log x", { $0 > 0 ? $0 * log($0) : 0 }),
    ]

    /// Tolerance 1e-10 relative: with n steps the m-node Gauss rule is exact for every f on
    /// the n eigenvalues, so only rounding (Lanczos with full reorthogonalization, a
    /// 60 x 60 problem) separates the two; a wrong weight or node is off by O(1).
    @Test("with as many steps as the order, the quadrature is the exact quadratic form of each probe, for x, x² and x log x")
    func exactWithFullSteps() throws {
        let n = 60
        let a = BlockKrylovTests.matrix(n: n, seed: 5)
        let result = try StochasticLanczos.run(n: n, probes: 4, steps: n, seed: 3, apply: Self.multiply(a, n: n))
        for (name, f) in Self.functions {
            let expected = try Self.exactForms(a, n: n, probes: 4, seed: 3, f: f)
            let estimate = result.trace(of: f).estimate
            #expect(abs(estimate - expected) <= 1e-10 * abs(expected), "\(name): \(estimate) vs \(expected)")
        }
        for rule in result.rules { #expect(abs(rule.weights.reduce(0, +) - 1) <= 1e-12) }
    }

    /// Tolerance 1e-10 relative: an m-node Gauss rule is exact for polynomials of degree
    /// < 2m, so with 6 steps x and x² are exact whatever the spectrum.
    @Test("with few steps, polynomials of degree below 2m are still exact (the trace and the Frobenius norm)")
    func polynomialsExactWithFewSteps() throws {
        let n = 200
        let a = BlockKrylovTests.matrix(n: n, seed: 9)
        let result = try StochasticLanczos.run(n: n, probes: 3, steps: 6, seed: 4, apply: Self.multiply(a, n: n))
        #expect(result.products == 6)
        for (name, f) in Self.functions.prefix(2) {
            let expected = try Self.exactForms(a, n: n, probes: 3, seed: 4, f: f)
            #expect(abs(result.trace(of: f).estimate - expected) <= 1e-10 * abs(expected), "\(name)")
        }
    }

    /// Tolerance 4 standard errors (the estimate's own, from 32 probes): the Hutchinson
    /// estimates are unbiased, so a correct run is outside 4σ with probability < 1e-4, and the
    /// seed is fixed; a factor n or a missing weight is off by far more.
    @Test("trace, Frobenius norm, entropy and the eigenvalue count below the median agree with the exact spectrum within 4 standard errors")
    func estimatesWithinTheirErrors() throws {
        let n = 300
        let a = BlockKrylovTests.matrix(n: n, seed: 13)
        let exact = try SymmetricEigen.compute(matrix: a, n: n, vectors: false).values
        let result = try StochasticLanczos.run(n: n, probes: 32, steps: 40, seed: 8, apply: Self.multiply(a, n: n))
        let trace = result.trace { $0 }
        #expect(abs(trace.estimate - exact.reduce(0, +)) <= 4 * trace.standardError!)
        let frobenius = result.trace { $0 * $0 }
        #expect(abs(frobenius.estimate - exact.reduce(0) { $0 + $1 * $1 }) <= 4 * frobenius.standardError!)
        // The participation ratio (Σλ)²/Σλ², by the jackknife.
        let ratio = result.ratio([{ $0 }, { $0 * $0 }]) { $0[0] * $0[0] / $0[1] }
        let exactRatio = pow(exact.reduce(0, +), 2) / exact.reduce(0) { $0 + $1 * $1 }
        #expect(abs(ratio.estimate - exactRatio) <= 4 * ratio.standardError!, "\(ratio) vs \(exactRatio)")
        // The largest Ritz value converges to λ_max within 40 steps (relative 1e-8).
        #expect(abs(result.ritzRange.upperBound - exact.last!) <= 1e-8 * exact.last!)
        // The spectral CDF (220 eigenvalues at 1e-3, 80 spread above) between the cluster and
        // the spread part, and inside the spread part: within 0.08 of the exact fractions
        // (the probes' error is about 1/√(32·300) per point; the rest is the 40-node rules'
        // steps).
        for x in [2e-3, exact[n - 40], exact[n - 10]] {
            let fraction = Double(exact.filter { $0 <= x }.count) / Double(n)
            #expect(abs(result.cumulative(x) - fraction) <= 0.08, "CDF at \(x): \(result.cumulative(x)) vs \(fraction)")
        }
    }

    /// Tolerance 1e-10 relative: with the top K eigenpairs deflated, the estimate of tr A is
    /// Σ λ_top + (1/probes) Σ (Pz)ᵀ A (Pz) exactly (a degree-1 polynomial), P = I − VVᵀ.
    @Test("deflating the top eigenpairs: the deflated values count exactly, the rest is the projected probes' quadratic form, and the error shrinks")
    func deflation() throws {
        let n = 300, k = 8
        let a = BlockKrylovTests.matrix(n: n, seed: 13)
        let eigen = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        var v = [Double](repeating: 0, count: n * k)
        for i in 0..<n { for j in 0..<k { v[i * k + j] = eigen.vectors![i * n + (n - k + j)] } }
        let top = Array(eigen.values.suffix(k))
        let deflated = try StochasticLanczos.run(n: n, probes: 16, steps: 20, seed: 6, deflation: (v, top), apply: Self.multiply(a, n: n))
        let plain = try StochasticLanczos.run(n: n, probes: 16, steps: 20, seed: 6, apply: Self.multiply(a, n: n))
        let z = StochasticLanczos.probes(n: n, count: 16, seed: 6)
        var forms = 0.0
        for p in 0..<16 {
            var pz = Array(z[(p * n)..<((p + 1) * n)])
            for j in 0..<k {
                var c = 0.0
                for i in 0..<n { c += v[i * k + j] * pz[i] }
                for i in 0..<n { pz[i] -= c * v[i * k + j] }
            }
            for i in 0..<n { var s = 0.0; for q in 0..<n { s += a[i * n + q] * pz[q] }; forms += pz[i] * s }
        }
        let expected = top.reduce(0, +) + forms / 16
        let trace = deflated.trace { $0 }
        #expect(abs(trace.estimate - expected) <= 1e-10 * expected, "\(trace.estimate) vs \(expected)")
        #expect(deflated.deflated == top)
        let exactTrace = eigen.values.reduce(0, +)
        #expect(abs(trace.estimate - exactTrace) <= 4 * trace.standardError!)
        #expect(trace.standardError! < plain.trace { $0 }.standardError! / 2)
        #expect(abs(deflated.cumulative(eigen.values.last! * 2) - 1) <= 1e-9)
    }
}
