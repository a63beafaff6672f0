import CCPU

// The instruction set the kernels are compiled for (Package.swift picks it from the
// build machine's CPU, or from NTK_TARGET_CPU).
#if NTK_TILE_AVX512
/// One register of doubles: 8 lanes (AVX-512).
typealias Lane = SIMD8<Double>
#else
/// One register of doubles: 4 lanes (AVX2, or two SSE2 registers).
typealias Lane = SIMD4<Double>
#endif

/// Blocks of inner products, C = A Bᵀ, for the tiles of a Gram matrix.
///
/// A (m x k) and B (n x k) are row-major with their rows contiguous (stride lda, ldb),
/// so every entry C[i, j] is the inner product of row i of A with row j of B.
///
/// The loops are cache-blocked (k in chunks of `chunk`, B in panels that stay in L1) and
/// register-blocked (4 x 6 entries per step with AVX-512, 2 x 2 otherwise). Every entry
/// is accumulated in the same order wherever it falls in a register block, a panel or a
/// tile: per k-chunk, lane-wise fused multiply-adds over whole lanes, the lanes summed
/// in a fixed tree, the scalar tail, then added to the previous chunks' sum. A Gram
/// matrix computed this way is bitwise independent of the tile size and of the number
/// of ranks, and C[i, j] of A Aᵀ equals C[j, i].
public enum InnerProducts {
    /// k per cache block: a panel of B rows of this length stays in L1.
    static let chunk = 256
    /// B rows per panel (a multiple of the register block's columns).
    static let panel = 12
#if NTK_TILE_AVX512
    static let blockRows = 4
    static let blockColumns = 6
    /// The instruction set of this build, for reports.
    public static let instructionSet = "AVX-512 (8 doubles per register, FMA)"
#elseif NTK_TILE_FMA
    static let blockRows = 2
    static let blockColumns = 2
    public static let instructionSet = "AVX2 (4 doubles per register, FMA)"
#else
    static let blockRows = 2
    static let blockColumns = 2
    public static let instructionSet = "SSE2 (baseline x86-64)"
#endif

    /// Whether this CPU runs the instructions the kernels were compiled for; call before
    /// any kernel and refuse to run otherwise (they would die of SIGILL).
    public static var cpuSupported: Bool {
#if NTK_TILE_AVX512
        return ntk_cpu_has_avx512() != 0
#elseif NTK_TILE_FMA
        return ntk_cpu_has_avx2_fma() != 0
#else
        return true
#endif
    }

    /// C[i * ldc + j] = <A row i, B row j> for i < m, j < n.
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Double>, lda: Int,
                                          b: UnsafePointer<Double>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = 0 } }
            return
        }
        var k0 = 0
        while k0 < k {
            let kc = min(chunk, k - k0)
            let first = k0 == 0
            var j0 = 0
            while j0 < n {
                let j1 = min(n, j0 + panel)
                var i = 0
                while i < m {
                    let rows = min(blockRows, m - i)
                    var j = j0
                    while j < j1 {
                        let columns = min(blockColumns, j1 - j)
                        if rows == blockRows && columns == blockColumns {
                            block(k: kc, a: a + i * lda + k0, lda: lda, b: b + j * ldb + k0, ldb: ldb,
                                  c: c + i * ldc + j, ldc: ldc, first: first)
                        } else {
                            for r in 0..<rows {
                                for s in 0..<columns {
                                    let value = dotChunk(k: kc, a + (i + r) * lda + k0, b + (j + s) * ldb + k0)
                                    let p = c + (i + r) * ldc + j + s
                                    p.pointee = first ? value : p.pointee + value
                                }
                            }
                        }
                        j += columns
                    }
                    i += rows
                }
                j0 = j1
            }
            k0 += kc
        }
    }

    /// <x, y> over k elements, in the canonical accumulation order.
    public static func dot(k: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> Double {
        var s = 0.0
        var k0 = 0
        while k0 < k {
            let kc = min(chunk, k - k0)
            let value = dotChunk(k: kc, x + k0, y + k0)
            s = k0 == 0 ? value : s + value
            k0 += kc
        }
        return s
    }

    /// One chunk of one entry: lanes, lane sum, scalar tail.
    @inline(__always)
    static func dotChunk(k: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> Double {
        var acc = Lane()
        let whole = k - k % Lane.scalarCount
        var p = 0
        while p < whole {
            multiplyAdd(&acc, load(x + p), load(y + p))
            p += Lane.scalarCount
        }
        var s = reduce(acc)
        while p < k {
            s += x[p] * y[p]
            p += 1
        }
        return s
    }

#if NTK_TILE_AVX512
    /// A 4 x 6 block of one chunk: 24 accumulators, 10 loads per 24 FMAs (of 32 registers).
    @inline(__always)
    static func block(k: Int, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                      c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        let b0 = b, b1 = b + ldb, b2 = b + 2 * ldb, b3 = b + 3 * ldb, b4 = b + 4 * ldb, b5 = b + 5 * ldb
        var c00 = Lane(), c01 = Lane(), c02 = Lane(), c03 = Lane(), c04 = Lane(), c05 = Lane()
        var c10 = Lane(), c11 = Lane(), c12 = Lane(), c13 = Lane(), c14 = Lane(), c15 = Lane()
        var c20 = Lane(), c21 = Lane(), c22 = Lane(), c23 = Lane(), c24 = Lane(), c25 = Lane()
        var c30 = Lane(), c31 = Lane(), c32 = Lane(), c33 = Lane(), c34 = Lane(), c35 = Lane()
        let whole = k - k % Lane.scalarCount
        var p = 0
        while p < whole {
            let y0 = load(b0 + p), y1 = load(b1 + p), y2 = load(b2 + p), y3 = load(b3 + p), y4 = load(b4 + p), y5 = load(b5 + p)
            var x = load(a0 + p)
            multiplyAdd(&c00, x, y0); multiplyAdd(&c01, x, y1); multiplyAdd(&c02, x, y2)
            multiplyAdd(&c03, x, y3); multiplyAdd(&c04, x, y4); multiplyAdd(&c05, x, y5)
            x = load(a1 + p)
            multiplyAdd(&c10, x, y0); multiplyAdd(&c11, x, y1); multiplyAdd(&c12, x, y2)
            multiplyAdd(&c13, x, y3); multiplyAdd(&c14, x, y4); multiplyAdd(&c15, x, y5)
            x = load(a2 + p)
            multiplyAdd(&c20, x, y0); multiplyAdd(&c21, x, y1); multiplyAdd(&c22, x, y2)
            multiplyAdd(&c23, x, y3); multiplyAdd(&c24, x, y4); multiplyAdd(&c25, x, y5)
            x = load(a3 + p)
            multiplyAdd(&c30, x, y0); multiplyAdd(&c31, x, y1); multiplyAdd(&c32, x, y2)
            multiplyAdd(&c33, x, y3); multiplyAdd(&c34, x, y4); multiplyAdd(&c35, x, y5)
            p += Lane.scalarCount
        }
        @inline(__always)
        func finish(_ acc: Lane, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ out: UnsafeMutablePointer<Double>) {
            var value = reduce(acc)
            var q = whole
            while q < k {
                value += x[q] * y[q]
                q += 1
            }
            out.pointee = first ? value : out.pointee + value
        }
        let r0 = c, r1 = c + ldc, r2 = c + 2 * ldc, r3 = c + 3 * ldc
        finish(c00, a0, b0, r0); finish(c01, a0, b1, r0 + 1); finish(c02, a0, b2, r0 + 2)
        finish(c03, a0, b3, r0 + 3); finish(c04, a0, b4, r0 + 4); finish(c05, a0, b5, r0 + 5)
        finish(c10, a1, b0, r1); finish(c11, a1, b1, r1 + 1); finish(c12, a1, b2, r1 + 2)
        finish(c13, a1, b3, r1 + 3); finish(c14, a1, b4, r1 + 4); finish(c15, a1, b5, r1 + 5)
        finish(c20, a2, b0, r2); finish(c21, a2, b1, r2 + 1); finish(c22, a2, b2, r2 + 2)
        finish(c23, a2, b3, r2 + 3); finish(c24, a2, b4, r2 + 4); finish(c25, a2, b5, r2 + 5)
        finish(c30, a3, b0, r3); finish(c31, a3, b1, r3 + 1); finish(c32, a3, b2, r3 + 2)
        finish(c33, a3, b3, r3 + 3); finish(c34, a3, b4, r3 + 4); finish(c35, a3, b5, r3 + 5)
    }
#else
    /// A 2 x 2 block of one chunk.
    @inline(__always)
    static func block(k: Int, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                      c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        let a0 = a, a1 = a + lda, b0 = b, b1 = b + ldb
        var c00 = Lane(), c01 = Lane(), c10 = Lane(), c11 = Lane()
        let whole = k - k % Lane.scalarCount
        var p = 0
        while p < whole {
            let x0 = load(a0 + p), x1 = load(a1 + p)
            let y0 = load(b0 + p), y1 = load(b1 + p)
            multiplyAdd(&c00, x0, y0); multiplyAdd(&c01, x0, y1)
            multiplyAdd(&c10, x1, y0); multiplyAdd(&c11, x1, y1)
            p += Lane.scalarCount
        }
        var s00 = reduce(c00), s01 = reduce(c01), s10 = reduce(c10), s11 = reduce(c11)
        while p < k {
            s00 += a0[p] * b0[p]
            s01 += a0[p] * b1[p]
            s10 += a1[p] * b0[p]
            s11 += a1[p] * b1[p]
            p += 1
        }
        if first {
            c[0] = s00; c[1] = s01; c[ldc] = s10; c[ldc + 1] = s11
        } else {
            c[0] += s00; c[1] += s01; c[ldc] += s10; c[ldc + 1] += s11
        }
    }
#endif

    @inline(__always)
    static func multiplyAdd(_ acc: inout Lane, _ x: Lane, _ y: Lane) {
#if NTK_TILE_FMA
        acc.addProduct(x, y)
#else
        acc += x * y
#endif
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Double>) -> Lane {
        UnsafeRawPointer(p).loadUnaligned(as: Lane.self)
    }

    /// The lanes summed in a fixed tree; the same order for every entry.
    @inline(__always)
    static func reduce(_ v: Lane) -> Double {
#if NTK_TILE_AVX512
        let h = v.lowHalf + v.highHalf
        return (h[0] + h[2]) + (h[1] + h[3])
#else
        return (v[0] + v[2]) + (v[1] + v[3])
#endif
    }
}
