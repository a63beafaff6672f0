import TileKernels

/// Per-sample factors rounded to float32, for tile products in float32 (`--precision f32`).
public struct SingleFactors: Sendable {
    /// Z_l and δ_l of each dense layer, in the layout of `BatchFactors`.
    let inputs: [[Float]]
    let signals: [[Float]]

    public init(_ factors: BatchFactors) {
        inputs = factors.inputRanges.indices.map { l in factors.withInputs(l) { $0.map(Float.init) } }
        signals = factors.signalRanges.indices.map { l in factors.withSignals(l) { $0.map(Float.init) } }
    }

    /// Bytes held.
    public var byteCount: Int { 4 * (inputs.reduce(0) { $0 + $1.count } + signals.reduce(0) { $0 + $1.count }) }
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

    /// The structured tile product of two blocks of samples (rows I, columns J):
    ///
    ///     Θ_IJ = Σ_l (s_l² Z_I Z_Jᵀ + t_l²) ⊙ (D_I D_Jᵀ)
    ///
    /// over the dense layers (docs/maths.md, §2), summed over the k outputs, row-major
    /// (m, n); with `fullOutputs`, every output pair: (m·k, n·k), row i·k + a, column j·k + b.
    /// On a `diagonal` tile only the upper triangle is computed (the rest stays zero). With
    /// `single` factors of both blocks, the products run in float32 with float64 chunk sums.
    public func structuredTile(rows a: BatchFactors, columns b: BatchFactors, fullOutputs: Bool, diagonal: Bool,
                               single: (rows: SingleFactors, columns: SingleFactors)? = nil) -> [Double] {
        let k = outputCount
        let kk = fullOutputs ? k : 1
        let m = a.count, n = b.count
        var tileValues = [Double](repeating: 0, count: m * kk * n * kk)
        let upperSamples = diagonal ? 1 : 0, upperEntries = diagonal ? kk : 0
        var zz = [Double](repeating: 0, count: m * n)
        var dd = [Double](repeating: 0, count: m * kk * n * kk)
        for (l, g) in geometry.enumerated() {
            let s2 = g.weightScale * g.weightScale
            let t2 = g.biasScale * g.biasScale
            if let single {
                single.rows.inputs[l].withUnsafeBufferPointer { za in
                    single.columns.inputs[l].withUnsafeBufferPointer { zb in
                        zz.withUnsafeMutableBufferPointer { c in
                            InnerProducts.multiplyTransposed(m: m, n: n, k: g.fanIn, a: za.baseAddress!, lda: g.fanIn,
                                                             b: zb.baseAddress!, ldb: g.fanIn, c: c.baseAddress!, ldc: n)
                        }
                    }
                }
                single.rows.signals[l].withUnsafeBufferPointer { da in
                    single.columns.signals[l].withUnsafeBufferPointer { db in
                        dd.withUnsafeMutableBufferPointer { c in
                            if kk == 1 {
                                InnerProducts.multiplyTransposed(m: m, n: n, k: k * g.fanOut, a: da.baseAddress!, lda: k * g.fanOut,
                                                                 b: db.baseAddress!, ldb: k * g.fanOut, c: c.baseAddress!, ldc: n)
                            } else {
                                InnerProducts.multiplyTransposed(m: m * k, n: n * k, k: g.fanOut, a: da.baseAddress!, lda: g.fanOut,
                                                                 b: db.baseAddress!, ldb: g.fanOut, c: c.baseAddress!, ldc: n * k)
                            }
                        }
                    }
                }
            } else {
                a.withInputs(l) { za in
                    b.withInputs(l) { zb in
                        zz.withUnsafeMutableBufferPointer { c in
                            InnerProducts.multiplyTransposed(m: m, n: n, k: g.fanIn, a: za.baseAddress!, lda: g.fanIn,
                                                             b: zb.baseAddress!, ldb: g.fanIn, c: c.baseAddress!, ldc: n,
                                                             upperFrom: upperSamples)
                        }
                    }
                }
                a.withSignals(l) { da in
                    b.withSignals(l) { db in
                        dd.withUnsafeMutableBufferPointer { c in
                            if kk == 1 {
                                InnerProducts.multiplyTransposed(m: m, n: n, k: k * g.fanOut, a: da.baseAddress!, lda: k * g.fanOut,
                                                                 b: db.baseAddress!, ldb: k * g.fanOut, c: c.baseAddress!, ldc: n,
                                                                 upperFrom: upperSamples)
                            } else {
                                InnerProducts.multiplyTransposed(m: m * k, n: n * k, k: g.fanOut, a: da.baseAddress!, lda: g.fanOut,
                                                                 b: db.baseAddress!, ldb: g.fanOut, c: c.baseAddress!, ldc: n * k,
                                                                 upperFrom: upperEntries)
                            }
                        }
                    }
                }
            }
            // tile += (s² ZZ + t²) ⊙ DD, on raw pointers: this loop runs once per layer
            // over the whole tile.
            tileValues.withUnsafeMutableBufferPointer { out in
                zz.withUnsafeBufferPointer { zp in
                    dd.withUnsafeBufferPointer { dp in
                        let o = out.baseAddress!, z = zp.baseAddress!, q = dp.baseAddress!
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
        }
        return tileValues
    }
}
