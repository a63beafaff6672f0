import Foundation

/// The trainable arrays of one parameterized layer (dense or conv), raw (as the parameterization declares them).
public struct DenseParameters: Sendable, Equatable {
    /// W, row-major (K, C_out) (for conv, the file's (kh, kw, C_in, C_out) read flat): the
    /// layer computes z W on each patch z.
    public var weights: [Double]
    /// b (n_out), nil when the layer has no bias.
    public var bias: [Double]?

    public init(weights: [Double], bias: [Double]?) {
        self.weights = weights
        self.bias = bias
    }
}

/// Failures matching parameter arrays to a model.
public struct ParameterError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A network with a concrete input shape and parameters: f(x) for samples x of that shape.
public struct Network: Sendable {
    public let spec: ModelSpec
    /// The model resolved against the input shape: shapes, geometry, forward operations.
    public let plan: NetworkPlan
    /// One entry per parameterized layer (dense or conv), depth-first.
    public var geometry: [LayerGeometry] { plan.geometry }
    /// One entry per parameterized layer, in order.
    public private(set) var parameters: [DenseParameters]

    /// The per-sample input shape (channels last; [d] for flat data).
    public var inputShape: [Int] { plan.inputShape }
    /// Values per sample: the product of the input shape (the row length of the data).
    public var inputWidth: Int { plan.inputShape.reduce(1, *) }
    /// The number of outputs k.
    public var outputCount: Int { plan.outputShape[0] }
    /// P, the number of trainable parameters.
    public var parameterCount: Int { geometry.reduce(0) { $0 + $1.parameterCount } }

    /// The parameter arrays of `spec` on data samples of shape `dataShape`, in file order
    /// (`W0, b0, W1, …`), with their shapes; empty when the model does not fit the shape.
    public static func arrayShapes(of spec: ModelSpec, inputShape dataShape: [Int]) -> [(name: String, shape: [Int])] {
        guard let plan = try? NetworkPlan(spec: spec, dataShape: dataShape, shapesOnly: true) else { return [] }
        var result: [(name: String, shape: [Int])] = []
        for (l, g) in plan.geometry.enumerated() {
            result.append(("W\(l)", g.weightShape))
            if g.hasBias { result.append(("b\(l)", [g.fanOut])) }
        }
        return result
    }

    public static func arrayShapes(of spec: ModelSpec, inputWidth: Int) -> [(name: String, shape: [Int])] {
        arrayShapes(of: spec, inputShape: [inputWidth])
    }

    /// A network from given parameters; throws if their shapes do not fit the model.
    public init(spec: ModelSpec, inputShape dataShape: [Int], parameters: [DenseParameters], forms: FactorForms = .auto,
                collapseOutputs: Bool = false) throws(ParameterError) {
        let plan: NetworkPlan
        do { plan = try NetworkPlan(spec: spec, dataShape: dataShape, forms: forms, collapseOutputs: collapseOutputs) } catch {
            throw ParameterError(error.message)
        }
        let geometry = plan.geometry
        guard parameters.count == geometry.count else {
            throw ParameterError("the model has \(geometry.count) parameterized layers but \(parameters.count) were given")
        }
        for (l, (g, p)) in zip(geometry, parameters).enumerated() {
            if p.weights.count != g.fanIn * g.fanOut {
                throw ParameterError("W\(l) must have shape \(Self.format(g.weightShape))")
            }
            if g.hasBias != (p.bias != nil) {
                throw ParameterError(g.hasBias ? "b\(l) is missing (the model gives \(g.path) a bias)"
                                               : "b\(l) was given but \(g.path) has no bias (b_std is null)")
            }
            if let b = p.bias, b.count != g.fanOut { throw ParameterError("b\(l) must have shape (\(g.fanOut),)") }
        }
        self.spec = spec
        self.plan = plan
        self.parameters = parameters
    }

    public init(spec: ModelSpec, inputWidth: Int, parameters: [DenseParameters]) throws(ParameterError) {
        try self.init(spec: spec, inputShape: [inputWidth], parameters: parameters)
    }

    /// A network from named arrays as stored in a parameter file: `W0, b0, W1, b1, …`
    /// over the parameterized layers, `W{l}` of shape (n_in, n_out) for dense layers and
    /// (kh, kw, C_in, C_out) or (k, C_in, C_out) for convolutions, `b{l}` of shape (C_out,).
    /// Refuses missing, extra, misshapen or non-finite arrays.
    public init(spec: ModelSpec, inputShape dataShape: [Int], named arrays: [String: (shape: [Int], values: [Double])]) throws(ParameterError) {
        let plan: NetworkPlan
        do { plan = try NetworkPlan(spec: spec, dataShape: dataShape, shapesOnly: true) } catch { throw ParameterError(error.message) }
        var expected = Set<String>()
        var parameters: [DenseParameters] = []
        for (l, g) in plan.geometry.enumerated() {
            let wName = "W\(l)", bName = "b\(l)"
            expected.insert(wName)
            let shape = Self.format(g.weightShape)
            guard let w = arrays[wName] else { throw ParameterError("the array \(wName) is missing (\(g.path), shape \(shape))") }
            guard w.shape == g.weightShape else {
                throw ParameterError("\(wName) has shape \(Self.format(w.shape)) but \(g.path) needs \(shape)")
            }
            var bias: [Double]? = nil
            if g.hasBias {
                expected.insert(bName)
                guard let b = arrays[bName] else { throw ParameterError("the array \(bName) is missing (\(g.path) has a bias of shape (\(g.fanOut),))") }
                guard b.shape == [g.fanOut] else {
                    throw ParameterError("\(bName) has shape \(Self.format(b.shape)) but \(g.path) needs (\(g.fanOut),)")
                }
                bias = b.values
            }
            parameters.append(DenseParameters(weights: w.values, bias: bias))
        }
        if let extra = arrays.keys.sorted().first(where: { !expected.contains($0) }) {
            let hint = extra.hasPrefix("b") && expected.contains("W" + extra.dropFirst()) ? " (that layer has no bias: b_std is null)" : ""
            throw ParameterError("unexpected array \(extra) in the parameters\(hint); expected exactly \(expected.sorted().joined(separator: ", "))")
        }
        for (l, p) in parameters.enumerated() {
            if let i = p.weights.firstIndex(where: { !$0.isFinite }) { throw ParameterError("W\(l) holds a non-finite value at flat index \(i)") }
            if let i = p.bias?.firstIndex(where: { !$0.isFinite }) { throw ParameterError("b\(l) holds a non-finite value at index \(i)") }
        }
        try self.init(spec: spec, inputShape: dataShape, parameters: parameters)
    }

    public init(spec: ModelSpec, inputWidth: Int, named arrays: [String: (shape: [Int], values: [Double])]) throws(ParameterError) {
        try self.init(spec: spec, inputShape: [inputWidth], named: arrays)
    }

    /// This network with its layers' factor forms chosen by `forms`, and with
    /// `collapseOutputs` the signals before the readout kept as one row per sample (valid
    /// for the mean and sum kernels only, see `LayerGeometry.collapsed`).
    public func with(forms: FactorForms, collapseOutputs: Bool = false) -> Network {
        // The same spec and shape as this network's, so it cannot fail.
        try! Network(spec: spec, inputShape: plan.inputShape, parameters: parameters, forms: forms, collapseOutputs: collapseOutputs)
    }

    /// For the collapsed layer's signals: per readout input o, the output c whose weight is
    /// largest in magnitude, the factor s W[o, c] of the signal of that output, and
    /// √w_o = s √(Σ_c W[o, c]²).
    var collapseScales: (pivot: [Int], factor: [Double], weight: [Double]) {
        let g = geometry.last!
        let w = parameters.last!.weights
        var pivot = [Int](repeating: 0, count: g.fanIn), factor = [Double](repeating: 0, count: g.fanIn), weight = factor
        for o in 0..<g.fanIn {
            var best = 0, squares = 0.0
            for c in 0..<g.fanOut {
                let value = w[o * g.fanOut + c]
                squares += value * value
                if abs(value) > abs(w[o * g.fanOut + best]) { best = c }
            }
            pivot[o] = best
            factor[o] = g.weightScale * w[o * g.fanOut + best]
            weight[o] = g.weightScale * squares.squareRoot()
        }
        return (pivot, factor, weight)
    }

    /// A network with parameters drawn as neural-tangents draws them: ntk: W, b ~ N(0, 1);
    /// standard: W ~ N(0, W_std² / K), b ~ N(0, b_std²) (K the fan-in: kh·kw·C_in for a
    /// convolution). Deterministic in `seed`; arrays are drawn in file order W0, b0, W1, b1, ….
    /// The model must fit the shape (`ModelSpec.validate(inputShape:)`).
    public static func initialized(spec: ModelSpec, inputShape dataShape: [Int], seed: UInt64) -> Network {
        var rng = NormalGenerator(seed: seed)
        var parameters: [DenseParameters] = []
        let plan = try! NetworkPlan(spec: spec, dataShape: dataShape, shapesOnly: true)
        for g in plan.geometry {
            let wScale: Double, bScale: Double
            switch spec.parameterization {
            case .ntk: wScale = 1; bScale = 1
            case .standard: wScale = g.weightStd / Double(g.fanIn).squareRoot(); bScale = g.biasStd ?? 0
            }
            let w = (0..<(g.fanIn * g.fanOut)).map { _ in wScale * rng.next() }
            let b = g.hasBias ? (0..<g.fanOut).map { _ in bScale * rng.next() } : nil
            parameters.append(DenseParameters(weights: w, bias: b))
        }
        // Shapes match by construction.
        return try! Network(spec: spec, inputShape: dataShape, parameters: parameters)
    }

    public static func initialized(spec: ModelSpec, inputWidth: Int, seed: UInt64) -> Network {
        initialized(spec: spec, inputShape: [inputWidth], seed: seed)
    }

    /// The parameters as named arrays in file order (W0, b0, W1, …).
    public var namedArrays: [(name: String, shape: [Int], values: [Double])] {
        var result: [(name: String, shape: [Int], values: [Double])] = []
        for (l, (g, p)) in zip(geometry, parameters).enumerated() {
            result.append(("W\(l)", g.weightShape, p.weights))
            if let b = p.bias { result.append(("b\(l)", [g.fanOut], b)) }
        }
        return result
    }

    /// All parameters flattened in file order: the coordinate system of per-sample gradients.
    public var flatParameters: [Double] {
        parameters.flatMap { $0.weights + ($0.bias ?? []) }
    }

    /// A copy with parameters replaced by `flat` (in `flatParameters` order).
    public func replacing(flatParameters flat: [Double]) -> Network {
        precondition(flat.count == parameterCount)
        var copy = self
        var offset = 0
        for l in 0..<geometry.count {
            let g = geometry[l]
            copy.parameters[l].weights = Array(flat[offset..<(offset + g.fanIn * g.fanOut)])
            offset += g.fanIn * g.fanOut
            if g.hasBias {
                copy.parameters[l].bias = Array(flat[offset..<(offset + g.fanOut)])
                offset += g.fanOut
            }
        }
        return copy
    }

    /// θ ← θ − rate · step in place, `step` in `flatParameters` order (a gradient-descent
    /// update without copying the parameters out and back). Returns whether every updated
    /// parameter is finite.
    @discardableResult
    public mutating func descend(_ step: UnsafeBufferPointer<Double>, rate: Double) -> Bool {
        precondition(step.count >= parameterCount)
        var offset = 0
        // 0 · x is 0 for finite x and NaN otherwise: one multiply-add per entry checks them.
        var check = 0.0
        func update(_ values: UnsafeMutableBufferPointer<Double>) {
            for i in 0..<values.count {
                let v = values[i] - rate * step[offset + i]
                values[i] = v
                check += 0 * v
            }
            offset += values.count
        }
        for l in 0..<geometry.count {
            parameters[l].weights.withUnsafeMutableBufferPointer { update($0) }
            if parameters[l].bias != nil { parameters[l].bias!.withUnsafeMutableBufferPointer { update($0) } }
        }
        return check == 0
    }

    static func format(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }
}

/// Standard normal draws from a seeded xoshiro256** generator (Marsaglia's polar method).
/// Reproducible across platforms and runs; not the same stream as JAX's.
public struct NormalGenerator: Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)
    private var spare: Double?

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        state = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// A uniform double in [0, 1).
    public mutating func uniform() -> Double {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return Double(result >> 11) * 0x1.0p-53
    }

    /// A standard normal draw.
    public mutating func next() -> Double {
        if let s = spare { spare = nil; return s }
        while true {
            let u = 2 * uniform() - 1, v = 2 * uniform() - 1
            let s = u * u + v * v
            if s > 0 && s < 1 {
                let f = (-2 * Foundation.log(s) / s).squareRoot()
                spare = v * f
                return u * f
            }
        }
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
