/// Blocks of inner products, C = A Bᵀ, for the tiles of a Gram matrix.
///
/// A (m x k) and B (n x k) are row-major with their rows contiguous (stride lda, ldb),
/// so every entry C[i, j] is the inner product of row i of A with row j of B.
///
/// Every entry is accumulated in the same order wherever it falls in a register block
/// or a tile (four SIMD lanes over k in steps of four, the lanes summed pairwise, then
/// the scalar tail). A Gram matrix computed this way is therefore bitwise independent
/// of the tile size and of the number of ranks, and C[i, j] of A Aᵀ equals C[j, i].
public enum InnerProducts {
    /// C[i * ldc + j] = <A row i, B row j> for i < m, j < n.
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Double>, lda: Int,
                                          b: UnsafePointer<Double>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int) {
        let m2 = m & ~1
        let n2 = n & ~1
        var i = 0
        while i < m2 {
            var j = 0
            while j < n2 {
                block2x2(k: k, a0: a + i * lda, a1: a + (i + 1) * lda, b0: b + j * ldb, b1: b + (j + 1) * ldb,
                         c0: c + i * ldc + j, c1: c + (i + 1) * ldc + j)
                j += 2
            }
            if j < n {
                c[i * ldc + j] = dot(k: k, a + i * lda, b + j * ldb)
                c[(i + 1) * ldc + j] = dot(k: k, a + (i + 1) * lda, b + j * ldb)
            }
            i += 2
        }
        if i < m {
            for j in 0..<n { c[i * ldc + j] = dot(k: k, a + i * lda, b + j * ldb) }
        }
    }

    /// <x, y> over k elements, in the canonical accumulation order.
    @inline(__always)
    public static func dot(k: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> Double {
        var acc = SIMD4<Double>()
        let k4 = k & ~3
        var p = 0
        while p < k4 {
            acc += load(x + p) * load(y + p)
            p += 4
        }
        var s = reduce(acc)
        while p < k {
            s += x[p] * y[p]
            p += 1
        }
        return s
    }

    @inline(__always)
    static func block2x2(k: Int, a0: UnsafePointer<Double>, a1: UnsafePointer<Double>,
                         b0: UnsafePointer<Double>, b1: UnsafePointer<Double>,
                         c0: UnsafeMutablePointer<Double>, c1: UnsafeMutablePointer<Double>) {
        var acc00 = SIMD4<Double>(), acc01 = SIMD4<Double>()
        var acc10 = SIMD4<Double>(), acc11 = SIMD4<Double>()
        let k4 = k & ~3
        var p = 0
        while p < k4 {
            let x0 = load(a0 + p), x1 = load(a1 + p)
            let y0 = load(b0 + p), y1 = load(b1 + p)
            acc00 += x0 * y0
            acc01 += x0 * y1
            acc10 += x1 * y0
            acc11 += x1 * y1
            p += 4
        }
        var s00 = reduce(acc00), s01 = reduce(acc01), s10 = reduce(acc10), s11 = reduce(acc11)
        while p < k {
            s00 += a0[p] * b0[p]
            s01 += a0[p] * b1[p]
            s10 += a1[p] * b0[p]
            s11 += a1[p] * b1[p]
            p += 1
        }
        c0[0] = s00; c0[1] = s01
        c1[0] = s10; c1[1] = s11
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Double>) -> SIMD4<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Double>.self)
    }

    /// The lanes summed pairwise: (l0 + l2) + (l1 + l3); the same order for every entry.
    @inline(__always)
    static func reduce(_ v: SIMD4<Double>) -> Double {
        (v[0] + v[2]) + (v[1] + v[3])
    }
}
