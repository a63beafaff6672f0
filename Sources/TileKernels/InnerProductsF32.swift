#if NTK_TILE_AVX512
/// Eight-lane float registers are half an AVX-512 register; sixteen fill one.
typealias LaneF = SIMD16<Float>
#else
typealias LaneF = SIMD8<Float>
#endif

extension InnerProducts {
    /// C[i * ldc + j] = <A row i, B row j> for float32 rows, into a float64 C.
    ///
    /// Products and sums run in float32 within a k-chunk of `chunk` elements (lane-wise
    /// FMAs, the lanes summed in a fixed tree in float64), and the chunks are summed in
    /// float64: the rounding error of an entry is about √chunk · 2⁻²⁴ relative to the sum
    /// of |products| instead of growing with the whole k. The order is canonical as in the
    /// float64 kernel, so results do not depend on the tile or the rank count.
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Float>, lda: Int,
                                          b: UnsafePointer<Float>, ldb: Int,
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
                let j1 = min(n, j0 + 16)
                var i = 0
                while i < m {
                    let rows = min(4, m - i)
                    var j = j0
                    while j < j1 {
                        let columns = min(4, j1 - j)
                        if rows == 4 && columns == 4 {
                            blockF32(k: kc, a: a + i * lda + k0, lda: lda, b: b + j * ldb + k0, ldb: ldb,
                                     c: c + i * ldc + j, ldc: ldc, first: first)
                        } else {
                            for r in 0..<rows {
                                for s in 0..<columns {
                                    let value = dotChunkF32(k: kc, a + (i + r) * lda + k0, b + (j + s) * ldb + k0)
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

    @inline(__always)
    static func dotChunkF32(k: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Double {
        var acc = LaneF()
        let whole = k - k % LaneF.scalarCount
        var p = 0
        while p < whole {
            multiplyAddF32(&acc, loadF32(x + p), loadF32(y + p))
            p += LaneF.scalarCount
        }
        var s = reduceF32(acc)
        while p < k {
            s += Double(x[p]) * Double(y[p])
            p += 1
        }
        return s
    }

    /// A 4 x 4 block of one chunk, float32 lanes.
    @inline(__always)
    static func blockF32(k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        let b0 = b, b1 = b + ldb, b2 = b + 2 * ldb, b3 = b + 3 * ldb
        var c00 = LaneF(), c01 = LaneF(), c02 = LaneF(), c03 = LaneF()
        var c10 = LaneF(), c11 = LaneF(), c12 = LaneF(), c13 = LaneF()
        var c20 = LaneF(), c21 = LaneF(), c22 = LaneF(), c23 = LaneF()
        var c30 = LaneF(), c31 = LaneF(), c32 = LaneF(), c33 = LaneF()
        let whole = k - k % LaneF.scalarCount
        var p = 0
        while p < whole {
            let y0 = loadF32(b0 + p), y1 = loadF32(b1 + p), y2 = loadF32(b2 + p), y3 = loadF32(b3 + p)
            var x = loadF32(a0 + p)
            multiplyAddF32(&c00, x, y0); multiplyAddF32(&c01, x, y1); multiplyAddF32(&c02, x, y2); multiplyAddF32(&c03, x, y3)
            x = loadF32(a1 + p)
            multiplyAddF32(&c10, x, y0); multiplyAddF32(&c11, x, y1); multiplyAddF32(&c12, x, y2); multiplyAddF32(&c13, x, y3)
            x = loadF32(a2 + p)
            multiplyAddF32(&c20, x, y0); multiplyAddF32(&c21, x, y1); multiplyAddF32(&c22, x, y2); multiplyAddF32(&c23, x, y3)
            x = loadF32(a3 + p)
            multiplyAddF32(&c30, x, y0); multiplyAddF32(&c31, x, y1); multiplyAddF32(&c32, x, y2); multiplyAddF32(&c33, x, y3)
            p += LaneF.scalarCount
        }
        @inline(__always)
        func finish(_ acc: LaneF, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Double>) {
            var value = reduceF32(acc)
            var q = whole
            while q < k {
                value += Double(x[q]) * Double(y[q])
                q += 1
            }
            out.pointee = first ? value : out.pointee + value
        }
        let r0 = c, r1 = c + ldc, r2 = c + 2 * ldc, r3 = c + 3 * ldc
        finish(c00, a0, b0, r0); finish(c01, a0, b1, r0 + 1); finish(c02, a0, b2, r0 + 2); finish(c03, a0, b3, r0 + 3)
        finish(c10, a1, b0, r1); finish(c11, a1, b1, r1 + 1); finish(c12, a1, b2, r1 + 2); finish(c13, a1, b3, r1 + 3)
        finish(c20, a2, b0, r2); finish(c21, a2, b1, r2 + 1); finish(c22, a2, b2, r2 + 2); finish(c23, a2, b3, r2 + 3)
        finish(c30, a3, b0, r3); finish(c31, a3, b1, r3 + 1); finish(c32, a3, b2, r3 + 2); finish(c33, a3, b3, r3 + 3)
    }

    @inline(__always)
    static func multiplyAddF32(_ acc: inout LaneF, _ x: LaneF, _ y: LaneF) {
#if NTK_TILE_FMA
        acc.addProduct(x, y)
#else
        acc += x * y
#endif
    }

    @inline(__always)
    static func loadF32(_ p: UnsafePointer<Float>) -> LaneF {
        UnsafeRawPointer(p).loadUnaligned(as: LaneF.self)
    }

    /// The float32 lanes widened to float64 and summed in a fixed tree.
    @inline(__always)
    static func reduceF32(_ v: LaneF) -> Double {
#if NTK_TILE_AVX512
        let h = SIMD8<Double>(v.lowHalf) + SIMD8<Double>(v.highHalf)
        let q = h.lowHalf + h.highHalf
#else
        let q = SIMD4<Double>(v.lowHalf) + SIMD4<Double>(v.highHalf)
#endif
        return (q[0] + q[2]) + (q[1] + q[3])
    }
}
