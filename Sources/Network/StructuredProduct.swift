import TileKernels

/// Per-sample factors rounded to float32, for tile products in float32 (`--precision f32`):
/// the whole `BatchFactors` buffer rounded entry by entry, in one buffer of its own or in
/// memory that outlives it (shared by the ranks of a node).
public final class SingleFactors: @unchecked Sendable {
    /// The rounded buffer, in the layout of `BatchFactors` (`factors`' ranges apply).
    let buffer: UnsafeBufferPointer<Float>
    private let owned: UnsafeMutableBufferPointer<Float>?
    let factors: BatchFactors

    /// A copy of `factors` rounded to float32, owned.
    public init(_ factors: BatchFactors) {
        let copy = UnsafeMutableBufferPointer<Float>.allocate(capacity: factors.storage.buffer.count)
        Self.round(factors.storage.buffer, into: copy)
        self.owned = copy
        self.buffer = UnsafeBufferPointer(copy)
        self.factors = factors
    }

    /// `factors` rounded to float32 in `borrowing` (filled by `round`; it must outlive this value).
    public init(_ factors: BatchFactors, borrowing: UnsafeBufferPointer<Float>) {
        precondition(borrowing.count == factors.storage.buffer.count)
        self.owned = nil
        self.buffer = borrowing
        self.factors = factors
    }

    deinit { owned?.deallocate() }

    /// Rounds `source` to float32 into `target` (of the same length).
    public static func round(_ source: UnsafeBufferPointer<Double>, into target: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == target.count)
        for e in source.indices { target[e] = Float(source[e]) }
    }

    /// Bytes held (0 when borrowed).
    public var byteCount: Int { 4 * (owned?.count ?? 0) }

    /// The rounded values from the start of `range` (a range of `factors`).
    func part(_ range: Range<Int>) -> UnsafePointer<Float> { buffer.baseAddress! + range.lowerBound }
}

/// The operands of one layer's products for two blocks: float64 factors, or their float32
/// copies (whose products still sum in float64, see `InnerProducts`).
private struct Operands {
    var a64: UnsafePointer<Double>? = nil
    var b64: UnsafePointer<Double>? = nil
    var a32: UnsafePointer<Float>? = nil
    var b32: UnsafePointer<Float>? = nil

    /// C = A Bᵀ on rows of A from `aOffset` and rows of B from `bOffset`; `upperFrom` as in
    /// `InnerProducts.multiplyTransposed` (float64 only: float32 computes the whole block).
    func product(m: Int, n: Int, k: Int, aOffset: Int = 0, lda: Int, bOffset: Int = 0, ldb: Int,
                 c: UnsafeMutablePointer<Double>, ldc: Int, upperFrom: Int = 0) {
        if let a64, let b64 {
            InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a64 + aOffset, lda: lda, b: b64 + bOffset, ldb: ldb,
                                             c: c, ldc: ldc, upperFrom: upperFrom)
        } else {
            InnerProducts.multiplyTransposed(m: m, n: n, k: k, a: a32! + aOffset, lda: lda, b: b32! + bOffset, ldb: ldb,
                                             c: c, ldc: ldc)
        }
    }
}

extension Network {
    /// Doubles of per-sample factors for B samples (the length of a `BatchFactors` buffer).
    public func factorCount(samples b: Int) -> Int {
        BatchFactors.storageCount(count: b, outputCount: outputCount, geometry: geometry)
    }

    /// Factors of B samples held in `storage` (computed elsewhere: another rank, shared memory).
    public func factors(count b: Int, storage: FactorStorage) -> BatchFactors {
        BatchFactors(count: b, outputCount: outputCount, geometry: geometry, storage: storage)
    }

    private enum Part { case inputs, signals, gradients }

    private func withOperands<R>(_ part: Part, _ l: Int, _ a: BatchFactors, _ b: BatchFactors,
                                 single: (rows: SingleFactors, columns: SingleFactors)?, _ body: (Operands) -> R) -> R {
        if let single {
            func pointer(_ s: SingleFactors) -> UnsafePointer<Float> {
                switch part {
                case .inputs: return s.part(s.factors.inputRanges[l])
                case .signals: return s.part(s.factors.signalRanges[l])
                case .gradients: return s.part(s.factors.gradientRanges[l])
                }
            }
            return withExtendedLifetime(single) { body(Operands(a32: pointer(single.rows), b32: pointer(single.columns))) }
        }
        func with(_ f: BatchFactors, _ inner: (UnsafeBufferPointer<Double>) -> R) -> R {
            switch part {
            case .inputs: return f.withInputs(l, inner)
            case .signals: return f.withSignals(l, inner)
            case .gradients: return f.withGradients(l, inner)
            }
        }
        return with(a) { x in with(b) { y in body(Operands(a64: x.baseAddress!, b64: y.baseAddress!)) } }
    }

    /// The tile product of two blocks of samples (rows I, columns J): the sum over the
    /// parameterized layers of each one's term (docs/maths.md §2, §6):
    ///
    ///     dense (one position):  (s² Z_I Z_Jᵀ + t²) ⊙ (D_I D_Jᵀ)
    ///     structured, P > 1:     s² Σ_{p,q} ⟨z_p, z'_q⟩⟨δ_p, δ'_q⟩ + t² ⟨Σ_p δ_p, Σ_q δ'_q⟩
    ///     explicit:              G_I G_Jᵀ
    ///
    /// summed over the k outputs, row-major (m, n); with `fullOutputs`, every output pair:
    /// (m·k, n·k), row i·k + a, column j·k + b. On a `diagonal` tile only the upper triangle
    /// is needed (entries below it may be left zero). With `single` factors of both blocks,
    /// the products run in float32 with float64 chunk sums.
    public func structuredTile(rows a: BatchFactors, columns b: BatchFactors, fullOutputs: Bool, diagonal: Bool,
                               single: (rows: SingleFactors, columns: SingleFactors)? = nil) -> [Double] {
        let k = outputCount
        let kk = fullOutputs ? k : 1
        let m = a.count, n = b.count
        var tileValues = [Double](repeating: 0, count: m * kk * n * kk)
        let upperSamples = diagonal ? 1 : 0, upperEntries = diagonal ? kk : 0
        var scratch = [Double](repeating: 0, count: m * kk * n * kk)
        tileValues.withUnsafeMutableBufferPointer { out in
            scratch.withUnsafeMutableBufferPointer { temporary in
                let o = out.baseAddress!, t = temporary.baseAddress!
                for (l, g) in geometry.enumerated() {
                    switch g.form {
                    case .explicit:
                        precondition(kk == 1 || !g.collapsed, "the full kernel needs every output's signals")
                        let length = g.parameterCount
                        let k = g.rows(outputs: k)
                        t.update(repeating: 0, count: m * kk * n * kk)
                        withOperands(.gradients, l, a, b, single: single) { ops in
                            if kk == 1 {
                                ops.product(m: m, n: n, k: k * length, lda: k * length, ldb: k * length, c: t, ldc: n, upperFrom: upperSamples)
                            } else {
                                ops.product(m: m * k, n: n * k, k: length, lda: length, ldb: length, c: t, ldc: n * k, upperFrom: upperEntries)
                            }
                        }
                        for e in 0..<(m * kk * n * kk) { o[e] += t[e] }
                    case .structured where g.positions == 1:
                        denseTerm(l, a, b, single: single, m: m, n: n, k: k, kk: kk, diagonal: diagonal, out: o)
                    case .structured:
                        spatialTerm(l, a, b, single: single, m: m, n: n, k: k, kk: kk, diagonal: diagonal, out: o)
                    }
                }
            }
        }
        return tileValues
    }

    /// tile += (s² Z_I Z_Jᵀ + t²) ⊙ (D_I D_Jᵀ) for a layer of one position.
    private func denseTerm(_ l: Int, _ a: BatchFactors, _ b: BatchFactors, single: (rows: SingleFactors, columns: SingleFactors)?,
                           m: Int, n: Int, k: Int, kk: Int, diagonal: Bool, out o: UnsafeMutablePointer<Double>) {
        let g = geometry[l]
        precondition(kk == 1 || !g.collapsed, "the full kernel needs every output's signals")
        let k = g.rows(outputs: k)
        let s2 = g.weightScale * g.weightScale
        let t2 = g.biasScale * g.biasScale
        var zz = [Double](repeating: 0, count: m * n)
        var dd = [Double](repeating: 0, count: m * kk * n * kk)
        let upperSamples = diagonal ? 1 : 0, upperEntries = diagonal ? kk : 0
        zz.withUnsafeMutableBufferPointer { c in
            withOperands(.inputs, l, a, b, single: single) { ops in
                ops.product(m: m, n: n, k: g.fanIn, lda: g.fanIn, ldb: g.fanIn, c: c.baseAddress!, ldc: n, upperFrom: upperSamples)
            }
        }
        dd.withUnsafeMutableBufferPointer { c in
            withOperands(.signals, l, a, b, single: single) { ops in
                if kk == 1 {
                    ops.product(m: m, n: n, k: k * g.fanOut, lda: k * g.fanOut, ldb: k * g.fanOut, c: c.baseAddress!, ldc: n,
                                upperFrom: upperSamples)
                } else {
                    ops.product(m: m * k, n: n * k, k: g.fanOut, lda: g.fanOut, ldb: g.fanOut, c: c.baseAddress!, ldc: n * k,
                                upperFrom: upperEntries)
                }
            }
        }
        // tile += (s² ZZ + t²) ⊙ DD, on raw pointers: this loop runs once per layer over the
        // whole tile.
        zz.withUnsafeBufferPointer { zp in
            dd.withUnsafeBufferPointer { dp in
                let z = zp.baseAddress!, q = dp.baseAddress!
                if kk == 1 {
                    for e in 0..<(m * n) { o[e] += (s2 * z[e] + t2) * q[e] }
                } else {
                    let width = n * k
                    for i in 0..<m {
                        for j in 0..<n {
                            let w = s2 * z[i * n + j] + t2
                            for ai in 0..<k {
                                let row = (i * k + ai) * width + j * k
                                for bi in 0..<k { o[row + bi] += w * q[row + bi] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// tile += s² Σ_{p,q} ⟨z_p, z'_q⟩⟨δ_p, δ'_q⟩ + t² ⟨Σ_p δ_p, Σ_q δ'_q⟩ for a layer of P > 1
    /// positions. Rows and columns go in groups of samples (R and C of them, R·P and C·P
    /// patches, sized for the caches): per pair of groups, the (R·P x C·P) blocks of patch
    /// and signal inner products are two GEMMs whose every entry is used, then multiplied
    /// entrywise and summed over each sample pair's P x P block. On a diagonal tile, group
    /// pairs wholly below the diagonal are skipped.
    private func spatialTerm(_ l: Int, _ a: BatchFactors, _ b: BatchFactors, single: (rows: SingleFactors, columns: SingleFactors)?,
                             m: Int, n: Int, k: Int, kk: Int, diagonal: Bool, out o: UnsafeMutablePointer<Double>) {
        let g = geometry[l]
        precondition(kk == 1 || !g.collapsed, "the full kernel needs every output's signals")
        let k = g.rows(outputs: k)
        let p = g.positions, kIn = g.fanIn, cOut = g.fanOut
        let s2 = g.weightScale * g.weightScale
        let t2 = g.biasScale * g.biasScale
        let rowGroup = max(1, min(m, 96 / p))
        let columnGroup = max(1, min(n, 384 / p))
        let width = n * kk
        let blockWidth = columnGroup * p
        var zz = [Double](repeating: 0, count: rowGroup * p * blockWidth)
        var dd = [Double](repeating: 0, count: rowGroup * p * blockWidth)
        let signalRow = k * cOut
        zz.withUnsafeMutableBufferPointer { zzp in
            dd.withUnsafeMutableBufferPointer { ddp in
                let zb = zzp.baseAddress!, db = ddp.baseAddress!
                withOperands(.inputs, l, a, b, single: single) { patches in
                    withOperands(.signals, l, a, b, single: single) { signals in
                        var i0 = 0
                        while i0 < m {
                            let rows = min(rowGroup, m - i0)
                            var j0 = diagonal ? i0 : 0
                            while j0 < n {
                                let columns = min(columnGroup, n - j0)
                                let ldc = columns * p
                                patches.product(m: rows * p, n: columns * p, k: kIn, aOffset: i0 * p * kIn, lda: kIn,
                                                bOffset: j0 * p * kIn, ldb: kIn, c: zb, ldc: ldc)
                                for ai in 0..<kk {
                                    for bi in 0..<kk {
                                        if kk == 1 {
                                            signals.product(m: rows * p, n: columns * p, k: signalRow, aOffset: i0 * p * signalRow, lda: signalRow,
                                                            bOffset: j0 * p * signalRow, ldb: signalRow, c: db, ldc: ldc)
                                        } else {
                                            signals.product(m: rows * p, n: columns * p, k: cOut, aOffset: i0 * p * signalRow + ai * cOut,
                                                            lda: signalRow, bOffset: j0 * p * signalRow + bi * cOut, ldb: signalRow,
                                                            c: db, ldc: ldc)
                                        }
                                        for ii in 0..<rows {
                                            let i = i0 + ii
                                            for jj in 0..<columns where !diagonal || j0 + jj >= i {
                                                var sum = 0.0
                                                for row in (ii * p)..<((ii + 1) * p) {
                                                    let base = row * ldc + jj * p
                                                    for q in 0..<p { sum += zb[base + q] * db[base + q] }
                                                }
                                                o[(i * kk + ai) * width + (j0 + jj) * kk + bi] += s2 * sum
                                            }
                                        }
                                    }
                                }
                                j0 += columns
                            }
                            i0 += rows
                        }
                    }
                }
            }
        }
        guard g.hasBias, t2 != 0 else { return }
        // The bias term from the position sums of the signals (float64 throughout).
        func sums(_ f: BatchFactors) -> [Double] {
            var result = [Double](repeating: 0, count: f.count * signalRow)
            f.withSignals(l) { d in
                for sample in 0..<f.count {
                    for position in 0..<p {
                        let from = (sample * p + position) * signalRow
                        for e in 0..<signalRow { result[sample * signalRow + e] += d[from + e] }
                    }
                }
            }
            return result
        }
        let sa = sums(a), sb = sums(b)
        var bias = [Double](repeating: 0, count: m * kk * n * kk)
        sa.withUnsafeBufferPointer { x in
            sb.withUnsafeBufferPointer { y in
                bias.withUnsafeMutableBufferPointer { c in
                    if kk == 1 {
                        InnerProducts.multiplyTransposed(m: m, n: n, k: signalRow, a: x.baseAddress!, lda: signalRow,
                                                         b: y.baseAddress!, ldb: signalRow, c: c.baseAddress!, ldc: n)
                    } else {
                        InnerProducts.multiplyTransposed(m: m * k, n: n * k, k: cOut, a: x.baseAddress!, lda: cOut,
                                                         b: y.baseAddress!, ldb: cOut, c: c.baseAddress!, ldc: n * k)
                    }
                }
            }
        }
        for i in 0..<m {
            // Below the diagonal of a diagonal tile, entries stay zero (as the products leave them).
            let from = (diagonal ? i : 0) * kk
            for ai in 0..<kk {
                let row = (i * kk + ai) * width
                for e in from..<width { o[row + e] += t2 * bias[row + e] }
            }
        }
    }
}
