/// An elementwise nonlinearity of a model file: `{"type": "relu"}`, `{"type": "leaky_relu",
/// "alpha": a}`, `{"type": "tanh", "quadrature_degree": n}`, …: neural-tangents' stax layers
/// of the same names (the functions themselves are ``Activation``; tanh, sigmoid and
/// softplus are `stax.ElementwiseNumerical(φ, deg)` in the infinite-width limit).
public struct ActivationLayer: Sendable, Hashable {
    public var activation: Activation
    /// The Gauss–Hermite degree its infinite-width kernel uses when it has no closed form
    /// (nil: `InfiniteWidthKernel.defaultQuadratureDegree`).
    public var quadratureDegree: Int?

    public init(_ activation: Activation, quadratureDegree: Int? = nil) {
        self.activation = activation
        self.quadratureDegree = quadratureDegree
    }
}

extension ActivationLayer: LayerType {
    public static var typeNames: [String] { Activation.names }
    public static func keys(for type: String) -> [String] { ["type", "alpha", "quadrature_degree"] }

    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> ActivationLayer {
        if type != "leaky_relu", object["alpha"] != nil { throw ModelError("\(path): \"alpha\" applies to leaky_relu only") }
        let degree = try JSONFields.integer(object["quadrature_degree"], "quadrature_degree", path.index)
        let activation: Activation
        switch type {
        case "relu": activation = .relu
        case "erf": activation = .erf
        case "tanh": activation = .tanh
        case "identity": activation = .identity
        case "gelu": activation = .gelu
        case "sigmoid": activation = .sigmoid
        case "softplus": activation = .softplus
        default: activation = .leakyRelu(alpha: try JSONFields.number(object["alpha"], "alpha", path.index) ?? 0.01)
        }
        return ActivationLayer(activation, quadratureDegree: degree)
    }

    public func encode() -> [String: Any] {
        var o: [String: Any] = ["type": activation.name]
        if case .leakyRelu(let alpha) = activation { o["alpha"] = alpha }
        if let quadratureDegree { o["quadrature_degree"] = quadratureDegree }
        return o
    }

    public func validate(path: LayerPath) throws(ModelError) {
        if case .leakyRelu(let alpha) = activation, !alpha.isFinite { throw ModelError("\(path): leaky_relu alpha must be finite") }
        if let degree = quadratureDegree, degree < 1 || degree > 1000 {
            throw ModelError("\(path): quadrature_degree must be in 1...1000, got \(degree)")
        }
    }

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        builder.append(ActivationOperation(activation: activation))
        return shape
    }

    /// K ← E[φ(u)φ(v)], Θ ← Θ E[φ'(u)φ'(v)] for (u, v) Gaussian: closed forms for relu,
    /// leaky_relu, erf, gelu and identity, Gauss–Hermite quadrature for the others
    /// (docs/maths.md §5). Before the first parameterized layer φ acts on the inputs
    /// themselves; after a value that is not Gaussian the limit is refused, as stax does.
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        if !builder.seenParameterized {
            builder.inputActivations.append(activation)
            return
        }
        if !builder.gaussian {
            throw ModelError("\(path): \(activation.name) acts on a value that is not Gaussian in the infinite-width limit (it follows another activation, or a residual sum of a non-Gaussian branch); put a \(builder.isSpatial ? "dense or conv" : "dense") layer before it")
        }
        builder.gaussian = false
        switch activation {
        case .relu: builder.append(RectifiedStep(negativeSlope: 0, positiveSlope: 1))
        case .leakyRelu(let alpha): builder.append(RectifiedStep(negativeSlope: alpha, positiveSlope: 1))
        case .erf: builder.append(ErfStep())
        case .gelu: builder.append(GeluStep())
        case .identity: builder.append(IdentityStep())
        case .tanh, .sigmoid, .softplus:
            let rule = builder.quadratureRule(degree: quadratureDegree ?? InfiniteWidthKernel.defaultQuadratureDegree)
            let function: QuadratureStep.Function = activation == .tanh ? .tanh : activation == .sigmoid ? .logistic : .softplus
            builder.append(QuadratureStep(function: function, rule: rule))
        }
    }

    public var isChannelwise: Bool { true }
}

/// φ forward (its input h kept for the backward pass), δ ⊙ φ'(h) backward, in place.
struct ActivationOperation: SampleOperation {
    let function: Activation
    init(activation: Activation) { function = activation }

    var scalesInPlace: Bool { true }

    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        if keep { walk.saved.append(x) }
        var current = x
        current.withUnsafeMutableBufferPointer { function.applyValue($0) }
        return current
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        pass.cursor -= 1
        let h = walk.saved[pass.cursor]
        let count = walk.count, r = pass.rowsPerSample
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
        return delta
    }
}
