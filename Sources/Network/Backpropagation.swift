import LinearAlgebra
import TileKernels

/// Doubles that a `BatchFactors` reads: allocated and owned by it, or lent by memory
/// that outlives it (e.g. memory shared by the ranks of a node).
public final class FactorStorage: @unchecked Sendable {
    public let buffer: UnsafeBufferPointer<Double>
    private let owned: UnsafeMutableBufferPointer<Double>?

    /// Takes ownership of `buffer` (deallocated with this object).
    public init(owning buffer: UnsafeMutableBufferPointer<Double>) {
        self.buffer = UnsafeBufferPointer(buffer)
        self.owned = buffer
    }

    /// Reads `buffer`, which the caller keeps allocated for this object's lifetime.
    public init(borrowing buffer: UnsafeBufferPointer<Double>) {
        self.buffer = buffer
        self.owned = nil
    }

    deinit { owned?.deallocate() }
}

/// Per-sample quantities of a batch of B inputs, from one forward and one backward pass.
///
/// For every dense layer l the gradient of output c at sample b is
/// ∂f_c/∂W_l = s_l z_l(b) ⊗ δ_{l,c}(b) and ∂f_c/∂b_l = t_l δ_{l,c}(b), so the pair
/// (z_l, δ_l) determines the whole per-sample gradient (the structured form).
///
/// All of it lives in one buffer, `storage` (the form ranks exchange or share without
/// copies): per dense layer its inputs Z_l, row-major (B, n_in); then per dense layer its
/// signals δ_l = ∂f/∂h_l, row-major (B·k, n_out), row b·k + c belonging to output c of
/// sample b (so the same rows read as (B, k·n_out) concatenate the k signals of a
/// sample); then f(X), row-major (B, k).
public struct BatchFactors: Sendable {
    /// B, the number of samples.
    public let count: Int
    /// k, the number of outputs.
    public let outputCount: Int
    /// The factors, in the layout above.
    public let storage: FactorStorage
    /// Where each layer's Z_l and δ_l, and f(X), are in `storage`.
    public let inputRanges: [Range<Int>]
    public let signalRanges: [Range<Int>]
    public let outputRange: Range<Int>

    /// The length of `storage` for B samples of a network of this geometry and k outputs.
    public static func storageCount(count b: Int, outputCount k: Int, geometry: [DenseGeometry]) -> Int {
        b * (geometry.reduce(0) { $0 + $1.fanIn + k * $1.fanOut } + k)
    }

    /// Factors in the layout above (computed here, received from another rank, or in
    /// shared memory).
    public init(count b: Int, outputCount k: Int, geometry: [DenseGeometry], storage: FactorStorage) {
        precondition(storage.buffer.count == Self.storageCount(count: b, outputCount: k, geometry: geometry))
        var offset = 0
        var inputs: [Range<Int>] = [], signals: [Range<Int>] = []
        for g in geometry {
            inputs.append(offset..<(offset + b * g.fanIn))
            offset += b * g.fanIn
        }
        for g in geometry {
            signals.append(offset..<(offset + b * k * g.fanOut))
            offset += b * k * g.fanOut
        }
        self.count = b
        self.outputCount = k
        self.storage = storage
        self.inputRanges = inputs
        self.signalRanges = signals
        self.outputRange = offset..<(offset + b * k)
    }

    /// Z_l of dense layer l, row-major (B, n_in).
    public func withInputs<R>(_ l: Int, _ body: (UnsafeBufferPointer<Double>) -> R) -> R {
        withExtendedLifetime(storage) { body(UnsafeBufferPointer(rebasing: storage.buffer[inputRanges[l]])) }
    }

    /// δ_l of dense layer l, row-major (B·k, n_out).
    public func withSignals<R>(_ l: Int, _ body: (UnsafeBufferPointer<Double>) -> R) -> R {
        withExtendedLifetime(storage) { body(UnsafeBufferPointer(rebasing: storage.buffer[signalRanges[l]])) }
    }

    /// f(X), row-major (B, k).
    public var outputs: [Double] { withExtendedLifetime(storage) { Array(storage.buffer[outputRange]) } }

    /// Bytes held.
    public var byteCount: Int { 8 * storage.buffer.count }
}

extension Network {
    /// f(X) for B inputs (row-major (B, d)), row-major (B, k).
    public func outputs(_ x: [Double], count: Int) -> [Double] {
        forward(x, count: count, keep: false).outputs
    }

    /// The structured per-sample factors of B inputs (row-major (B, d)).
    ///
    /// The forward and backward passes write Z_l, δ_l and f(X) straight into the one
    /// buffer of `BatchFactors`; only the pre-activations live elsewhere until the
    /// backward pass has used them.
    public func factors(_ x: [Double], count b: Int) -> BatchFactors {
        let total = BatchFactors.storageCount(count: b, outputCount: outputCount, geometry: geometry)
        let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: total)
        factors(x, count: b, into: buffer)
        return BatchFactors(count: b, outputCount: outputCount, geometry: geometry, storage: FactorStorage(owning: buffer))
    }

    /// The factors of B inputs written into `buffer` (of `BatchFactors.storageCount`
    /// doubles), in the layout of `BatchFactors`.
    public func factors(_ x: [Double], count b: Int, into buffer: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        let k = outputCount
        let total = BatchFactors.storageCount(count: b, outputCount: k, geometry: geometry)
        precondition(buffer.count == total)
        let layers = spec.layers
        guard total > 0 else { return }
        do {
            let base = buffer.baseAddress!
            // Where dense layer l's Z_l and δ_l, and f(X), start (the layout of BatchFactors).
            var inputStart: [Int] = [], signalStart: [Int] = []
            var offset = 0
            for g in geometry { inputStart.append(offset); offset += b * g.fanIn }
            for g in geometry { signalStart.append(offset); offset += b * k * g.fanOut }
            let outputStart = offset
            // Pre-activations (the input of activation layer i), kept for the backward pass.
            var preactivations: [Int: UnsafeMutableBufferPointer<Double>] = [:]
            defer { for p in preactivations.values { p.deallocate() } }

            // Forward. `current` is the input of layer i; each layer writes its result where
            // the next layer reads it: the next dense layer's Z slot, f(X), or a kept buffer.
            (base + inputStart[0]).update(from: x, count: x.count)
            var current = UnsafeMutableBufferPointer(start: base + inputStart[0], count: x.count)
            var denseIndex = 0
            for (i, layer) in layers.enumerated() {
                let width: Int
                switch layer {
                case .dense: width = geometry[denseIndex].fanOut
                case .activation: width = current.count / max(b, 1)
                }
                let target: UnsafeMutableBufferPointer<Double>
                if i == layers.count - 1 {
                    target = UnsafeMutableBufferPointer(start: base + outputStart, count: b * width)
                } else if case .dense = layers[i + 1] {
                    target = UnsafeMutableBufferPointer(start: base + inputStart[denseIndex + (isDense(layer) ? 1 : 0)], count: b * width)
                } else {
                    target = UnsafeMutableBufferPointer<Double>.allocate(capacity: b * width)
                    preactivations[i + 1] = target
                }
                switch layer {
                case .dense:
                    dense(denseIndex, z: UnsafeBufferPointer(current), count: b, into: target)
                    denseIndex += 1
                case .activation(let activation, _):
                    _ = target.update(fromContentsOf: current)
                    activation.applyValue(target)
                }
                current = target
            }

            // Backward: δ at the output is e_c for row (sample, c), then δ_in = s δ Wᵀ per
            // dense layer and δ ⊙ φ'(h) per activation, each δ_l written into its slot.
            var width = k
            denseIndex = geometry.count
            var delta = UnsafeMutableBufferPointer(start: base + signalStart[denseIndex - 1], count: b * k * k)
            delta.update(repeating: 0)
            for sample in 0..<b { for c in 0..<k { delta[(sample * k + c) * k + c] = 1 } }
            let scratch = UnsafeMutableBufferPointer<Double>.allocate(capacity: layers.isEmpty ? 0 : maxWidth)
            defer { scratch.deallocate() }
            backward: for (i, layer) in layers.enumerated().reversed() {
                switch layer {
                case .activation(let activation, _):
                    let h = preactivations[i]!
                    for sample in 0..<b {
                        let g = UnsafeMutableBufferPointer(rebasing: scratch[0..<width])
                        activation.derivatives(UnsafeBufferPointer(rebasing: h[(sample * width)..<((sample + 1) * width)]), into: g)
                        for c in 0..<k {
                            let row = delta.baseAddress! + (sample * k + c) * width
                            for j in 0..<width { row[j] *= g[j] }
                        }
                    }
                case .dense:
                    denseIndex -= 1
                    if denseIndex == 0 { break backward }
                    // δ_in = s δ Wᵀ: (B·k, n_out) x (n_out, n_in); W is (n_in, n_out), so every
                    // entry is an inner product of a row of δ with a row of W (the tile kernel).
                    let g = geometry[denseIndex]
                    let next = UnsafeMutableBufferPointer(start: base + signalStart[denseIndex - 1], count: b * k * g.fanIn)
                    parameters[denseIndex].weights.withUnsafeBufferPointer { w in
                        InnerProducts.multiplyTransposed(m: b * k, n: g.fanIn, k: g.fanOut,
                                                         a: delta.baseAddress!, lda: g.fanOut, b: w.baseAddress!, ldb: g.fanOut,
                                                         c: next.baseAddress!, ldc: g.fanIn)
                    }
                    for e in next.indices { next[e] *= g.weightScale }
                    delta = next
                    width = g.fanIn
                }
            }
        }
    }

    /// The widest layer (input, hidden or output).
    var maxWidth: Int { geometry.reduce(inputWidth) { max($0, $1.fanIn, $1.fanOut) } }

    private func isDense(_ layer: Layer) -> Bool {
        if case .dense = layer { return true }
        return false
    }

    /// h = s Z W + t b for dense layer l on B rows of Z, into `h` (B, n_out), by the tile
    /// kernels (whose speed does not depend on the BLAS kernel in use).
    func dense(_ l: Int, z: UnsafeBufferPointer<Double>, count b: Int, into h: UnsafeMutableBufferPointer<Double>) {
        let g = geometry[l]
        parameters[l].weights.withUnsafeBufferPointer { w in
            InnerProducts.multiply(m: b, n: g.fanOut, k: g.fanIn, a: z.baseAddress!, lda: g.fanIn,
                                   b: w.baseAddress!, ldb: g.fanOut, c: h.baseAddress!, ldc: g.fanOut)
        }
        let s = g.weightScale
        if let bias = parameters[l].bias {
            let t = g.biasScale
            for sample in 0..<b {
                let row = h.baseAddress! + sample * g.fanOut
                for j in 0..<g.fanOut { row[j] = s * row[j] + t * bias[j] }
            }
        } else {
            for e in 0..<(b * g.fanOut) { h[e] *= s }
        }
    }

    /// Explicit per-sample gradients, row-major (B·k, P): row b·k + c is ∇θ f_c(x_b) in
    /// `flatParameters` order (W0 row-major, b0, W1, …).
    public func gradients(from factors: BatchFactors) -> [Double] {
        let p = parameterCount
        let k = factors.outputCount
        var result = [Double](repeating: 0, count: factors.count * k * p)
        result.withUnsafeMutableBufferPointer { out in
            for sample in 0..<factors.count {
                for c in 0..<k {
                    let row = out.baseAddress! + (sample * k + c) * p
                    var offset = 0
                    for (l, g) in geometry.enumerated() {
                        factors.withInputs(l) { zAll in
                            factors.withSignals(l) { dAll in
                                let z = zAll.baseAddress! + sample * g.fanIn
                                let d = dAll.baseAddress! + (sample * k + c) * g.fanOut
                                for i in 0..<g.fanIn {
                                    let sz = g.weightScale * z[i]
                                    let dst = row + offset + i * g.fanOut
                                    for j in 0..<g.fanOut { dst[j] = sz * d[j] }
                                }
                                offset += g.fanIn * g.fanOut
                                if g.hasBias {
                                    for j in 0..<g.fanOut { row[offset + j] = g.biasScale * d[j] }
                                    offset += g.fanOut
                                }
                            }
                        }
                    }
                }
            }
        }
        return result
    }

    struct ForwardPass {
        var denseInputs: [[Double]]
        var preactivations: [Int: [Double]]
        var outputs: [Double]
    }

    func forward(_ x: [Double], count b: Int, keep: Bool) -> ForwardPass {
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        var current = x
        var width = inputWidth
        var denseInputs: [[Double]] = []
        var preactivations: [Int: [Double]] = [:]
        var denseIndex = 0
        for (layerIndex, layer) in spec.layers.enumerated() {
            switch layer {
            case .dense:
                let g = geometry[denseIndex]
                var h = [Double](repeating: 0, count: b * g.fanOut)
                current.withUnsafeBufferPointer { z in
                    h.withUnsafeMutableBufferPointer { dense(denseIndex, z: z, count: b, into: $0) }
                }
                if keep { denseInputs.append(current) }
                current = h
                width = g.fanOut
                denseIndex += 1
            case .activation(let activation, _):
                if keep { preactivations[layerIndex] = current }
                current.withUnsafeMutableBufferPointer { activation.applyValue($0) }
            }
        }
        _ = width
        return ForwardPass(denseInputs: denseInputs, preactivations: preactivations, outputs: current)
    }
}

extension Network {
    /// Σ_b Σ_c w[b, c] ∇θ f_c(x_b) for B inputs (row-major (B, d)) and weights w (B, k),
    /// flattened in `flatParameters` order: one backward pass seeded with w instead of
    /// one per output. With w = (f(X) − Y)/c this is the gradient of the MSE loss
    /// (1/(2c))‖f(X) − Y‖².
    public func weightedGradient(_ x: [Double], count b: Int, weights w: [Double]) -> [Double] {
        precondition(w.count == b * outputCount, "weights must be (B, k)")
        let pass = forward(x, count: b, keep: true)
        var perLayer = [[Double]](repeating: [], count: geometry.count)
        var delta = w
        var width = outputCount
        var denseIndex = geometry.count
        for (layerIndex, layer) in spec.layers.enumerated().reversed() {
            switch layer {
            case .activation(let activation, _):
                let h = pass.preactivations[layerIndex]!
                for i in 0..<delta.count { delta[i] *= activation.derivative(h[i]) }
            case .dense:
                denseIndex -= 1
                let g = geometry[denseIndex]
                // ∂/∂W = s Zᵀ δ (n_in, n_out); ∂/∂b = t Σ_b δ.
                var gw = [Double](repeating: 0, count: g.fanIn * g.fanOut)
                let z = pass.denseInputs[denseIndex]
                let zt = Self.transpose(z, rows: b, columns: g.fanIn)
                zt.withUnsafeBufferPointer { zp in
                    delta.withUnsafeBufferPointer { dp in
                        gw.withUnsafeMutableBufferPointer { out in
                            GEMM.multiply(m: g.fanIn, n: g.fanOut, k: b, alpha: g.weightScale, a: zp.baseAddress!, lda: b,
                                          b: dp.baseAddress!, ldb: g.fanOut, c: out.baseAddress!, ldc: g.fanOut)
                        }
                    }
                }
                var layerGradient = gw
                if g.hasBias {
                    var gb = [Double](repeating: 0, count: g.fanOut)
                    for sample in 0..<b { for j in 0..<g.fanOut { gb[j] += delta[sample * g.fanOut + j] } }
                    layerGradient += gb.map { $0 * g.biasScale }
                }
                perLayer[denseIndex] = layerGradient
                if denseIndex > 0 {
                    var next = [Double](repeating: 0, count: b * g.fanIn)
                    delta.withUnsafeBufferPointer { d in
                        parameters[denseIndex].weights.withUnsafeBufferPointer { wp in
                            next.withUnsafeMutableBufferPointer { n in
                                GEMM.multiplyTransposed(m: b, n: g.fanIn, k: g.fanOut, alpha: g.weightScale,
                                                        a: d.baseAddress!, lda: g.fanOut, b: wp.baseAddress!, ldb: g.fanOut,
                                                        c: n.baseAddress!, ldc: g.fanIn)
                            }
                        }
                    }
                    delta = next
                    width = g.fanIn
                }
            }
            if denseIndex == 0 { break }
        }
        _ = width
        return perLayer.flatMap { $0 }
    }

    /// Aᵀ of a row-major (rows, columns) matrix, in 16 x 16 blocks for the caches.
    static func transpose(_ a: [Double], rows: Int, columns: Int) -> [Double] {
        [Double](unsafeUninitializedCapacity: a.count) { t, initialized in
            a.withUnsafeBufferPointer { source in
                let from = source.baseAddress!, to = t.baseAddress!
                let block = 16
                for i0 in stride(from: 0, to: rows, by: block) {
                    for j0 in stride(from: 0, to: columns, by: block) {
                        for j in j0..<min(j0 + block, columns) {
                            for i in i0..<min(i0 + block, rows) { to[j * rows + i] = from[i * columns + j] }
                        }
                    }
                }
            }
            initialized = a.count
        }
    }
}
