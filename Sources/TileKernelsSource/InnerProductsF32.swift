#if NTK_TILE_AVX512
/// Sixteen floats fill an AVX-512 register.
typealias LaneF = SIMD16<Float>
#else
typealias LaneF = SIMD8<Float>
#endif

extension InnerProducts {
    /// Columns of a float32 register block: two registers.
    static let blockColumnsF32 = 2 * LaneF.scalarCount

    /// C[i * ldc + j] = <A row i, B row j> for float32 rows, into a float64 C.
    ///
    /// The loops are those of the float64 kernel (A packed by row blocks, B by panels,
    /// broadcasts of A against registers of B), with twice the columns per register. Within
    /// a k-chunk of `chunk` elements an entry is one chain of float32 fused multiply-adds
    /// from zero; each chunk's sum is then rounded to float64 and added to C, so the
    /// rounding error of an entry is at most about chunk · 2⁻²⁴ of the sum of |products|
    /// (the γ_chunk bound) instead of growing with the whole k. As in the float64 kernel
    /// the order is the same wherever an entry falls, so results depend neither on the tile
    /// nor on the rank count.
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Float>, lda: Int,
                                          b: UnsafePointer<Float>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int) {
        product(FloatBlocks.self, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bByRows: false, c: c, ldc: ldc,
                upperFrom: 0)
    }

#if NTK_TILE_AVX512
    /// The 12 x 32 register block of one chunk: 24 float accumulators, 2 loads and 12
    /// broadcasts per 24 FMAs.
    @inline(__always)
    static func microF32(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                       c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        var c0_0 = LaneF(), c0_1 = LaneF()
        var c1_0 = LaneF(), c1_1 = LaneF()
        var c2_0 = LaneF(), c2_1 = LaneF()
        var c3_0 = LaneF(), c3_1 = LaneF()
        var c4_0 = LaneF(), c4_1 = LaneF()
        var c5_0 = LaneF(), c5_1 = LaneF()
        var c6_0 = LaneF(), c6_1 = LaneF()
        var c7_0 = LaneF(), c7_1 = LaneF()
        var c8_0 = LaneF(), c8_1 = LaneF()
        var c9_0 = LaneF(), c9_1 = LaneF()
        var c10_0 = LaneF(), c10_1 = LaneF()
        var c11_0 = LaneF(), c11_1 = LaneF()
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = loadF32(pb), y1 = loadF32(pb + LaneF.scalarCount)
            var x = LaneF(repeating: pa[0])
            multiplyAddF32(&c0_0, x, y0); multiplyAddF32(&c0_1, x, y1)
            x = LaneF(repeating: pa[1])
            multiplyAddF32(&c1_0, x, y0); multiplyAddF32(&c1_1, x, y1)
            x = LaneF(repeating: pa[2])
            multiplyAddF32(&c2_0, x, y0); multiplyAddF32(&c2_1, x, y1)
            x = LaneF(repeating: pa[3])
            multiplyAddF32(&c3_0, x, y0); multiplyAddF32(&c3_1, x, y1)
            x = LaneF(repeating: pa[4])
            multiplyAddF32(&c4_0, x, y0); multiplyAddF32(&c4_1, x, y1)
            x = LaneF(repeating: pa[5])
            multiplyAddF32(&c5_0, x, y0); multiplyAddF32(&c5_1, x, y1)
            x = LaneF(repeating: pa[6])
            multiplyAddF32(&c6_0, x, y0); multiplyAddF32(&c6_1, x, y1)
            x = LaneF(repeating: pa[7])
            multiplyAddF32(&c7_0, x, y0); multiplyAddF32(&c7_1, x, y1)
            x = LaneF(repeating: pa[8])
            multiplyAddF32(&c8_0, x, y0); multiplyAddF32(&c8_1, x, y1)
            x = LaneF(repeating: pa[9])
            multiplyAddF32(&c9_0, x, y0); multiplyAddF32(&c9_1, x, y1)
            x = LaneF(repeating: pa[10])
            multiplyAddF32(&c10_0, x, y0); multiplyAddF32(&c10_1, x, y1)
            x = LaneF(repeating: pa[11])
            multiplyAddF32(&c11_0, x, y0); multiplyAddF32(&c11_1, x, y1)
            pa += blockRows
            pb += blockColumnsF32
        }
        addChunk(c0_0, c0_1, c, first: first)
        addChunk(c1_0, c1_1, c + 1 * ldc, first: first)
        addChunk(c2_0, c2_1, c + 2 * ldc, first: first)
        addChunk(c3_0, c3_1, c + 3 * ldc, first: first)
        addChunk(c4_0, c4_1, c + 4 * ldc, first: first)
        addChunk(c5_0, c5_1, c + 5 * ldc, first: first)
        addChunk(c6_0, c6_1, c + 6 * ldc, first: first)
        addChunk(c7_0, c7_1, c + 7 * ldc, first: first)
        addChunk(c8_0, c8_1, c + 8 * ldc, first: first)
        addChunk(c9_0, c9_1, c + 9 * ldc, first: first)
        addChunk(c10_0, c10_1, c + 10 * ldc, first: first)
        addChunk(c11_0, c11_1, c + 11 * ldc, first: first)
    }
#else
    /// The 6 x 16 register block of one chunk: 12 float accumulators, 2 loads and 6
    /// broadcasts per 12 FMAs.
    @inline(__always)
    static func microF32(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                       c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        var c0_0 = LaneF(), c0_1 = LaneF()
        var c1_0 = LaneF(), c1_1 = LaneF()
        var c2_0 = LaneF(), c2_1 = LaneF()
        var c3_0 = LaneF(), c3_1 = LaneF()
        var c4_0 = LaneF(), c4_1 = LaneF()
        var c5_0 = LaneF(), c5_1 = LaneF()
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = loadF32(pb), y1 = loadF32(pb + LaneF.scalarCount)
            var x = LaneF(repeating: pa[0])
            multiplyAddF32(&c0_0, x, y0); multiplyAddF32(&c0_1, x, y1)
            x = LaneF(repeating: pa[1])
            multiplyAddF32(&c1_0, x, y0); multiplyAddF32(&c1_1, x, y1)
            x = LaneF(repeating: pa[2])
            multiplyAddF32(&c2_0, x, y0); multiplyAddF32(&c2_1, x, y1)
            x = LaneF(repeating: pa[3])
            multiplyAddF32(&c3_0, x, y0); multiplyAddF32(&c3_1, x, y1)
            x = LaneF(repeating: pa[4])
            multiplyAddF32(&c4_0, x, y0); multiplyAddF32(&c4_1, x, y1)
            x = LaneF(repeating: pa[5])
            multiplyAddF32(&c5_0, x, y0); multiplyAddF32(&c5_1, x, y1)
            pa += blockRows
            pb += blockColumnsF32
        }
        addChunk(c0_0, c0_1, c, first: first)
        addChunk(c1_0, c1_1, c + 1 * ldc, first: first)
        addChunk(c2_0, c2_1, c + 2 * ldc, first: first)
        addChunk(c3_0, c3_1, c + 3 * ldc, first: first)
        addChunk(c4_0, c4_1, c + 4 * ldc, first: first)
        addChunk(c5_0, c5_1, c + 5 * ldc, first: first)
    }
#endif

    /// A 4-row register block (the rows left after the full blocks, when at most 4).
    @inline(__always)
    static func micro4F32(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                       c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, first: Bool) {
        var c0_0 = LaneF(), c0_1 = LaneF()
        var c1_0 = LaneF(), c1_1 = LaneF()
        var c2_0 = LaneF(), c2_1 = LaneF()
        var c3_0 = LaneF(), c3_1 = LaneF()
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = loadF32(pb), y1 = loadF32(pb + LaneF.scalarCount)
            var x = LaneF(repeating: pa[0])
            multiplyAddF32(&c0_0, x, y0); multiplyAddF32(&c0_1, x, y1)
            x = LaneF(repeating: pa[1])
            multiplyAddF32(&c1_0, x, y0); multiplyAddF32(&c1_1, x, y1)
            x = LaneF(repeating: pa[2])
            multiplyAddF32(&c2_0, x, y0); multiplyAddF32(&c2_1, x, y1)
            x = LaneF(repeating: pa[3])
            multiplyAddF32(&c3_0, x, y0); multiplyAddF32(&c3_1, x, y1)
            pa += blockRows
            pb += blockColumnsF32
        }
        if rows > 0 { addChunk(c0_0, c0_1, c, first: first) }
        if rows > 1 { addChunk(c1_0, c1_1, c + 1 * ldc, first: first) }
        if rows > 2 { addChunk(c2_0, c2_1, c + 2 * ldc, first: first) }
        if rows > 3 { addChunk(c3_0, c3_1, c + 3 * ldc, first: first) }
    }

    /// C[0..<2·LaneF.scalarCount] = the chunk sums (first chunk) or C + them, in float64
    /// (the widening is exact).
    @inline(__always)
    static func addChunk(_ low: LaneF, _ high: LaneF, _ c: UnsafeMutablePointer<Double>, first: Bool) {
        let w = Lane.scalarCount
        put(Lane(low.lowHalf), c, first: first)
        put(Lane(low.highHalf), c + w, first: first)
        put(Lane(high.lowHalf), c + 2 * w, first: first)
        put(Lane(high.highHalf), c + 3 * w, first: first)
    }

    @inline(__always)
    static func put(_ value: Lane, _ p: UnsafeMutablePointer<Double>, first: Bool) {
        UnsafeMutableRawPointer(p).storeBytes(of: first ? value : load(p) + value, as: Lane.self)
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
}

/// Float32 products: a chain of float32 multiply-adds per 256-chunk, widened into float64.
enum FloatBlocks: RegisterBlocks {
    static var columns: Int { InnerProducts.blockColumnsF32 }
    @inline(__always)
    static func full(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                     c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        InnerProducts.microF32(k: k, a: a, b: b, c: c, ldc: ldc, first: first)
    }
    @inline(__always)
    static func few(k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                    c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, first: Bool) {
        InnerProducts.micro4F32(k: k, a: a, b: b, c: c, ldc: ldc, rows: rows, first: first)
    }
}
