/// The pieces `StochasticLanczos` and `KrylovFunction` share: the deflating projection, full
/// reorthogonalization against a basis, and the eigendecomposition of the tridiagonal T.
/// Vectors are rows of length n, as everywhere in this module.
enum LanczosSteps {
    /// X ← X − (X V) Vᵀ for `rows` rows of length n, V orthonormal (n, K) row-major; returns
    /// X V (rows, K) as it was before the projection.
    static func project(_ x: inout [Double], rows: Int, n: Int, vectors: [Double], k: Int) -> [Double] {
        guard k > 0 else { return [] }
        var c = [Double](repeating: 0, count: rows * k)
        x.withUnsafeMutableBufferPointer { xp in
            vectors.withUnsafeBufferPointer { vp in
                c.withUnsafeMutableBufferPointer { cp in
                    GEMM.multiply(m: rows, n: k, k: n, a: xp.baseAddress!, lda: n, b: vp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: k)
                    GEMM.multiplyTransposed(m: rows, n: n, k: k, alpha: -1, a: cp.baseAddress!, lda: k, b: vp.baseAddress!, ldb: k,
                                            beta: 1, c: xp.baseAddress!, ldc: n)
                }
            }
        }
        return c
    }

    /// w ← w − Qᵀ(Q w), twice (classical Gram–Schmidt, reorthogonalized), Q the `count`
    /// vectors of `basis` as rows. Returns the coefficients removed, both passes summed
    /// (w_before − w_after = Qᵀ c).
    @discardableResult
    static func reorthogonalize(_ w: inout [Double], against basis: [Double], count: Int, n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: count)
        var total = [Double](repeating: 0, count: count)
        for _ in 0..<2 {
            basis.withUnsafeBufferPointer { q in
                w.withUnsafeMutableBufferPointer { wp in
                    c.withUnsafeMutableBufferPointer { cp in
                        GEMM.multiplyTransposed(m: 1, n: count, k: n, a: wp.baseAddress!, lda: n, b: q.baseAddress!, ldb: n,
                                                c: cp.baseAddress!, ldc: count)
                        GEMM.multiply(m: 1, n: n, k: count, alpha: -1, a: cp.baseAddress!, lda: count, b: q.baseAddress!, ldb: n,
                                      beta: 1, c: wp.baseAddress!, ldc: n)
                    }
                }
            }
            for i in 0..<count { total[i] += c[i] }
        }
        return total
    }

    /// The eigendecomposition of the tridiagonal T with diagonal `alpha` and off-diagonal
    /// `beta` (at least alpha.count − 1 entries; extra ones ignored).
    static func tridiagonal(alpha: [Double], beta: [Double]) throws -> SymmetricEigen {
        let size = alpha.count
        var t = [Double](repeating: 0, count: size * size)
        for j in 0..<size {
            t[j * size + j] = alpha[j]
            if j + 1 < size {
                t[j * size + j + 1] = beta[j]
                t[(j + 1) * size + j] = beta[j]
            }
        }
        return try SymmetricEigen.compute(matrix: t, n: size, vectors: true)
    }
}
