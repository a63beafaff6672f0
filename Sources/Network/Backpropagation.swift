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
/// For every parameterized layer l (dense or conv, docs/maths.md §2 and §6) the gradient of
/// output c at sample b is ∂f_c/∂W_l = s_l Σ_p z_{l,p}(b) ⊗ δ_{l,p,c}(b) and ∂f_c/∂b_l =
/// t_l Σ_p δ_{l,p,c}(b) over the layer's output positions p (one for a dense layer on flat
/// data). A layer in the structured form keeps its patches z and signals δ; one in the
/// explicit form keeps the gradient itself.
///
/// All of it lives in one buffer, `storage` (the form ranks exchange or share without
/// copies): per structured layer its patches Z_l, row-major (B, P_l·K_l) (for a dense
/// layer, its inputs (B, n_in)); then per structured layer its signals δ_l = ∂f/∂h_l,
/// row-major (B, P_l, k, C_out) (for a dense layer (B·k, n_out): row b·k + c belongs to
/// output c of sample b, and the same rows read as (B, k·n_out) concatenate the k signals
/// of a sample); then per explicit layer its gradients (B·k, K_l C_out + C_out), W's part
/// in the file's order then b's (for the mean and sum kernels, `NetworkPlan.outputsSummed`,
/// sample-major instead: per sample (K_l, k C_out) then the bias row, see `gradientRows`);
/// then f(X), row-major (B, k).
public struct BatchFactors: Sendable {
    /// B, the number of samples.
    public let count: Int
    /// k, the number of outputs.
    public let outputCount: Int
    /// The factors, in the layout above.
    public let storage: FactorStorage
    /// Where each layer's Z_l, δ_l and gradients, and f(X), are in `storage` (empty ranges
    /// for the parts a layer's form does not keep).
    public let inputRanges: [Range<Int>]
    public let signalRanges: [Range<Int>]
    public let gradientRanges: [Range<Int>]
    public let outputRange: Range<Int>

    /// The length of `storage` for B samples of a network of this geometry and k outputs.
    public static func storageCount(count b: Int, outputCount k: Int, geometry: [LayerGeometry]) -> Int {
        b * (geometry.reduce(0) { total, g in
            total + (g.form == .structured ? g.patchCount + g.signalCount(outputs: k) : g.gradientCount(outputs: k))
        } + k)
    }

    /// Factors in the layout above (computed here, received from another rank, or in
    /// shared memory).
    public init(count b: Int, outputCount k: Int, geometry: [LayerGeometry], storage: FactorStorage) {
        precondition(storage.buffer.count == Self.storageCount(count: b, outputCount: k, geometry: geometry))
        var offset = 0
        var inputs: [Range<Int>] = [], signals: [Range<Int>] = [], gradients: [Range<Int>] = []
        for g in geometry {
            let length = g.form == .structured ? b * g.patchCount : 0
            inputs.append(offset..<(offset + length))
            offset += length
        }
        for g in geometry {
            let length = g.form == .structured ? b * g.signalCount(outputs: k) : 0
            signals.append(offset..<(offset + length))
            offset += length
        }
        for g in geometry {
            let length = g.form == .explicit ? b * g.gradientCount(outputs: k) : 0
            gradients.append(offset..<(offset + length))
            offset += length
        }
        self.count = b
        self.outputCount = k
        self.storage = storage
        self.inputRanges = inputs
        self.signalRanges = signals
        self.gradientRanges = gradients
        self.outputRange = offset..<(offset + b * k)
    }

    /// Z_l of layer l, row-major (B, P·K).
    public func withInputs<R>(_ l: Int, _ body: (UnsafeBufferPointer<Double>) -> R) -> R {
        withExtendedLifetime(storage) { body(UnsafeBufferPointer(rebasing: storage.buffer[inputRanges[l]])) }
    }

    /// δ_l of layer l, row-major (B, P, k, C_out).
    public func withSignals<R>(_ l: Int, _ body: (UnsafeBufferPointer<Double>) -> R) -> R {
        withExtendedLifetime(storage) { body(UnsafeBufferPointer(rebasing: storage.buffer[signalRanges[l]])) }
    }

    /// The gradients of an explicit layer l, row-major (B·k, K C_out + C_out).
    public func withGradients<R>(_ l: Int, _ body: (UnsafeBufferPointer<Double>) -> R) -> R {
        withExtendedLifetime(storage) { body(UnsafeBufferPointer(rebasing: storage.buffer[gradientRanges[l]])) }
    }

    /// f(X), row-major (B, k).
    public var outputs: [Double] { withExtendedLifetime(storage) { Array(storage.buffer[outputRange]) } }

    /// Bytes held.
    public var byteCount: Int { 8 * storage.buffer.count }
}

extension Network {
    /// f(X) for B inputs (row-major (B, d), d the values per sample), row-major (B, k).
    public func outputs(_ x: [Double], count: Int) -> [Double] {
        precondition(x.count == count * inputWidth, "input batch must be (B, d)")
        var walk = Walk(network: self, count: count)
        return walk.forward(x, keep: false)
    }

    /// The per-sample factors of B inputs (row-major (B, d)).
    public func factors(_ x: [Double], count b: Int) -> BatchFactors {
        let total = BatchFactors.storageCount(count: b, outputCount: outputCount, geometry: geometry)
        let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: total)
        factors(x, count: b, into: buffer)
        return BatchFactors(count: b, outputCount: outputCount, geometry: geometry, storage: FactorStorage(owning: buffer))
    }

    /// The factors of B inputs written into `buffer` (of `BatchFactors.storageCount`
    /// doubles), in the layout of `BatchFactors`: one forward pass keeping each layer's
    /// patches Z_l, then one backward pass seeded with e_c for every row (sample, output
    /// c), whose signals δ_l are kept (structured layers) or turned into gradients
    /// (explicit layers).
    public func factors(_ x: [Double], count b: Int, into buffer: UnsafeMutableBufferPointer<Double>) {
        factors(x, count: b, into: buffer, samples: 0..<b)
    }

    /// The factors of the samples `samples` of a batch of B (rows `x`, all B of them) into
    /// their places in `buffer`, the batch's whole `BatchFactors` layout: ranks sharing the
    /// buffer each fill their own samples.
    public func factors(_ x: [Double], count b: Int, into buffer: UnsafeMutableBufferPointer<Double>, samples: Range<Int>) {
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        precondition(samples.lowerBound >= 0 && samples.upperBound <= b)
        let k = outputCount
        let total = BatchFactors.storageCount(count: b, outputCount: k, geometry: geometry)
        precondition(buffer.count == total)
        guard total > 0 else { return }
        let layout = BatchFactors(count: b, outputCount: k, geometry: geometry, storage: FactorStorage(borrowing: UnsafeBufferPointer(buffer)))
        // Samples go through in chunks whose intermediate values (the patches and their
        // signals, k rows per sample) stay within a few megabytes, so that a convolution's
        // backward pass runs in the caches; samples of fewer than 65536 intermediate values
        // (dense networks) go as one batch, whose products are the larger GEMMs.
        let perSample = workingSetPerSample
        let chunk = perSample < 1 << 16 ? b : Swift.max(1, Swift.min(b, Self.chunkBudget / perSample))
        x.withUnsafeBufferPointer { xp in
            var first = samples.lowerBound
            while first < samples.upperBound {
                let count = Swift.min(chunk, samples.upperBound - first)
                let rows = Array(UnsafeBufferPointer(rebasing: xp[(first * inputWidth)..<((first + count) * inputWidth)]))
                factorsChunk(rows, first: first, count: count, layout: layout, base: buffer.baseAddress!)
                first += count
            }
        }
    }

    /// Doubles of intermediate values per sample in `factors`: every layer's patches, and the
    /// largest layer's signals, patch gradients and input gradients for k rows.
    var workingSetPerSample: Int {
        let k = outputCount
        let kept = geometry.reduce(0) { $0 + $1.patchCount }
        let backward = geometry.map { k * ($0.positions * ($0.fanIn + $0.fanOut) + $0.inputPositions * $0.channelsIn) }.max() ?? 0
        return kept + backward
    }

    /// The doubles of intermediate values one chunk of `factors` may take.
    static let chunkBudget = 1 << 21

    /// The factors of samples first..<first + count (rows `x`) into their places in `layout`.
    private func factorsChunk(_ x: [Double], first: Int, count b: Int, layout: BatchFactors, base: UnsafeMutablePointer<Double>) {
        let k = outputCount
        let geometry = self.geometry
        func inputs(_ l: Int) -> UnsafeMutablePointer<Double> { base + layout.inputRanges[l].lowerBound + first * geometry[l].patchCount }
        func signals(_ l: Int) -> UnsafeMutablePointer<Double> {
            base + layout.signalRanges[l].lowerBound + first * geometry[l].signalCount(outputs: k)
        }
        func gradients(_ l: Int) -> UnsafeMutablePointer<Double> {
            base + layout.gradientRanges[l].lowerBound + first * geometry[l].gradientCount(outputs: k)
        }
        var walk = Walk(network: self, count: b)
        let output = walk.forward(x, keep: true)
        var patches = walk.patches
        walk.patches = []
        for (l, g) in geometry.enumerated() where g.form == .structured {
            inputs(l).update(from: patches[l], count: patches[l].count)
            patches[l] = []
        }
        (base + layout.outputRange.lowerBound + first * k).update(from: output, count: output.count)
        var seed = [Double](repeating: 0, count: b * k * k)
        for sample in 0..<b { for c in 0..<k { seed[(sample * k + c) * k + c] = 1 } }
        let scales = geometry.contains(where: \.collapsed) ? collapseScales : nil
        walk.backward(seed, rowsPerSample: k, slot: { l in
            let g = geometry[l]
            return g.form == .structured && g.positions == 1 && !g.collapsed ? signals(l) : nil
        }) { l, delta in
            let g = geometry[l]
            if g.collapsed, let scales {
                // One row per sample: a[p, o] √w_o, from the signal of output pivot(o),
                // δ[p, o] = a[p, o] s W[o, pivot(o)].
                let p = g.positions, c = g.fanOut
                var collapsed = [Double](repeating: 0, count: b * p * c)
                for sample in 0..<b {
                    for position in 0..<p {
                        for o in 0..<c where scales.factor[o] != 0 {
                            let from = delta[((sample * k + scales.pivot[o]) * p + position) * c + o]
                            collapsed[(sample * p + position) * c + o] = from / scales.factor[o] * scales.weight[o]
                        }
                    }
                }
                collapsed.withUnsafeBufferPointer { a in
                    switch g.form {
                    case .structured:
                        signals(l).update(from: a.baseAddress!, count: a.count)
                    case .explicit:
                        patches[l].withUnsafeBufferPointer { z in
                            gradientRows(l, patches: z.baseAddress!, signals: a.baseAddress!, sampleStride: p * c, outputStride: p * c,
                                         signalStride: c, count: b, outputs: 1, into: gradients(l))
                        }
                    }
                }
                patches[l] = []
                return
            }
            switch g.form {
            case .structured:
                guard g.positions > 1 else { return }
                // (B, k, P, C_out) → (B, P, k, C_out).
                let target = signals(l)
                let p = g.positions, c = g.fanOut
                for sample in 0..<b {
                    for output in 0..<k {
                        let from = delta.baseAddress! + (sample * k + output) * p * c
                        for position in 0..<p {
                            (target + ((sample * p + position) * k + output) * c).update(from: from + position * c, count: c)
                        }
                    }
                }
            case .explicit:
                patches[l].withUnsafeBufferPointer { z in
                    gradientRows(l, patches: z.baseAddress!, signals: delta.baseAddress!, sampleStride: k * g.positions * g.fanOut,
                                 outputStride: g.positions * g.fanOut, signalStride: g.fanOut, count: b, outputs: k,
                                 sampleMajor: plan.outputsSummed, into: gradients(l))
                }
                patches[l] = []
            }
        }
    }

    /// The gradients of layer l for B samples and k outputs at `target`, G = (s Zᵀ Δ, t Σ_p δ_p)
    /// with Z a sample's patches (P, K) and Δ its signals (P, C_out) for one output. The signal
    /// of (sample, output c, position p) starts at `signals + sample·sampleStride +
    /// c·outputStride + p·signalStride`: the walk's layout (B·k, P·C_out) or the factor layout
    /// (B, P, k, C_out).
    ///
    /// Row-wise (the default): rows (B·k, K C_out + C_out), row b·k + c being output c's
    /// gradient, one product per row. Sample-major (`sampleMajor`, for the mean and sum
    /// kernels, which only read a sample's k rows together): per sample (K, k C_out) then the
    /// bias row (k C_out), the same k (K C_out + C_out) values in another order, from one
    /// product per sample of k times the width, with the signals gathered as (P, k C_out).
    /// Products through BLAS, s folded into them: every call has the same shape whatever the
    /// chunk of samples, so a sample's gradient does not depend on how samples are grouped
    /// (ranks, blocks).
    func gradientRows(_ l: Int, patches: UnsafePointer<Double>, signals: UnsafePointer<Double>, sampleStride: Int, outputStride: Int,
                      signalStride: Int, count b: Int, outputs k: Int, sampleMajor: Bool = false,
                      into target: UnsafeMutablePointer<Double>) {
        let g = geometry[l]
        let p = g.positions, kIn = g.fanIn, cOut = g.fanOut, length = g.parameterCount
        let s = g.weightScale, t = g.biasScale
        let perSample = p * kIn
        if sampleMajor && k > 1 {
            let width = k * cOut
            // Δ as (P, k C_out): the factor layout already is; the walk's is gathered.
            let gathered = signalStride == width && outputStride == cOut
            let buffer = UnsafeMutablePointer<Double>.allocate(capacity: gathered ? 0 : p * width)
            defer { buffer.deallocate() }
            for sample in 0..<b {
                var delta = signals + sample * sampleStride
                if !gathered {
                    for c in 0..<k {
                        for position in 0..<p {
                            (buffer + position * width + c * cOut).update(from: delta + c * outputStride + position * signalStride, count: cOut)
                        }
                    }
                    delta = UnsafePointer(buffer)
                }
                let out = target + sample * k * length
                GEMM.multiplyTransposedA(m: kIn, n: width, k: p, alpha: s, a: patches + sample * perSample, lda: kIn,
                                         b: delta, ldb: width, c: out, ldc: width)
                if g.hasBias {
                    let bias = out + kIn * width
                    bias.update(from: delta, count: width)
                    for position in 1..<p {
                        let d = delta + position * width
                        for j in 0..<width { bias[j] += d[j] }
                    }
                    for j in 0..<width { bias[j] *= t }
                }
            }
            return
        }
        for sample in 0..<b {
            let z = patches + sample * perSample
            for c in 0..<k {
                let delta = signals + sample * sampleStride + c * outputStride
                let row = target + (sample * k + c) * length
                GEMM.multiplyTransposedA(m: kIn, n: cOut, k: p, alpha: s, a: z, lda: kIn, b: delta, ldb: signalStride,
                                         c: row, ldc: cOut)
                if g.hasBias {
                    let bias = row + kIn * cOut
                    for j in 0..<cOut { bias[j] = 0 }
                    for position in 0..<p {
                        let d = delta + position * signalStride
                        for j in 0..<cOut { bias[j] += d[j] }
                    }
                    for j in 0..<cOut { bias[j] *= t }
                }
            }
        }
    }

    /// One forward and one backward pass through the network's operations (parameterized
    /// layers, activations, pooling, residual blocks), in the order of `geometry`.
    ///
    /// Forward: a parameterized layer computes h_p = s z_p W + t b at each output position
    /// from the patch z_p its window reads (a dense layer: the position's channels), an
    /// activation φ(h), a pooling layer window means, a residual block x + block(x). Backward
    /// from a seed δ at the output (R rows per sample: e_c per output for the factors, the
    /// loss weights for a gradient): a parameterized layer hands its δ_l to the caller and
    /// passes s δ Wᵀ back through its windows, an activation multiplies by φ'(h), pooling
    /// applies its adjoint, a residual block adds its block's δ to the skip's. Upstream of
    /// the first parameterized layer nothing is needed, so the pass stops there.
    struct Walk {
        let network: Network
        let count: Int
        /// Each parameterized layer's patches Z_l (B·P, K), in order (kept by `forward(keep: true)`).
        var patches: [[Double]] = []
        /// What the other operations keep for the backward pass (an activation its input h),
        /// in forward order; popped in reverse.
        var saved: [[Double]] = []
        /// Dense products through BLAS instead of the tile kernels: for whole batches (a
        /// training step's B rows), where BLAS's blocking wins; the per-sample factors of the
        /// tile engine keep the tile kernels, whose speed does not depend on the BLAS kernel.
        var blas = false

        init(network: Network, count: Int, blas: Bool = false) {
            self.network = network
            self.count = count
            self.blas = blas
        }

        /// f(X), row-major (B, k); with `keep`, the patches and what the operations keep.
        mutating func forward(_ x: [Double], keep: Bool) -> [Double] {
            run(network.plan.operations, x, keep: keep)
        }

        mutating func run(_ operations: [any SampleOperation], _ input: [Double], keep: Bool) -> [Double] {
            var current = input
            for operation in operations { current = operation.forward(current, walk: &self, keep: keep) }
            return current
        }

        /// Propagates `seed` (B·R rows, row b·R + c for sample b, of the output width) back
        /// through the network, handing each parameterized layer's δ_l (B·R, P·C_out) to
        /// `sink`, from the last layer to the first. `slot(l)`, when given, is where δ_l must
        /// end up (B·R·P·C_out doubles): the signal is then computed there directly whenever
        /// only activations lie between two layers, and copied there otherwise.
        func backward(_ seed: [Double], rowsPerSample r: Int,
                      slot: (Int) -> UnsafeMutablePointer<Double>? = { _ in nil },
                      sink: (Int, UnsafeBufferPointer<Double>) -> Void) {
            withoutActuallyEscaping(slot) { slot in
                withoutActuallyEscaping(sink) { sink in
                    var pass = BackwardPass(rowsPerSample: r, cursor: saved.count, slot: slot, sink: sink)
                    if let result = back(network.plan.operations, Signal(copying: seed), pass: &pass) { result.release() }
                }
            }
        }

        /// The state of one backward pass: rows per sample, the next saved value to pop, and
        /// where parameterized layers' signals go.
        struct BackwardPass {
            let rowsPerSample: Int
            var cursor: Int
            let slot: (Int) -> UnsafeMutablePointer<Double>?
            let sink: (Int, UnsafeBufferPointer<Double>) -> Void
            /// Where the operation being passed may write its input's δ (the factor slot of
            /// the parameterized layer upstream, when only in-place operations lie between).
            var upstream: UnsafeMutablePointer<Double>? = nil
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

        /// δ at the input of `operations` (the caller releases it), or nil once the first
        /// parameterized layer has been passed (nothing upstream needs it). Consumes `output`.
        func back(_ operations: [any SampleOperation], _ output: Signal, pass: inout BackwardPass) -> Signal? {
            var delta = output
            for position in operations.indices.reversed() {
                pass.upstream = nil
                if operations[position] is ParameterizedOperation {
                    var upstream = position - 1
                    while upstream >= 0, operations[upstream].scalesInPlace { upstream -= 1 }
                    if upstream >= 0, let previous = operations[upstream] as? ParameterizedOperation { pass.upstream = pass.slot(previous.layer) }
                }
                guard let next = operations[position].backward(delta, walk: self, pass: &pass) else { return nil }
                delta = next
            }
            return delta
        }
    }

}

/// A parameterized layer l (dense or conv) in the per-sample passes: h_p = s z_p W + t b
/// forward (its patches kept), its δ handed to the pass's sink backward and s δ Wᵀ passed
/// back through its windows.
struct ParameterizedOperation: SampleOperation {
    let layer: Int

    /// Doubles of patch gradients a convolution's backward pass holds at once (512 KiB:
    /// within a core's L2 cache).
    static let patchBlock = 1 << 16

    func forward(_ current: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        let g = walk.network.geometry[layer], count = walk.count
        let z: [Double]
        if let windows = g.windows {
            z = current.withUnsafeBufferPointer { x in
                [Double](unsafeUninitializedCapacity: count * g.patchCount) { buffer, initialized in
                    windows.gather(x.baseAddress!, count: count, channels: g.channelsIn, into: buffer.baseAddress!)
                    initialized = count * g.patchCount
                }
            }
        } else {
            z = current
        }
        // Every entry of h is written by the product (no zeroing pass).
        let rows = count * g.positions
        let network = walk.network
        let h = z.withUnsafeBufferPointer { zp in
            [Double](unsafeUninitializedCapacity: rows * g.fanOut) { buffer, initialized in
                network.affine(layer, z: zp, rows: rows, into: buffer, blas: walk.blas)
                initialized = rows * g.fanOut
            }
        }
        if keep { walk.patches.append(z) }
        return h
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        let l = layer
        if let place = pass.slot(l), place != delta.buffer.baseAddress {
            place.update(from: delta.buffer.baseAddress!, count: delta.buffer.count)
        }
        pass.sink(l, UnsafeBufferPointer(delta.buffer))
        if l == 0 { delta.release(); return nil }
        // δ_z = s δ Wᵀ: (B·R·P, C_out) x (C_out, K); W is (K, C_out), so every entry is an
        // inner product of a row of δ with a row of W (the tile kernel). Then back through
        // the windows (a scatter-add) for a convolution, a few rows at a time so that the
        // patch gradients stay in the cache. Computed straight into the slot of the layer
        // upstream when only in-place operations lie between (they scale it).
        let g = walk.network.geometry[l]
        let rows = walk.count * pass.rowsPerSample
        let next = Network.Walk.Signal(count: rows * g.inputPositions * g.channelsIn, at: pass.upstream)
        let s = g.weightScale
        let blas = walk.blas
        walk.network.parameters[l].weights.withUnsafeBufferPointer { w in
            /// s δ Wᵀ for `count` rows (of P positions each) from row `first`, into `into`.
            func product(first: Int, count: Int, into: UnsafeMutablePointer<Double>) {
                let a = delta.buffer.baseAddress! + first * g.positions * g.fanOut
                if blas {
                    GEMM.multiplyTransposed(m: count * g.positions, n: g.fanIn, k: g.fanOut, alpha: s, a: a, lda: g.fanOut,
                                            b: w.baseAddress!, ldb: g.fanOut, c: into, ldc: g.fanIn)
                } else {
                    InnerProducts.multiplyTransposed(m: count * g.positions, n: g.fanIn, k: g.fanOut, a: a, lda: g.fanOut,
                                                     b: w.baseAddress!, ldb: g.fanOut, c: into, ldc: g.fanIn)
                    for e in 0..<(count * g.positions * g.fanIn) { into[e] *= s }
                }
            }
            guard let windows = g.windows else {
                product(first: 0, count: rows, into: next.buffer.baseAddress!)
                return
            }
            let perRow = g.positions * g.fanIn
            let step = Swift.max(1, Swift.min(rows, Self.patchBlock / Swift.max(perRow, 1)))
            let patches = UnsafeMutablePointer<Double>.allocate(capacity: step * perRow)
            defer { patches.deallocate() }
            let perInput = g.inputPositions * g.channelsIn
            var first = 0
            while first < rows {
                let count = Swift.min(step, rows - first)
                product(first: first, count: count, into: patches)
                windows.scatter(patches, count: count, channels: g.channelsIn, into: next.buffer.baseAddress! + first * perInput)
                first += count
            }
        }
        delta.release()
        return next
    }
}

extension Network {
    /// h = s Z W + t b for layer l on `rows` patches Z (rows, K), into `h` (rows, C_out),
    /// by the tile kernels (whose speed does not depend on the BLAS kernel in use).
    func affine(_ l: Int, z: UnsafeBufferPointer<Double>, rows b: Int, into h: UnsafeMutableBufferPointer<Double>, blas: Bool = false) {
        let g = geometry[l]
        parameters[l].weights.withUnsafeBufferPointer { w in
            if blas {
                GEMM.multiply(m: b, n: g.fanOut, k: g.fanIn, a: z.baseAddress!, lda: g.fanIn,
                              b: w.baseAddress!, ldb: g.fanOut, c: h.baseAddress!, ldc: g.fanOut)
            } else {
                InnerProducts.multiply(m: b, n: g.fanOut, k: g.fanIn, a: z.baseAddress!, lda: g.fanIn,
                                       b: w.baseAddress!, ldb: g.fanOut, c: h.baseAddress!, ldc: g.fanOut)
            }
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
        precondition(!geometry.contains(where: \.collapsed) && (!plan.outputsSummed || factors.outputCount == 1),
                     "explicit gradient vectors need every output's signals, row-wise")
        let p = parameterCount
        let k = factors.outputCount
        let b = factors.count
        var result = [Double](repeating: 0, count: b * k * p)
        var offset = 0
        result.withUnsafeMutableBufferPointer { out in
            for (l, g) in geometry.enumerated() {
                let length = g.parameterCount
                var rows = [Double](repeating: 0, count: b * k * length)
                rows.withUnsafeMutableBufferPointer { target in
                    switch g.form {
                    case .explicit:
                        factors.withGradients(l) { target.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
                    case .structured:
                        factors.withInputs(l) { z in
                            factors.withSignals(l) { d in
                                gradientRows(l, patches: z.baseAddress!, signals: d.baseAddress!, sampleStride: g.positions * k * g.fanOut,
                                             outputStride: g.fanOut, signalStride: k * g.fanOut, count: b, outputs: k,
                                             into: target.baseAddress!)
                            }
                        }
                    }
                }
                for row in 0..<(b * k) {
                    (out.baseAddress! + row * p + offset).update(from: rows.withUnsafeBufferPointer { $0.baseAddress! + row * length }, count: length)
                }
                offset += length
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
        return outputsAndWeightedGradient(x, count: b) { _ in w }.gradient
    }

    /// f(X) and the weighted gradient for the weights `weights(f(X))` (B, k), from one
    /// forward pass: a step of gradient descent on the MSE loss needs both. The gradient
    /// has `extra` zeros after the P parameters' entries (room for what a caller reduces
    /// along with it).
    public func outputsAndWeightedGradient(_ x: [Double], count b: Int, extra: Int = 0,
                                           weights: ([Double]) -> [Double]) -> (outputs: [Double], gradient: [Double]) {
        precondition(x.count == b * inputWidth, "input batch must be (B, d)")
        var walk = Walk(network: self, count: b, blas: true)
        let outputs = walk.forward(x, keep: true)
        let w = weights(outputs)
        precondition(w.count == b * outputCount, "weights must be (B, k)")
        let inputs = walk.patches
        // Each layer's block of the flat gradient (flatParameters order).
        var offsets: [Int] = []
        var total = 0
        for g in geometry {
            offsets.append(total)
            total += g.fanIn * g.fanOut + (g.hasBias ? g.fanOut : 0)
        }
        // Uninitialized: every weight entry is written by its GEMM (β = 0); the biases and
        // the extra entries are zeroed.
        var gradient = [Double](unsafeUninitializedCapacity: total + extra) { buffer, initialized in
            for (l, g) in geometry.enumerated() where g.hasBias {
                (buffer.baseAddress! + offsets[l] + g.fanIn * g.fanOut).initialize(repeating: 0, count: g.fanOut)
            }
            (buffer.baseAddress! + total).initialize(repeating: 0, count: extra)
            initialized = total + extra
        }
        gradient.withUnsafeMutableBufferPointer { out in
            walk.backward(w, rowsPerSample: 1) { l, delta in
                let g = geometry[l]
                // ∂/∂W = s Zᵀ δ (K, C_out) over the B·P patches; ∂/∂b = t Σ δ over them.
                let rows = b * g.positions
                let block = out.baseAddress! + offsets[l]
                inputs[l].withUnsafeBufferPointer { zp in
                    GEMM.multiplyTransposedA(m: g.fanIn, n: g.fanOut, k: rows, alpha: g.weightScale, a: zp.baseAddress!, lda: g.fanIn,
                                             b: delta.baseAddress!, ldb: g.fanOut, c: block, ldc: g.fanOut)
                }
                if g.hasBias {
                    let bias = block + g.fanIn * g.fanOut
                    for row in 0..<rows { for j in 0..<g.fanOut { bias[j] += delta[row * g.fanOut + j] } }
                    for j in 0..<g.fanOut { bias[j] *= g.biasScale }
                }
            }
        }
        return (outputs, gradient)
    }
}

