import CCPU

// This file is compiled three times (Package.swift, kernelVariants), into TileKernelsAVX512,
// TileKernelsAVX2 and TileKernelsBaseline, each with its instruction set's flags;
// TileKernels picks one at run time. NTK_TILE_AVX512 and NTK_TILE_FMA say which.
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
/// The loops are those of an optimized GEMM: k is cut into chunks of `chunk`; per chunk,
/// A is packed into blocks of `blockRows` rows stored k-major, and each panel of
/// `blockColumns` rows of B is packed k-major (the panel stays in L1); a register block of
/// blockRows x blockColumns entries is then updated by broadcasts of A and whole-register
/// loads of B with fused multiply-adds, and needs no horizontal sums. Edges are padded
/// with zeros and go through the same register block.
///
/// Every entry is one chain of fused multiply-adds over p = 0, 1, …, k−1 starting from
/// zero (the chain continues across chunks from the stored C), whatever register block,
/// panel, tile or rank computes it, and a product x·y is the same as y·x. A Gram matrix
/// computed this way is therefore bitwise independent of the tile size and of the number
/// of ranks, C[i, j] of A Aᵀ equals C[j, i], and `dot` gives the same value.
public enum InnerProducts {
    /// k per cache block: a packed panel of B of this length stays in L1.
    static let chunk = 256
#if NTK_TILE_AVX512
    static let blockRows = 12
    /// The instruction set of this build, for reports.
    public static let instructionSet = "AVX-512 (8 doubles per register, FMA)"
#elseif NTK_TILE_FMA
    static let blockRows = 6
    public static let instructionSet = "AVX2 (4 doubles per register, FMA)"
#else
    static let blockRows = 6
    public static let instructionSet = "SSE2 (baseline x86-64)"
#endif
    /// Columns of a register block: two registers.
    static let blockColumns = 2 * Lane.scalarCount

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
    ///
    /// `upperFrom` > 0 asks only for the upper triangle of a square Gram block (A = B) whose
    /// rows and columns come in groups of `upperFrom` (the k outputs of one sample): the
    /// entries whose column group precedes their row group may then be left unwritten
    /// (register blocks lying wholly below the diagonal are skipped).
    public static func multiplyTransposed(m: Int, n: Int, k: Int,
                                          a: UnsafePointer<Double>, lda: Int,
                                          b: UnsafePointer<Double>, ldb: Int,
                                          c: UnsafeMutablePointer<Double>, ldc: Int,
                                          upperFrom: Int = 0) {
        product(DoubleBlocks.self, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bByRows: false, c: c, ldc: ldc,
                upperFrom: upperFrom)
    }

    /// C[i * ldc + j] = Σ_p A[i * lda + p] · B[p * ldb + j] for i < m, j < n: A B with B
    /// row-major (k x n), by the same register blocks and the same chains of multiply-adds
    /// as `multiplyTransposed` (only B's panels are packed from its rows instead).
    public static func multiply(m: Int, n: Int, k: Int,
                                a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int,
                                c: UnsafeMutablePointer<Double>, ldc: Int) {
        product(DoubleBlocks.self, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bByRows: true, c: c, ldc: ldc,
                upperFrom: 0)
    }

    /// The scratch memory of `sweep`, and the call.
    @inline(__always)
    static func product<Blocks: RegisterBlocks>(_: Blocks.Type, m: Int, n: Int, k: Int,
                                                a: UnsafePointer<Blocks.Element>, lda: Int,
                                                b: UnsafePointer<Blocks.Element>, ldb: Int, bByRows: Bool,
                                                c: UnsafeMutablePointer<Double>, ldc: Int, upperFrom: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = 0 } }
            return
        }
        let rowBlocks = (m + blockRows - 1) / blockRows
        let kc = min(chunk, k)
        let columns = Blocks.columns
        withUnsafeTemporaryAllocation(of: Blocks.Element.self, capacity: rowBlocks * blockRows * kc + kc * columns) { packed in
            withUnsafeTemporaryAllocation(of: Double.self, capacity: blockRows * columns) { edge in
                sweep(Blocks.self, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, bByRows: bByRows, c: c, ldc: ldc,
                      upperFrom: upperFrom, packedA: packed.baseAddress!,
                      packedB: packed.baseAddress! + rowBlocks * blockRows * kc, edge: edge.baseAddress!)
            }
        }
    }

    /// The loops of both precisions' products: `packedA` holds every row block of A for a
    /// chunk, `packedB` one panel of B, `edge` one register block. B is (n x k) row-major, or
    /// (k x n) when `bByRows`.
    @inline(__always)
    static func sweep<Blocks: RegisterBlocks>(_: Blocks.Type, m: Int, n: Int, k: Int,
                                              a: UnsafePointer<Blocks.Element>, lda: Int,
                                              b: UnsafePointer<Blocks.Element>, ldb: Int, bByRows: Bool,
                                              c: UnsafeMutablePointer<Double>, ldc: Int, upperFrom: Int,
                                              packedA: UnsafeMutablePointer<Blocks.Element>,
                                              packedB: UnsafeMutablePointer<Blocks.Element>, edge: UnsafeMutablePointer<Double>) {
        let rowBlocks = (m + blockRows - 1) / blockRows
        let blockColumns = Blocks.columns
        var k0 = 0
        while k0 < k {
            let kc = min(chunk, k - k0)
            let first = k0 == 0
            // A's row block r: element (p, row) at r·blockRows·kc + p·blockRows + row.
            for r in 0..<rowBlocks {
                pack(rows: min(blockRows, m - r * blockRows), count: blockRows, k: kc,
                     from: a + r * blockRows * lda + k0, stride: lda, to: packedA + r * blockRows * kc)
            }
            var j0 = 0
            while j0 < n {
                let columns = min(blockColumns, n - j0)
                // Whether every row of the register block at row i0 lies below the diagonal.
                func below(_ i0: Int) -> Bool { upperFrom > 0 && j0 + columns <= i0 - i0 % upperFrom }
                if below((rowBlocks - 1) * blockRows) && below(0) {
                    j0 += blockColumns
                    continue
                }
                // The panel: element (p, column) at p·blockColumns + column.
                if bByRows {
                    // Row p of the chunk holds the panel's columns contiguously.
                    for p in 0..<kc {
                        let source = b + (k0 + p) * ldb + j0, out = packedB + p * blockColumns
                        for column in 0..<columns { out[column] = source[column] }
                        for column in columns..<blockColumns { out[column] = .zero }
                    }
                } else {
                    pack(rows: columns, count: blockColumns, k: kc, from: b + j0 * ldb + k0, stride: ldb, to: packedB)
                }
                for r in 0..<rowBlocks {
                    let i0 = r * blockRows
                    if below(i0) { continue }
                    let rows = min(blockRows, m - i0)
                    let blockA = UnsafePointer(packedA + r * blockRows * kc)
                    if rows == blockRows && columns == blockColumns {
                        Blocks.full(k: kc, a: blockA, b: packedB, c: c + i0 * ldc + j0, ldc: ldc, first: first)
                    } else if rows <= 4 && columns == blockColumns {
                        Blocks.few(k: kc, a: blockA, b: packedB, c: c + i0 * ldc + j0, ldc: ldc, rows: rows, first: first)
                    } else {
                        // A partial block: the full register block on a copy.
                        for row in 0..<blockRows {
                            for column in 0..<blockColumns {
                                edge[row * blockColumns + column] = !first && row < rows && column < columns
                                    ? c[(i0 + row) * ldc + j0 + column] : 0
                            }
                        }
                        Blocks.full(k: kc, a: blockA, b: packedB, c: edge, ldc: blockColumns, first: first)
                        for row in 0..<rows {
                            for column in 0..<columns { c[(i0 + row) * ldc + j0 + column] = edge[row * blockColumns + column] }
                        }
                    }
                }
                j0 += blockColumns
            }
            k0 += kc
        }
    }

    /// Copies `rows` rows (k elements each, `stride` apart) k-major into `count` slots:
    /// element (p, row) at p·count + row, the slots past `rows` zero. Sequential writes
    /// and plain loads (gathers or scatters here cost a quarter of the products' time).
    @inline(__always)
    static func pack<Element: BinaryFloatingPoint>(rows: Int, count: Int, k: Int, from source: UnsafePointer<Element>,
                                                   stride: Int, to target: UnsafeMutablePointer<Element>) {
        if rows == count {
            for p in 0..<k {
                let column = source + p, out = target + p * count
                for row in 0..<count { out[row] = column[row * stride] }
            }
        } else {
            for p in 0..<k {
                let column = source + p, out = target + p * count
                for row in 0..<rows { out[row] = column[row * stride] }
                for row in rows..<count { out[row] = .zero }
            }
        }
    }

    /// <x, y> over k elements: the same chain of fused multiply-adds as every entry of
    /// `multiplyTransposed`, so bitwise the same value.
    public static func dot(k: Int, _ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>) -> Double {
        var s = 0.0
        for p in 0..<k { multiplyAdd(&s, x[p], y[p]) }
        return s
    }

#if NTK_TILE_AVX512
    /// The 12 x 16 register block of one chunk: 24 accumulators (of 32 registers), 2 loads and
    /// 12 broadcasts per 24 FMAs.
    @inline(__always)
    static func micro(k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                      c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        var c0_0 = Lane(), c0_1 = Lane()
        var c1_0 = Lane(), c1_1 = Lane()
        var c2_0 = Lane(), c2_1 = Lane()
        var c3_0 = Lane(), c3_1 = Lane()
        var c4_0 = Lane(), c4_1 = Lane()
        var c5_0 = Lane(), c5_1 = Lane()
        var c6_0 = Lane(), c6_1 = Lane()
        var c7_0 = Lane(), c7_1 = Lane()
        var c8_0 = Lane(), c8_1 = Lane()
        var c9_0 = Lane(), c9_1 = Lane()
        var c10_0 = Lane(), c10_1 = Lane()
        var c11_0 = Lane(), c11_1 = Lane()
        if !first {
            c0_0 = load(c); c0_1 = load(c + Lane.scalarCount)
            c1_0 = load(c + ldc); c1_1 = load(c + ldc + Lane.scalarCount)
            c2_0 = load(c + 2 * ldc); c2_1 = load(c + 2 * ldc + Lane.scalarCount)
            c3_0 = load(c + 3 * ldc); c3_1 = load(c + 3 * ldc + Lane.scalarCount)
            c4_0 = load(c + 4 * ldc); c4_1 = load(c + 4 * ldc + Lane.scalarCount)
            c5_0 = load(c + 5 * ldc); c5_1 = load(c + 5 * ldc + Lane.scalarCount)
            c6_0 = load(c + 6 * ldc); c6_1 = load(c + 6 * ldc + Lane.scalarCount)
            c7_0 = load(c + 7 * ldc); c7_1 = load(c + 7 * ldc + Lane.scalarCount)
            c8_0 = load(c + 8 * ldc); c8_1 = load(c + 8 * ldc + Lane.scalarCount)
            c9_0 = load(c + 9 * ldc); c9_1 = load(c + 9 * ldc + Lane.scalarCount)
            c10_0 = load(c + 10 * ldc); c10_1 = load(c + 10 * ldc + Lane.scalarCount)
            c11_0 = load(c + 11 * ldc); c11_1 = load(c + 11 * ldc + Lane.scalarCount)
        }
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = load(pb), y1 = load(pb + Lane.scalarCount)
            var x = Lane(repeating: pa[0])
            multiplyAdd(&c0_0, x, y0); multiplyAdd(&c0_1, x, y1)
            x = Lane(repeating: pa[1])
            multiplyAdd(&c1_0, x, y0); multiplyAdd(&c1_1, x, y1)
            x = Lane(repeating: pa[2])
            multiplyAdd(&c2_0, x, y0); multiplyAdd(&c2_1, x, y1)
            x = Lane(repeating: pa[3])
            multiplyAdd(&c3_0, x, y0); multiplyAdd(&c3_1, x, y1)
            x = Lane(repeating: pa[4])
            multiplyAdd(&c4_0, x, y0); multiplyAdd(&c4_1, x, y1)
            x = Lane(repeating: pa[5])
            multiplyAdd(&c5_0, x, y0); multiplyAdd(&c5_1, x, y1)
            x = Lane(repeating: pa[6])
            multiplyAdd(&c6_0, x, y0); multiplyAdd(&c6_1, x, y1)
            x = Lane(repeating: pa[7])
            multiplyAdd(&c7_0, x, y0); multiplyAdd(&c7_1, x, y1)
            x = Lane(repeating: pa[8])
            multiplyAdd(&c8_0, x, y0); multiplyAdd(&c8_1, x, y1)
            x = Lane(repeating: pa[9])
            multiplyAdd(&c9_0, x, y0); multiplyAdd(&c9_1, x, y1)
            x = Lane(repeating: pa[10])
            multiplyAdd(&c10_0, x, y0); multiplyAdd(&c10_1, x, y1)
            x = Lane(repeating: pa[11])
            multiplyAdd(&c11_0, x, y0); multiplyAdd(&c11_1, x, y1)
            pa += 12
            pb += 2 * Lane.scalarCount
        }
        store(c0_0, c); store(c0_1, c + Lane.scalarCount)
        store(c1_0, c + ldc); store(c1_1, c + ldc + Lane.scalarCount)
        store(c2_0, c + 2 * ldc); store(c2_1, c + 2 * ldc + Lane.scalarCount)
        store(c3_0, c + 3 * ldc); store(c3_1, c + 3 * ldc + Lane.scalarCount)
        store(c4_0, c + 4 * ldc); store(c4_1, c + 4 * ldc + Lane.scalarCount)
        store(c5_0, c + 5 * ldc); store(c5_1, c + 5 * ldc + Lane.scalarCount)
        store(c6_0, c + 6 * ldc); store(c6_1, c + 6 * ldc + Lane.scalarCount)
        store(c7_0, c + 7 * ldc); store(c7_1, c + 7 * ldc + Lane.scalarCount)
        store(c8_0, c + 8 * ldc); store(c8_1, c + 8 * ldc + Lane.scalarCount)
        store(c9_0, c + 9 * ldc); store(c9_1, c + 9 * ldc + Lane.scalarCount)
        store(c10_0, c + 10 * ldc); store(c10_1, c + 10 * ldc + Lane.scalarCount)
        store(c11_0, c + 11 * ldc); store(c11_1, c + 11 * ldc + Lane.scalarCount)
    }
#else
    /// The 6 x 8 register block of one chunk: 12 accumulators (of 16 registers), 2 loads and
    /// 6 broadcasts per 12 FMAs.
    @inline(__always)
    static func micro(k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                      c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        var c0_0 = Lane(), c0_1 = Lane()
        var c1_0 = Lane(), c1_1 = Lane()
        var c2_0 = Lane(), c2_1 = Lane()
        var c3_0 = Lane(), c3_1 = Lane()
        var c4_0 = Lane(), c4_1 = Lane()
        var c5_0 = Lane(), c5_1 = Lane()
        if !first {
            c0_0 = load(c); c0_1 = load(c + Lane.scalarCount)
            c1_0 = load(c + ldc); c1_1 = load(c + ldc + Lane.scalarCount)
            c2_0 = load(c + 2 * ldc); c2_1 = load(c + 2 * ldc + Lane.scalarCount)
            c3_0 = load(c + 3 * ldc); c3_1 = load(c + 3 * ldc + Lane.scalarCount)
            c4_0 = load(c + 4 * ldc); c4_1 = load(c + 4 * ldc + Lane.scalarCount)
            c5_0 = load(c + 5 * ldc); c5_1 = load(c + 5 * ldc + Lane.scalarCount)
        }
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = load(pb), y1 = load(pb + Lane.scalarCount)
            var x = Lane(repeating: pa[0])
            multiplyAdd(&c0_0, x, y0); multiplyAdd(&c0_1, x, y1)
            x = Lane(repeating: pa[1])
            multiplyAdd(&c1_0, x, y0); multiplyAdd(&c1_1, x, y1)
            x = Lane(repeating: pa[2])
            multiplyAdd(&c2_0, x, y0); multiplyAdd(&c2_1, x, y1)
            x = Lane(repeating: pa[3])
            multiplyAdd(&c3_0, x, y0); multiplyAdd(&c3_1, x, y1)
            x = Lane(repeating: pa[4])
            multiplyAdd(&c4_0, x, y0); multiplyAdd(&c4_1, x, y1)
            x = Lane(repeating: pa[5])
            multiplyAdd(&c5_0, x, y0); multiplyAdd(&c5_1, x, y1)
            pa += 6
            pb += 2 * Lane.scalarCount
        }
        store(c0_0, c); store(c0_1, c + Lane.scalarCount)
        store(c1_0, c + ldc); store(c1_1, c + ldc + Lane.scalarCount)
        store(c2_0, c + 2 * ldc); store(c2_1, c + 2 * ldc + Lane.scalarCount)
        store(c3_0, c + 3 * ldc); store(c3_1, c + 3 * ldc + Lane.scalarCount)
        store(c4_0, c + 4 * ldc); store(c4_1, c + 4 * ldc + Lane.scalarCount)
        store(c5_0, c + 5 * ldc); store(c5_1, c + 5 * ldc + Lane.scalarCount)
    }
#endif

    /// A 4-row register block (the rows left after the full blocks, when at most 4):
    /// the same chains as `micro`, reading A's packed block with its full stride.
    @inline(__always)
    static func micro4(k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                       c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, first: Bool) {
        var c0_0 = Lane(), c0_1 = Lane()
        var c1_0 = Lane(), c1_1 = Lane()
        var c2_0 = Lane(), c2_1 = Lane()
        var c3_0 = Lane(), c3_1 = Lane()
        if !first {
            if rows > 0 { c0_0 = load(c); c0_1 = load(c + Lane.scalarCount) }
            if rows > 1 { c1_0 = load(c + 1 * ldc); c1_1 = load(c + 1 * ldc + Lane.scalarCount) }
            if rows > 2 { c2_0 = load(c + 2 * ldc); c2_1 = load(c + 2 * ldc + Lane.scalarCount) }
            if rows > 3 { c3_0 = load(c + 3 * ldc); c3_1 = load(c + 3 * ldc + Lane.scalarCount) }
        }
        var pa = a, pb = b
        for _ in 0..<k {
            let y0 = load(pb), y1 = load(pb + Lane.scalarCount)
            var x = Lane(repeating: pa[0])
            multiplyAdd(&c0_0, x, y0); multiplyAdd(&c0_1, x, y1)
            x = Lane(repeating: pa[1])
            multiplyAdd(&c1_0, x, y0); multiplyAdd(&c1_1, x, y1)
            x = Lane(repeating: pa[2])
            multiplyAdd(&c2_0, x, y0); multiplyAdd(&c2_1, x, y1)
            x = Lane(repeating: pa[3])
            multiplyAdd(&c3_0, x, y0); multiplyAdd(&c3_1, x, y1)
            pa += blockRows
            pb += blockColumns
        }
        if rows > 0 { store(c0_0, c); store(c0_1, c + Lane.scalarCount) }
        if rows > 1 { store(c1_0, c + 1 * ldc); store(c1_1, c + 1 * ldc + Lane.scalarCount) }
        if rows > 2 { store(c2_0, c + 2 * ldc); store(c2_1, c + 2 * ldc + Lane.scalarCount) }
        if rows > 3 { store(c3_0, c + 3 * ldc); store(c3_1, c + 3 * ldc + Lane.scalarCount) }
    }

    @inline(__always)
    static func store(_ value: Lane, _ p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: value, as: Lane.self)
    }

    /// s + x·y, rounded once (as the lanes' fused multiply-adds) where the build has FMA.
    @inline(__always)
    static func multiplyAdd(_ s: inout Double, _ x: Double, _ y: Double) {
#if NTK_TILE_FMA
        s.addProduct(x, y)
#else
        s += x * y
#endif
    }

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

}

/// The register blocks of one precision, for the loops both precisions share
/// (`InnerProducts.sweep`): A and B in `Element`, C in float64.
protocol RegisterBlocks {
    associatedtype Element: BinaryFloatingPoint
    /// Columns of a register block (its rows are `InnerProducts.blockRows`).
    static var columns: Int { get }
    /// A whole register block of one chunk.
    static func full(k: Int, a: UnsafePointer<Element>, b: UnsafePointer<Element>,
                     c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool)
    /// A block of at most 4 rows, with whole columns.
    static func few(k: Int, a: UnsafePointer<Element>, b: UnsafePointer<Element>,
                    c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, first: Bool)
}

/// Float64 products: every entry one chain of multiply-adds over the whole k.
enum DoubleBlocks: RegisterBlocks {
    static var columns: Int { InnerProducts.blockColumns }
    @inline(__always)
    static func full(k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                     c: UnsafeMutablePointer<Double>, ldc: Int, first: Bool) {
        InnerProducts.micro(k: k, a: a, b: b, c: c, ldc: ldc, first: first)
    }
    @inline(__always)
    static func few(k: Int, a: UnsafePointer<Double>, b: UnsafePointer<Double>,
                    c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, first: Bool) {
        InnerProducts.micro4(k: k, a: a, b: b, c: c, ldc: ldc, rows: rows, first: first)
    }
}
