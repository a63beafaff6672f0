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
        precondition(x.count == count * inputWidth, "input batch must be (B, d)")
        var walk = Walk(network: self, count: count)
        return walk.forward(x, keep: false)
    }

    /// The structured per-sample factors of B inputs (row-major (B, d)).
    public func factors(_ x: [Double], count b: Int) -> BatchFactors {
        let total = BatchFactors.storageCount(count: b, outputCount: outputCount, geometry: geometry)
        let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: total)
        factors(x, count: b, into: buffer)
        return BatchFactors(count: b, outputCount: outputCount, geometry: geometry, storage: FactorStorage(owning: buffer))
    }

    /// The factors of B inputs written into `buffer` (of `BatchFactors.storageCount`
    /// doubles), in the layout of `BatchFactors`: one forward pass keeping each dense
    /// layer's input Z_l, then one backward pass seeded with e_c for every row (sample,
    /// output c), keeping each dense layer's signal δ_l.
    public func factors(_ x: [Double], count b: Int, into buffer: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        let k = outputCount
        let total = BatchFactors.storageCount(count: b, outputCount: k, geometry: geometry)
        precondition(buffer.count == total)
        guard total > 0 else { return }
        let layout = BatchFactors(count: b, outputCount: k, geometry: geometry, storage: FactorStorage(borrowing: UnsafeBufferPointer(buffer)))
        let base = buffer.baseAddress!
        var walk = Walk(network: self, count: b)
        let output = walk.forward(x, keep: true)
        for (l, z) in walk.denseInputs.enumerated() {
            (base + layout.inputRanges[l].lowerBound).update(from: z, count: z.count)
        }
        walk.denseInputs = []
        (base + layout.outputRange.lowerBound).update(from: output, count: output.count)
        var seed = [Double](repeating: 0, count: b * k * k)
        for sample in 0..<b { for c in 0..<k { seed[(sample * k + c) * k + c] = 1 } }
        walk.backward(seed, rowsPerSample: k, slot: { base + layout.signalRanges[$0].lowerBound }) { _, _ in }
    }

    /// One forward and one backward pass through the layer tree (dense layers,
    /// activations, residual blocks), in the order of `Layer.denseLayers`.
    ///
    /// Forward: a dense layer computes h = s Z W + t b, an activation φ(h), a residual block
    /// x + block(x). Backward from a seed δ at the output (R rows per sample: e_c per output
    /// for the factors, the loss weights for a gradient): a dense layer hands its δ_l to the
    /// caller and passes s δ Wᵀ up, an activation multiplies by φ'(h), a residual block adds
    /// its block's δ to the skip's. Upstream of the first dense layer nothing is needed, so
    /// the pass stops there.
    struct Walk {
        let network: Network
        let count: Int
        /// Each dense layer's input Z_l (B, n_in), in order (kept by `forward(keep: true)`).
        var denseInputs: [[Double]] = []
        /// Each activation's input h (B, width), in forward order.
        var preactivations: [[Double]] = []

        init(network: Network, count: Int) {
            self.network = network
            self.count = count
        }

        /// f(X), row-major (B, k); with `keep`, the inputs of dense layers and activations.
        mutating func forward(_ x: [Double], keep: Bool) -> [Double] {
            var dense = 0
            return run(network.spec.layers, x, keep: keep, dense: &dense)
        }

        private mutating func run(_ layers: [Layer], _ input: [Double], keep: Bool, dense: inout Int) -> [Double] {
            var current = input
            for layer in layers {
                switch layer {
                case .dense:
                    let g = network.geometry[dense]
                    // Every entry of h is written by the product (no zeroing pass).
                    let h = current.withUnsafeBufferPointer { z in
                        [Double](unsafeUninitializedCapacity: count * g.fanOut) { buffer, initialized in
                            network.dense(dense, z: z, count: count, into: buffer)
                            initialized = count * g.fanOut
                        }
                    }
                    if keep { denseInputs.append(current) }
                    current = h
                    dense += 1
                case .activation(let activation, _):
                    if keep { preactivations.append(current) }
                    current.withUnsafeMutableBufferPointer { activation.applyValue($0) }
                case .residual(let block):
                    let branch = run(block, current, keep: keep, dense: &dense)
                    for e in current.indices { current[e] += branch[e] }
                }
            }
            return current
        }

        /// Propagates `seed` (B·R rows, row b·R + c for sample b, of the output width) back
        /// through the network, handing each dense layer's δ_l (B·R, n_out) to `sink`, from
        /// the last dense layer to the first. `slot(l)`, when given, is where δ_l must end up
        /// (B·R·n_out doubles): the signal is then computed there directly whenever only
        /// activations lie between two dense layers, and copied there otherwise.
        mutating func backward(_ seed: [Double], rowsPerSample r: Int,
                               slot: (Int) -> UnsafeMutablePointer<Double>? = { _ in nil },
                               sink: (Int, UnsafeBufferPointer<Double>) -> Void) {
            var dense = network.geometry.count
            var activation = preactivations.count
            let start = Signal(copying: seed)
            if let result = back(network.spec.layers, start, rowsPerSample: r, dense: &dense, activation: &activation, slot: slot, sink: sink) {
                result.release()
            }
        }

        /// A signal δ (rows × width doubles): a buffer of its own, or a factor slot it was
        /// computed in.
        struct Signal {
            let buffer: UnsafeMutableBufferPointer<Double>
            let owned: Bool

            init(copying values: [Double]) {
                buffer = .allocate(capacity: values.count)
                _ = buffer.initialize(fromContentsOf: values)
                owned = true
            }

            init(count: Int, at place: UnsafeMutablePointer<Double>?) {
                if let place {
                    buffer = UnsafeMutableBufferPointer(start: place, count: count)
                    owned = false
                } else {
                    buffer = .allocate(capacity: count)
                    owned = true
                }
            }

            func release() { if owned { buffer.deallocate() } }
        }

        /// δ at the input of `layers` (the caller releases it), or nil once the first dense
        /// layer has been passed (nothing upstream needs it). Consumes `output`.
        private func back(_ layers: [Layer], _ output: Signal, rowsPerSample r: Int, dense: inout Int, activation: inout Int,
                          slot: (Int) -> UnsafeMutablePointer<Double>?,
                          sink: (Int, UnsafeBufferPointer<Double>) -> Void) -> Signal? {
            var delta = output
            for position in layers.indices.reversed() {
                switch layers[position] {
                case .activation(let function, _):
                    activation -= 1
                    let h = preactivations[activation]
                    let width = h.count / Swift.max(count, 1)
                    var slope = [Double](repeating: 0, count: width)
                    h.withUnsafeBufferPointer { hp in
                        slope.withUnsafeMutableBufferPointer { g in
                            for sample in 0..<count {
                                function.derivatives(UnsafeBufferPointer(rebasing: hp[(sample * width)..<((sample + 1) * width)]), into: g)
                                for c in 0..<r {
                                    let row = delta.buffer.baseAddress! + (sample * r + c) * width
                                    for j in 0..<width { row[j] *= g[j] }
                                }
                            }
                        }
                    }
                case .dense:
                    dense -= 1
                    if let place = slot(dense), place != delta.buffer.baseAddress {
                        place.update(from: delta.buffer.baseAddress!, count: delta.buffer.count)
                    }
                    sink(dense, UnsafeBufferPointer(delta.buffer))
                    if dense == 0 { delta.release(); return nil }
                    // δ_in = s δ Wᵀ: (B·R, n_out) x (n_out, n_in); W is (n_in, n_out), so every
                    // entry is an inner product of a row of δ with a row of W (the tile kernel).
                    // Computed straight into the slot of the dense layer upstream when only
                    // activations lie between (they scale it in place).
                    let g = network.geometry[dense]
                    var upstream = position - 1
                    while upstream >= 0, case .activation = layers[upstream] { upstream -= 1 }
                    var place: UnsafeMutablePointer<Double>? = nil
                    if upstream >= 0, case .dense = layers[upstream] { place = slot(dense - 1) }
                    let next = Signal(count: count * r * g.fanIn, at: place)
                    network.parameters[dense].weights.withUnsafeBufferPointer { w in
                        InnerProducts.multiplyTransposed(m: count * r, n: g.fanIn, k: g.fanOut,
                                                         a: delta.buffer.baseAddress!, lda: g.fanOut, b: w.baseAddress!, ldb: g.fanOut,
                                                         c: next.buffer.baseAddress!, ldc: g.fanIn)
                    }
                    let s = g.weightScale
                    for e in next.buffer.indices { next.buffer[e] *= s }
                    delta.release()
                    delta = next
                case .residual(let block):
                    let skip = Signal(copying: Array(delta.buffer))
                    guard let branch = back(block, delta, rowsPerSample: r, dense: &dense, activation: &activation, slot: slot, sink: sink) else {
                        skip.release()
                        return nil
                    }
                    for e in skip.buffer.indices { skip.buffer[e] += branch.buffer[e] }
                    branch.release()
                    delta = skip
                }
            }
            return delta
        }
    }

    /// The widest layer (input, hidden or output).
    var maxWidth: Int { geometry.reduce(inputWidth) { max($0, $1.fanIn, $1.fanOut) } }

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

}

extension Network {
    /// Σ_b Σ_c w[b, c] ∇θ f_c(x_b) for B inputs (row-major (B, d)) and weights w (B, k),
    /// flattened in `flatParameters` order: one backward pass seeded with w instead of
    /// one per output. With w = (f(X) − Y)/c this is the gradient of the MSE loss
    /// (1/(2c))‖f(X) − Y‖².
    public func weightedGradient(_ x: [Double], count b: Int, weights w: [Double]) -> [Double] {
        precondition(w.count == b * outputCount, "weights must be (B, k)")
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        var walk = Walk(network: self, count: b)
        _ = walk.forward(x, keep: true)
        let inputs = walk.denseInputs
        var perLayer = [[Double]](repeating: [], count: geometry.count)
        walk.backward(w, rowsPerSample: 1) { l, delta in
            let g = geometry[l]
            // ∂/∂W = s Zᵀ δ (n_in, n_out); ∂/∂b = t Σ_b δ.
            var gw = [Double](repeating: 0, count: g.fanIn * g.fanOut)
            let zt = Self.transpose(inputs[l], rows: b, columns: g.fanIn)
            zt.withUnsafeBufferPointer { zp in
                gw.withUnsafeMutableBufferPointer { out in
                    GEMM.multiply(m: g.fanIn, n: g.fanOut, k: b, alpha: g.weightScale, a: zp.baseAddress!, lda: b,
                                  b: delta.baseAddress!, ldb: g.fanOut, c: out.baseAddress!, ldc: g.fanOut)
                }
            }
            if g.hasBias {
                var gb = [Double](repeating: 0, count: g.fanOut)
                for sample in 0..<b { for j in 0..<g.fanOut { gb[j] += delta[sample * g.fanOut + j] } }
                gw += gb.map { $0 * g.biasScale }
            }
            perLayer[l] = gw
        }
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
