import Testing
@testable import LinearAlgebra

/// A random symmetric matrix with entries in [-1, 1] from a fixed LCG.
func randomSymmetric(_ n: Int, seed: UInt64) -> [Double] {
    var state = seed
    func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1.0p-53 * 2 - 1
    }
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in i..<n { let v = next(); a[i * n + j] = v; a[j * n + i] = v } }
    return a
}

@Suite struct SymmetricEigenTests {
    @Test("eigenpairs pass LAPACK's residual tests (threshold 60) for n = 1, 2, 7, 64, 150", arguments: [1, 2, 7, 64, 150])
    func residuals(n: Int) throws {
        let a = randomSymmetric(n, seed: UInt64(n))
        let e = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let (decomposition, orthogonality) = e.scaledResiduals(matrix: a, sampleColumns: n)
        #expect(decomposition < SymmetricEigen.residualThreshold)
        #expect(orthogonality < SymmetricEigen.residualThreshold)
        for i in 1..<max(1, n) { #expect(e.values[i - 1] <= e.values[i]) }
    }

    @Test("values-only eigenvalues equal the values of the full decomposition to 1e-13 relative")
    func valuesOnly() throws {
        let n = 40
        let a = randomSymmetric(n, seed: 9)
        let full = try SymmetricEigen.compute(matrix: a, n: n, vectors: true)
        let values = try SymmetricEigen.compute(matrix: a, n: n, vectors: false)
        #expect(values.vectors == nil)
        let scale = full.values.map(abs).max()!
        for (x, y) in zip(full.values, values.values) { #expect(abs(x - y) <= 1e-13 * scale) }
    }

    @Test("a known 2 x 2: [[2, 1], [1, 2]] has eigenvalues 1 and 3, eigenvector columns as numpy.linalg.eigh")
    func known() throws {
        let e = try SymmetricEigen.compute(matrix: [2, 1, 1, 2], n: 2, vectors: true)
        #expect(abs(e.values[0] - 1) < 1e-15 && abs(e.values[1] - 3) < 1e-15)
        let v = e.vectors!
        // Column 1 (eigenvalue 3) is ±(1, 1)/√2: entries [0*2+1] and [1*2+1] are equal.
        #expect(abs(v[1] - v[3]) < 1e-15)
        #expect(abs(v[0] + v[2]) < 1e-15)
    }

    @Test("NaN or infinity is refused before LAPACK sees it", arguments: [Double.nan, .infinity, -.infinity])
    func nonFinite(bad: Double) {
        var a = randomSymmetric(5, seed: 1)
        a[1 * 5 + 3] = bad
        a[3 * 5 + 1] = bad
        #expect(throws: EigenError.nonFinite(row: 1, column: 3)) { try SymmetricEigen.compute(matrix: a, n: 5, vectors: false) }
    }

    @Test("GEMM through BLAS agrees with a naive product to 1e-14")
    func gemm() {
        let m = 5, n = 4, k = 7
        let a = randomSymmetric(8, seed: 3).prefix(m * k).map { $0 }
        let b = randomSymmetric(8, seed: 4).prefix(n * k).map { $0 }
        var c = [Double](repeating: 0, count: m * n)
        GEMM.multiplyTransposed(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &c, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k { s += a[i * k + p] * b[j * k + p] }
            #expect(abs(c[i * n + j] - s) < 1e-14)
        } }
    }

    @Test("the BLAS core name is known")
    func coreName() {
        #expect(!BLASLibrary.coreName.isEmpty)
    }
}
