import LinearAlgebra

/// Per-sample quantities of a batch of B inputs, from one forward and one backward pass.
///
/// For every dense layer l the gradient of output c at sample b is
/// ∂f_c/∂W_l = s_l z_l(b) ⊗ δ_{l,c}(b) and ∂f_c/∂b_l = t_l δ_{l,c}(b), so the pair
/// (z_l, δ_l) determines the whole per-sample gradient (the structured form).
public struct BatchFactors: Sendable {
    /// B, the number of samples.
    public let count: Int
    /// k, the number of outputs.
    public let outputCount: Int
    /// Per dense layer: its inputs Z_l, row-major (B, n_in).
    public var inputs: [[Double]]
    /// Per dense layer: δ_l = ∂f/∂h_l, row-major (B·k, n_out); row b·k + c belongs to
    /// output c of sample b, so the same buffer read as (B, k·n_out) concatenates the
    /// k signals of a sample.
    public var signals: [[Double]]
    /// f(X), row-major (B, k).
    public var outputs: [Double]

    /// Factors assembled elsewhere (e.g. received from another rank).
    public init(count: Int, outputCount: Int, inputs: [[Double]], signals: [[Double]], outputs: [Double]) {
        self.count = count
        self.outputCount = outputCount
        self.inputs = inputs
        self.signals = signals
        self.outputs = outputs
    }

    /// Bytes held.
    public var byteCount: Int {
        8 * (inputs.reduce(0) { $0 + $1.count } + signals.reduce(0) { $0 + $1.count } + outputs.count)
    }
}

extension Network {
    /// f(X) for B inputs (row-major (B, d)), row-major (B, k).
    public func outputs(_ x: [Double], count: Int) -> [Double] {
        forward(x, count: count, keep: false).outputs
    }

    /// The structured per-sample factors of B inputs (row-major (B, d)).
    public func factors(_ x: [Double], count: Int) -> BatchFactors {
        let pass = forward(x, count: count, keep: true)
        let k = outputCount
        let b = count
        var signals = [[Double]](repeating: [], count: geometry.count)
        // δ at the network output: e_c for row (b, c).
        var width = k
        var delta = [Double](repeating: 0, count: b * k * k)
        for sample in 0..<b { for c in 0..<k { delta[(sample * k + c) * k + c] = 1 } }
        var denseIndex = geometry.count
        for (layerIndex, layer) in spec.layers.enumerated().reversed() {
            switch layer {
            case .activation(let activation, _):
                let h = pass.preactivations[layerIndex]!
                var derivative = [Double](repeating: 0, count: h.count)
                for i in 0..<h.count { derivative[i] = activation.derivative(h[i]) }
                delta.withUnsafeMutableBufferPointer { d in
                    derivative.withUnsafeBufferPointer { g in
                        for sample in 0..<b {
                            let gRow = g.baseAddress! + sample * width
                            for c in 0..<k {
                                let dRow = d.baseAddress! + (sample * k + c) * width
                                for j in 0..<width { dRow[j] *= gRow[j] }
                            }
                        }
                    }
                }
            case .dense:
                denseIndex -= 1
                let g = geometry[denseIndex]
                signals[denseIndex] = delta
                if denseIndex == 0 { break }
                // δ_in = s δ Wᵀ: (B·k, n_out) x (n_out, n_in).
                var next = [Double](repeating: 0, count: b * k * g.fanIn)
                delta.withUnsafeBufferPointer { d in
                    parameters[denseIndex].weights.withUnsafeBufferPointer { w in
                        next.withUnsafeMutableBufferPointer { n in
                            GEMM.multiplyTransposed(m: b * k, n: g.fanIn, k: g.fanOut, alpha: g.weightScale,
                                                    a: d.baseAddress!, lda: g.fanOut, b: w.baseAddress!, ldb: g.fanOut,
                                                    c: n.baseAddress!, ldc: g.fanIn)
                        }
                    }
                }
                delta = next
                width = g.fanIn
            }
            if denseIndex == 0 { break }
        }
        return BatchFactors(count: b, outputCount: k, inputs: pass.denseInputs, signals: signals, outputs: pass.outputs)
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
                        factors.inputs[l].withUnsafeBufferPointer { zAll in
                            factors.signals[l].withUnsafeBufferPointer { dAll in
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
                if let bias = parameters[denseIndex].bias {
                    for sample in 0..<b { for j in 0..<g.fanOut { h[sample * g.fanOut + j] = g.biasScale * bias[j] } }
                }
                current.withUnsafeBufferPointer { z in
                    parameters[denseIndex].weights.withUnsafeBufferPointer { w in
                        h.withUnsafeMutableBufferPointer { out in
                            GEMM.multiply(m: b, n: g.fanOut, k: g.fanIn, alpha: g.weightScale,
                                          a: z.baseAddress!, lda: g.fanIn, b: w.baseAddress!, ldb: g.fanOut,
                                          beta: 1, c: out.baseAddress!, ldc: g.fanOut)
                        }
                    }
                }
                if keep { denseInputs.append(current) }
                current = h
                width = g.fanOut
                denseIndex += 1
            case .activation(let activation, _):
                if keep { preactivations[layerIndex] = current }
                for i in 0..<current.count { current[i] = activation.value(current[i]) }
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

    static func transpose(_ a: [Double], rows: Int, columns: Int) -> [Double] {
        var t = [Double](repeating: 0, count: a.count)
        for i in 0..<rows { for j in 0..<columns { t[j * rows + i] = a[i * columns + j] } }
        return t
    }
}
