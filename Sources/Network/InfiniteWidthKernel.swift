import Foundation

/// The two infinite-width kernels of a network.
public enum InfiniteWidthKind: String, Sendable, CaseIterable {
    /// The NNGP kernel K(x, x') = E[f(x) f(x')] at initialization.
    case nngp
    /// The neural tangent kernel Θ(x, x').
    case ntk
}

/// The infinite-width (analytic) NNGP and NTK of a fully connected network, as
/// neural-tangents 0.6.5 computes them with `kernel_fn(x1, x2, ('nngp', 'ntk'))`.
///
/// Per pair (x, x') the recursion tracks q₁₂ = K(x, x'), q₁₁ = K(x, x), q₂₂ = K(x', x')
/// and T = Θ(x, x'):
/// - input: K = x·x' / d, T = 0;
/// - dense, ntk: K ← W_std² K + b_std², T ← K_new + W_std² T;
/// - dense, standard: T ← n_in K_old + W_std² T + [bias], K ← W_std² K + b_std²
///   (n_in is the finite fan-in, so the standard limit depends on the widths);
/// - activation φ: K ← E[φ(u)φ(v)], T ← T E[φ'(u)φ'(v)], (u, v) ~ N(0, [[q₁₁, q₁₂], [q₁₂, q₂₂]]),
///   while the variances go through their own one-sample maps q ← E[φ(u)²];
/// - the results are K and T after the last layer (for k outputs the limit is Θ ⊗ I_k).
///
/// Closed forms (neural-tangents' own expressions, evaluated in the same order):
/// - relu and leaky_relu (ABRelu(a, b), a = α, b = 1; relu is a = 0):
///   s = √max(q₁₁q₂₂ − q₁₂², 0), θ = atan2(s, q₁₂) (π/2 when s = q₁₂ = 0),
///   σ̇ = (a² + b²)/2 − (a − b)²θ/(2π), K ← (a − b)² s/(2π) + σ̇ q₁₂, T ← σ̇ T; q ← (a² + b²) q/2.
/// - erf: D = √((1 + 2q₁₁)(1 + 2q₂₂) − 4q₁₂²), K ← (2/π) atan2(2q₁₂, D), T ← T (4/π)/D;
///   q ← (2/π) atan2(q, √(q + 1/4)).
/// - gelu (x Φ(x), arXiv:2002.08517): with P = q₁₁q₂₂, P₁ = (q₁₁ + 1)(q₂₂ + 1), Δ² = P₁ − q₁₂²,
///   θ = atan2(q₁₂, Δ): K ← [(q₁₂² + PΔ²)/(P₁Δ) + q₁₂θ]/(2π) + q₁₂/4,
///   T ← T [(1/Δ² + (1 − P)/P₁ + 1) q₁₂/(2πΔ) + 1/4 + θ/(2π)].
/// - identity: K and T unchanged.
///
/// tanh, sigmoid (the logistic function) and softplus have no closed form: as
/// `stax.ElementwiseNumerical(φ, deg)` they use the n-node Gauss–Hermite rule (xᵢ, wᵢ):
/// α = q₁₂/√(q₁₁/2), β = √(2(q₂₂ − q₁₂²/q₁₁)),
/// E[g(u)g(v)] ≈ (1/π) Σᵢ Σⱼ wᵢwⱼ g(√(2q₁₁) xᵢ) g(α xᵢ + β xⱼ) for g = φ and g = φ',
/// q ← (1/√π) Σᵢ wᵢ φ(√(2q) xᵢ)². The degree n is the layer's `quadratureDegree`, or
/// `defaultQuadratureDegree`. The rule treats u and v differently, so for these
/// activations K(x, x') and K(x', x) differ by the quadrature error, exactly as in
/// neural-tangents; the closed forms are symmetric to the last bit.
///
/// Activations before the first dense layer act on the inputs themselves (x is
/// deterministic, not a wide Gaussian layer): K = φ(x)·φ(x')/d, T = 0.
public struct InfiniteWidthKernel: Sendable {
    /// The Gauss–Hermite degree of a tanh, sigmoid or softplus layer that gives none: 64
    /// nodes per dimension (4096 terms per pair and layer, halved by symmetry).
    /// neural-tangents' `ElementwiseNumerical` has no default `deg`; with 64 the rule's own
    /// error for tanh is ~1e-4 to 1e-3 relative at O(1) variances (docs/maths.md, the
    /// tanh_ntk_quad64 fixture) and ~1e-6 at 128, for four times the time. The kernel is
    /// defined by its degree: compare with neural-tangents at the same `deg`.
    public static let defaultQuadratureDegree = 64

    /// The model.
    public let spec: ModelSpec
    /// The input width d: the values per sample (the product of the input shape).
    public let inputWidth: Int
    /// The maps of a convolutional network (spatial inputs), else nil.
    private let spatial: SpatialProgram?

    /// Activations applied to the raw inputs, before the first dense layer.
    private let inputActivations: [Activation]
    /// The kernel map of every later layer, in order.
    private let steps: [any KernelMap]

    /// Prepares the layer maps of `spec` for inputs of width `inputWidth` (and the
    /// Gauss–Hermite rules of its quadrature layers). A layer's `quadratureDegree` is used by
    /// tanh, sigmoid and softplus only; the closed forms ignore it.
    /// Throws `ModelError` when the model is invalid (see `ModelSpec.validate`), when
    /// `inputWidth` is not positive, or when an activation follows another activation after
    /// the first dense layer (its input is then not Gaussian; neural-tangents refuses it too).
    public init(spec: ModelSpec, inputWidth: Int) throws(ModelError) {
        guard inputWidth > 0 else { throw ModelError("the input width must be positive, got \(inputWidth)") }
        try self.init(spec: spec, inputShape: [inputWidth])
    }

    /// The kernels of `spec` for data samples of shape `dataShape` ([d] for flat rows; a
    /// model's `input_shape` reshapes them): the fully connected recursion on flat inputs,
    /// the convolutional one (`SpatialProgram`) on spatial inputs.
    public init(spec: ModelSpec, inputShape dataShape: [Int]) throws(ModelError) {
        try spec.validate()
        let plan = try NetworkPlan(spec: spec, dataShape: dataShape, shapesOnly: true)
        let shape = plan.inputShape
        self.spec = spec
        self.inputWidth = shape.reduce(1, *)
        if shape.count == 1 {
            var builder = KernelBuilder(parameterization: spec.parameterization, shape: shape, spatial: false)
            self.steps = try builder.maps(of: spec.layers, parent: nil)
            self.spatial = nil
            self.inputActivations = builder.inputActivations
        } else {
            let program = try SpatialProgram(spec: spec, inputShape: shape)
            self.steps = program.flatSteps
            self.spatial = program
            self.inputActivations = program.inputActivations
        }
    }

    /// Both kernels for all pairs of a block: x row-major (m, d), y row-major (n, d);
    /// results row-major (m, n), entry [i, j] for the pair (x row i, y row j).
    ///
    /// Every entry depends only on its own two rows, so any tiling of a pair set gives the
    /// same values bit for bit, and a pair of identical rows gets exactly the values of the
    /// diagonal (for relu the sqrt of a cancellation cannot leave noise there).
    /// Cost: O((m + n)(d + layers)) for the per-sample variances, then O(m n d) for the
    /// inputs and O(m n) per closed-form activation, O(m n deg²/2) per quadrature activation.
    ///
    /// With `upper` (x and y the same block, whose upper triangle is all that is read),
    /// convolutional networks may leave groups of pairs below the diagonal zero.
    public func evaluate(x: UnsafeBufferPointer<Double>, m: Int, y: UnsafeBufferPointer<Double>, n: Int,
                         upper: Bool = false) -> (nngp: [Double], ntk: [Double]) {
        let d = inputWidth
        precondition(m >= 0 && n >= 0, "block sizes must be non-negative")
        precondition(x.count >= m * d && y.count >= n * d, "x needs m·d and y needs n·d values")
        if let spatial { return spatial.evaluate(x: x, m: m, y: y, n: n, upper: upper) }
        var nngp = [Double](repeating: 0, count: m * n)
        var ntk = [Double](repeating: 0, count: m * n)
        if m == 0 || n == 0 { return (nngp, ntk) }

        var qx = [Double](repeating: 0, count: m)
        var qy = [Double](repeating: 0, count: n)
        withInputRows(x, count: m) { xr in
            withInputRows(y, count: n) { yr in
                nngp.withUnsafeMutableBufferPointer { k in
                    // The same dot routine for variances and pairs: identical rows give
                    // q₁₂ == q₁₁ == q₂₂ exactly.
                    let width = Double(d)
                    for i in 0..<m { qx[i] = Self.dot(xr + i * d, xr + i * d, d) / width }
                    for j in 0..<n { qy[j] = Self.dot(yr + j * d, yr + j * d, d) / width }
                    for i in 0..<m {
                        let row = xr + i * d
                        for j in 0..<n { k[i * n + j] = Self.dot(row, yr + j * d, d) / width }
                    }
                }
            }
        }
        nngp.withUnsafeMutableBufferPointer { k in
            ntk.withUnsafeMutableBufferPointer { t in
                qx.withUnsafeMutableBufferPointer { q1 in
                    qy.withUnsafeMutableBufferPointer { q2 in
                        Self.apply(steps, k: k, t: t, q1: q1, q2: q2)
                    }
                }
            }
        }
        return (nngp, ntk)
    }

    /// Applies the layer maps in order.
    static func apply(_ steps: [any KernelMap], k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
                      q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        for step in steps { step.apply(k: k, t: t, q1: q1, q2: q2) }
    }

    /// Calls `body` with the rows after the activations that precede the first dense layer
    /// (the given rows themselves when there are none).
    private func withInputRows(_ rows: UnsafeBufferPointer<Double>, count: Int, _ body: (UnsafePointer<Double>) -> Void) {
        if inputActivations.isEmpty {
            body(rows.baseAddress!)
            return
        }
        var transformed = Array(rows.prefix(count * inputWidth))
        for activation in inputActivations {
            for p in transformed.indices { transformed[p] = activation.value(transformed[p]) }
        }
        transformed.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Σ a[p] b[p] over d values, four lanes then the tail: a fixed order, symmetric in a, b.
    @inline(__always)
    private static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ d: Int) -> Double {
        var acc = SIMD4<Double>()
        var p = 0
        while p + 4 <= d {
            let va = UnsafeRawPointer(a + p).loadUnaligned(as: SIMD4<Double>.self)
            let vb = UnsafeRawPointer(b + p).loadUnaligned(as: SIMD4<Double>.self)
            acc += va * vb
            p += 4
        }
        var s = (acc[0] + acc[1]) + (acc[2] + acc[3])
        while p < d {
            s += a[p] * b[p]
            p += 1
        }
        return s
    }
}

// MARK: - Layer maps

/// One layer's map on the infinite-width state of pairs (docs/maths.md §5, §7), made by
/// the layer's `kernelMaps`. Flat: `apply(k:t:q1:q2:)` on m x n pairs (K and Θ row-major,
/// each sample's variance q₁, q₂). Spatial: `apply(_:_:)` on a `SpatialState`; a map
/// acting entry by entry need not write it (the default applies the flat form to every
/// entry), and a map defined on spatial states only need not write the flat one.
protocol KernelMap: Sendable {
    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>)
    func apply(_ state: inout SpatialState, _ run: SpatialRun)
}

extension KernelMap {
    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        preconditionFailure("\(Self.self) acts on spatial states only")
    }

    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        state.entrywise { k, t, q1, q2 in apply(k: k, t: t, q1: q1, q2: q2) }
    }
}

/// What a layer's `kernelMaps` appends to, and the state of the infinite-width recursion
/// it sees: the value's shape, whether it is Gaussian (the output of a parameterized layer
/// or a sum of Gaussians: what activations and residual sums need; neural-tangents refuses
/// the same networks), whether a parameterized layer came before, the activations applied
/// to the raw inputs, the Gauss–Hermite rules, and, on spatial values, where the state keeps
/// full spatial blocks (only where pooling needs them).
public struct KernelBuilder {
    let parameterization: Parameterization
    /// The shape of the value entering the next layer (channels last; [n] when flat).
    var shape: [Int]
    /// Whether the maps act on spatial states (the part of a network before its flattening).
    let isSpatial: Bool
    var seenParameterized = false
    var gaussian = false
    /// Activations applied to the raw inputs, before any parameterized layer.
    var inputActivations: [Activation] = []
    private var rules: [Int: GaussHermiteRule] = [:]
    private var maps: [any KernelMap] = []
    /// Pooling layers so far (their ordinals number their per-sample variances).
    private(set) var poolCount = 0
    /// Whether the state after the layer being built must keep full spatial blocks.
    private var fullAfterLayer = false

    init(parameterization: Parameterization, shape: [Int], spatial: Bool) {
        self.parameterization = parameterization
        self.shape = shape
        self.isSpatial = spatial
    }

    /// Appends a map.
    mutating func append(_ map: some KernelMap) { maps.append(map) }

    /// The value becomes the output of a parameterized layer: Gaussian.
    mutating func enterGaussian() {
        seenParameterized = true
        gaussian = true
    }

    /// The next pooling layer's ordinal.
    mutating func nextPoolOrdinal() -> Int {
        poolCount += 1
        return poolCount - 1
    }

    /// The n-node Gauss–Hermite rule (computed once per degree).
    mutating func quadratureRule(degree n: Int) -> GaussHermiteRule {
        if let rule = rules[n] { return rule }
        let rule = GaussHermiteRule(degree: n)
        rules[n] = rule
        return rule
    }

    /// The dense map of a layer with fan-in `fanIn`.
    func denseStep(weightStd: Double, biasStd: Double?, fanIn: Int) -> DenseStep {
        DenseStep(weightVariance: weightStd * weightStd, biasVariance: biasStd.map { $0 * $0 } ?? 0, hasBias: biasStd != nil,
                  fanIn: Double(fanIn), standard: parameterization == .standard)
    }

    /// The maps of `layers` from the current state (their paths under `parent`, or at the
    /// top level from position `offset`). On spatial states, full blocks become diagonals
    /// as soon as nothing ahead needs them.
    mutating func maps(of layers: [Layer], parent: LayerPath?, offset: Int = 0) throws(ModelError) -> [any KernelMap] {
        let outer = maps, after = fullAfterLayer
        maps = []
        var full = isSpatial && Self.needsFull(layers, after: after)
        for (position, layer) in layers.enumerated() {
            let path = parent == nil ? LayerPath("\(position + offset)") : LayerPath.child(parent, position)
            let ahead = Self.needsFull(Array(layers[(position + 1)...]), after: after)
            fullAfterLayer = ahead
            try layer.base.kernelMaps(&self, path: path)
            if isSpatial && full && !ahead && shape.count > 1 {
                maps.append(ToDiagonalMap())
                full = false
            }
        }
        fullAfterLayer = after
        let result = maps
        maps = outer
        return result
    }

    /// Whether the state at the start of `layers` must keep full spatial blocks, when the
    /// state after them must (`after`).
    static func needsFull(_ layers: [Layer], after: Bool) -> Bool {
        var need = after
        for layer in layers.reversed() { need = layer.base.needsFullSpatial(after: need) }
        return need
    }

    /// The window map of a spatial layer, its failure named by the layer.
    static func windowMap(path: LayerPath, spatial: [Int], window: [Int], strides: [Int], padding: Padding) throws(ModelError) -> WindowMap {
        do {
            return try WindowMap(inputSpatial: spatial, window: window, strides: strides, padding: padding)
        } catch {
            throw ModelError("\(path): \(error.message)")
        }
    }
}

/// Full spatial blocks → their diagonals (nothing downstream needs the rest).
struct ToDiagonalMap: KernelMap {
    func apply(_ state: inout SpatialState, _ run: SpatialRun) { SpatialProgram.toDiagonal(&state) }
}

/// The identity's map: K and Θ unchanged.
struct IdentityStep: KernelMap {
    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {}
    func apply(_ state: inout SpatialState, _ run: SpatialRun) {}
}

/// erf's closed form (`InfiniteWidthKernel.applyErf`).
struct ErfStep: KernelMap {
    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        InfiniteWidthKernel.applyErf(k: k, t: t, q1: q1, q2: q2)
    }
}

/// gelu's closed form (`InfiniteWidthKernel.applyGelu`).
struct GeluStep: KernelMap {
    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        InfiniteWidthKernel.applyGelu(k: k, t: t, q1: q1, q2: q2)
    }
}

/// A dense layer: K ← W_std² K + b_std²; T ← K_new + W_std² T (ntk) or
/// T ← n_in K_old + W_std² T + [bias] (standard).
struct DenseStep: KernelMap {
    let weightVariance: Double
    let biasVariance: Double
    let hasBias: Bool
    let fanIn: Double
    let standard: Bool

    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let w = weightVariance, b = biasVariance
        if standard {
            let one: Double = hasBias ? 1 : 0
            for p in 0..<k.count {
                let old = k[p]
                t[p] = fanIn * old + w * t[p] + one
                k[p] = old * w + b
            }
        } else {
            for p in 0..<k.count {
                let new = k[p] * w + b
                k[p] = new
                t[p] = new + w * t[p]
            }
        }
        for i in 0..<q1.count { q1[i] = q1[i] * w + b }
        for j in 0..<q2.count { q2[j] = q2[j] * w + b }
    }
}

/// ABRelu(a, b) = a min(x, 0) + b max(x, 0): relu (0, 1) and leaky_relu (α, 1).
struct RectifiedStep: KernelMap {
    /// (a − b)² / (2π).
    let factor: Double
    /// (a² + b²) / 2.
    let half: Double

    init(negativeSlope a: Double, positiveSlope b: Double) {
        factor = (a - b) * (a - b) / (2 * Double.pi)
        half = (a * a + b * b) / 2
    }

    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let n = q2.count
        for i in 0..<q1.count {
            let q11 = q1[i]
            for j in 0..<n {
                let p = i * n + j
                let q12 = k[p]
                let s = (Swift.max(q11 * q2[j] - q12 * q12, 0)).squareRoot()
                let angle = s == 0 && q12 == 0 ? Double.pi / 2 : Foundation.atan2(s, q12)
                let dotSigma = half - factor * angle
                k[p] = factor * s + dotSigma * q12
                t[p] *= dotSigma
            }
        }
        for i in 0..<q1.count { q1[i] = half * q1[i] }
        for j in 0..<n { q2[j] = half * q2[j] }
    }
}

extension InfiniteWidthKernel {
    /// erf: K ← (2/π) atan2(2q₁₂, D), T ← T (4/π)/D, D = √((1 + 2q₁₁)(1 + 2q₂₂) − 4q₁₂²).
    static func applyErf(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
                                     q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let factor = 2 / Double.pi
        let n = q2.count
        for i in 0..<q1.count {
            let denominator1 = 1 + 2 * q1[i]
            for j in 0..<n {
                let p = i * n + j
                let q12 = k[p]
                let root = (Swift.max(denominator1 * (1 + 2 * q2[j]) - 4 * (q12 * q12), 0)).squareRoot()
                k[p] = factor * Foundation.atan2(2 * q12, root)
                t[p] *= 2 * factor / root
            }
        }
        for i in 0..<q1.count { q1[i] = factor * Foundation.atan2(q1[i], (q1[i] + 0.25).squareRoot()) }
        for j in 0..<n { q2[j] = factor * Foundation.atan2(q2[j], (q2[j] + 0.25).squareRoot()) }
    }

    /// gelu: neural-tangents' closed form (see the type's documentation).
    static func applyGelu(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
                                      q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let twoPi = 2 * Double.pi
        let n = q2.count
        for i in 0..<q1.count {
            let q11 = q1[i]
            for j in 0..<n {
                let p = i * n + j
                let q12 = k[p], q22 = q2[j]
                let product = q11 * q22
                let productPlusOne = (q11 + 1) * (q22 + 1)
                let deltaSquared = productPlusOne - q12 * q12
                let delta = (Swift.max(deltaSquared, 0)).squareRoot()
                let angle = Foundation.atan2(q12, delta)
                var value = (q12 * q12 + product * deltaSquared) / (productPlusOne * delta)
                value += q12 * angle
                value /= twoPi
                value += 0.25 * q12
                let second = 0.25 + angle / twoPi
                var first = 1 / deltaSquared + (1 - product) / productPlusOne + 1
                first *= q12 / delta / twoPi
                k[p] = value
                t[p] *= first + second
            }
        }
        for i in 0..<q1.count { q1[i] = geluVariance(q1[i]) }
        for j in 0..<n { q2[j] = geluVariance(q2[j]) }
    }

    /// E[gelu(u)²] for u ~ N(0, q).
    private static func geluVariance(_ q: Double) -> Double {
        let root = (1 + 2 * q).squareRoot()
        var value = q / ((q + 1) * root)
        value += Foundation.atan2(q, root) / 2
        value /= Double.pi
        value += 0.25
        value *= q
        return value
    }
}

// MARK: - Gauss–Hermite quadrature

/// An activation integrated numerically: g and g' at four points at once, and the symmetry
/// g(−z) = M(g(z), z) that lets the pair loop evaluate only half the outer nodes.
private protocol QuadratureIntegrand {
    /// g(z) and g'(z) lane by lane, g' as JAX differentiates g.
    static func evaluate(_ z: SIMD4<Double>) -> (SIMD4<Double>, SIMD4<Double>)
    /// From S = Σ_b w_b g(c + βx_b) and D = Σ_b w_b g'(c + βx_b), the same sums at −c
    /// (the mirrored outer node): W = Σ w_b, M = Σ w_b x_b.
    static func mirror(_ s: Double, _ d: Double, center: Double, beta: Double, weightSum: Double, firstMoment: Double) -> (Double, Double)
}

/// tanh(−z) = −tanh(z), tanh' = (1 + t)(1 − t) even.
private enum TanhIntegrand: QuadratureIntegrand {
    @inline(__always)
    static func evaluate(_ z: SIMD4<Double>) -> (SIMD4<Double>, SIMD4<Double>) {
        let t = VectorMath.tanh(z)
        return (t, (1 + t) * (1 - t))
    }

    @inline(__always)
    static func mirror(_ s: Double, _ d: Double, center: Double, beta: Double, weightSum: Double, firstMoment: Double) -> (Double, Double) {
        (-s, d)
    }
}

/// σ(−z) = 1 − σ(z), σ' = σ(1 − σ) even.
private enum LogisticIntegrand: QuadratureIntegrand {
    @inline(__always)
    static func evaluate(_ z: SIMD4<Double>) -> (SIMD4<Double>, SIMD4<Double>) {
        let v = VectorMath.logistic(z)
        return (v, v * (1 - v))
    }

    @inline(__always)
    static func mirror(_ s: Double, _ d: Double, center: Double, beta: Double, weightSum: Double, firstMoment: Double) -> (Double, Double) {
        (weightSum - s, d)
    }
}

/// softplus(−z) = softplus(z) − z, softplus'(−z) = 1 − softplus'(z) (softplus' = σ).
private enum SoftplusIntegrand: QuadratureIntegrand {
    @inline(__always)
    static func evaluate(_ z: SIMD4<Double>) -> (SIMD4<Double>, SIMD4<Double>) {
        // softplus z = max(z, 0) + log1p(e^{−|z|}); only log1p is left to the C library.
        let (magnitude, e) = VectorMath.magnitudeAndDecay(z)
        var v = SIMD4<Double>()
        for lane in 0..<4 { v[lane] = 0.5 * (z[lane] + magnitude[lane]) + Foundation.log1p(e[lane]) }
        return (v, VectorMath.logistic(z, decay: e))
    }

    @inline(__always)
    static func mirror(_ s: Double, _ d: Double, center: Double, beta: Double, weightSum: Double, firstMoment: Double) -> (Double, Double) {
        (s - (center * weightSum + beta * firstMoment), weightSum - d)
    }
}

/// φ by the 2-D Gauss–Hermite rule of `stax.ElementwiseNumerical`.
struct QuadratureStep: KernelMap {
    enum Function: Sendable { case tanh, logistic, softplus }

    let function: Function
    let degree: Int
    /// The rule's nodes and weights padded with (0, 0) to a multiple of four.
    let nodes: [Double]
    let weights: [Double]
    /// Σ w_b and Σ w_b x_b (√π and 0 up to rounding).
    let weightSum: Double
    let firstMoment: Double

    init(function: Function, rule: GaussHermiteRule) {
        self.function = function
        degree = rule.degree
        let padded = (rule.degree + 3) / 4 * 4
        nodes = rule.nodes + [Double](repeating: 0, count: padded - rule.degree)
        weights = rule.weights + [Double](repeating: 0, count: padded - rule.degree)
        var sum = 0.0, moment = 0.0
        for (x, w) in zip(rule.nodes, rule.weights) {
            sum += w
            moment += w * x
        }
        weightSum = sum
        firstMoment = moment
    }

    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        switch function {
        case .tanh: apply(TanhIntegrand.self, k: k, t: t, q1: q1, q2: q2)
        case .logistic: apply(LogisticIntegrand.self, k: k, t: t, q1: q1, q2: q2)
        case .softplus: apply(SoftplusIntegrand.self, k: k, t: t, q1: q1, q2: q2)
        }
    }

    private func apply<G: QuadratureIntegrand>(_: G.Type, k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
                                               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let m = q1.count, n = q2.count, padded = nodes.count
        // Per row sample: wₐ g(√(2q₁₁) xₐ) and wₐ g'(√(2q₁₁) xₐ).
        var outer = [Double](repeating: 0, count: m * padded)
        var outerDerivative = [Double](repeating: 0, count: m * padded)
        nodes.withUnsafeBufferPointer { nodeBuffer in
            weights.withUnsafeBufferPointer { weightBuffer in
                let x = nodeBuffer.baseAddress!, w = weightBuffer.baseAddress!
                outer.withUnsafeMutableBufferPointer { g in
                    outerDerivative.withUnsafeMutableBufferPointer { dg in
                        for i in 0..<m {
                            let root = (2 * q1[i]).squareRoot()
                            for a in stride(from: 0, to: padded, by: 4) {
                                let wa = VectorMath.load(w + a)
                                let (v, dv) = G.evaluate(root * VectorMath.load(x + a))
                                VectorMath.store(wa * v, g.baseAddress! + i * padded + a)
                                VectorMath.store(wa * dv, dg.baseAddress! + i * padded + a)
                            }
                        }
                    }
                }
                outer.withUnsafeBufferPointer { g in
                    outerDerivative.withUnsafeBufferPointer { dg in
                        for i in 0..<m {
                            let q11 = q1[i]
                            let alphaScale = 1 / Swift.max(q11 / 2, 1e-30).squareRoot()
                            let gRow = g.baseAddress! + i * padded, dgRow = dg.baseAddress! + i * padded
                            for j in 0..<n {
                                let p = i * n + j
                                let q12 = k[p]
                                let alpha: Double, beta: Double
                                if q11 > 0 {
                                    alpha = q12 * alphaScale
                                    beta = Swift.max(2 * (q2[j] - q12 * q12 / q11), 0).squareRoot()
                                } else {
                                    // u ≡ 0 (neural-tangents divides 0 by 0 here and gives NaN).
                                    alpha = 0
                                    beta = Swift.max(2 * q2[j], 0).squareRoot()
                                }
                                let (value, derivative) = pair(G.self, alpha: alpha, beta: beta, g: gRow, dg: dgRow, x: x, w: w)
                                k[p] = value / Double.pi
                                t[p] *= derivative / Double.pi
                            }
                        }
                    }
                }
                for i in 0..<m { q1[i] = variance(G.self, q1[i], x: x, w: w) }
                for j in 0..<n { q2[j] = variance(G.self, q2[j], x: x, w: w) }
            }
        }
    }

    /// (1/√π) Σᵢ wᵢ φ(√(2q) xᵢ)².
    private func variance<G: QuadratureIntegrand>(_: G.Type, _ q: Double, x: UnsafePointer<Double>, w: UnsafePointer<Double>) -> Double {
        let root = (2 * q).squareRoot()
        var sum = SIMD4<Double>()
        for a in stride(from: 0, to: nodes.count, by: 4) {
            let v = G.evaluate(root * VectorMath.load(x + a)).0
            sum += VectorMath.load(w + a) * (v * v)
        }
        return VectorMath.sum(sum) / Double.pi.squareRoot()
    }

    /// Σₐ wₐ g(√(2q₁₁)xₐ) Σ_b w_b g(αxₐ + βx_b) and the same for g' (without the 1/π).
    /// Node a and its mirror n−1−a share the inner evaluations: their arguments are exact
    /// negatives of each other.
    @inline(__always)
    private func pair<G: QuadratureIntegrand>(_: G.Type, alpha: Double, beta: Double, g: UnsafePointer<Double>, dg: UnsafePointer<Double>,
                                              x: UnsafePointer<Double>, w: UnsafePointer<Double>) -> (Double, Double) {
        let padded = nodes.count
        var value = 0.0, derivative = 0.0
        for a in 0..<((degree + 1) / 2) {
            let mirror = degree - 1 - a
            let center = alpha * x[a]
            var s4 = SIMD4<Double>(), ds4 = SIMD4<Double>()
            for b in stride(from: 0, to: padded, by: 4) {
                let wb = VectorMath.load(w + b)
                let (v, dv) = G.evaluate(center + beta * VectorMath.load(x + b))
                s4 += wb * v
                ds4 += wb * dv
            }
            let s = VectorMath.sum(s4), ds = VectorMath.sum(ds4)
            if mirror == a {
                value += g[a] * s
                derivative += dg[a] * ds
            } else {
                let (sMirror, dsMirror) = G.mirror(s, ds, center: center, beta: beta, weightSum: weightSum, firstMoment: firstMoment)
                value += g[a] * s + g[mirror] * sMirror
                derivative += dg[a] * ds + dg[mirror] * dsMirror
            }
        }
        return (value, derivative)
    }
}

/// Four-lane elementary functions for the quadrature loops, branch-free so they vectorize
/// on any x86-64 or arm64 target; absolute error within 2 ulps of 1 (checked against the C
/// library in the tests), which is what sums of weighted values need.
enum VectorMath {
    @inline(__always)
    static func load(_ p: UnsafePointer<Double>) -> SIMD4<Double> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Double>.self)
    }

    @inline(__always)
    static func store(_ v: SIMD4<Double>, _ p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Double>.self)
    }

    @inline(__always)
    static func sum(_ v: SIMD4<Double>) -> Double { (v[0] + v[1]) + (v[2] + v[3]) }

    /// u = k ln 2 + r with |r| ≤ ln2/2, for u ≤ 0 (clamped below at −700, where eᵘ is 0 to
    /// the last bit that matters): returns 2^k and eʳ − 1, so eᵘ = 2^k (eʳ − 1) + 2^k and
    /// eᵘ − 1 = 2^k (eʳ − 1) + (2^k − 1), both without cancellation.
    @inline(__always)
    static func reduce(_ u: SIMD4<Double>) -> (scale: SIMD4<Double>, expm1: SIMD4<Double>) {
        var clamped = u
        for lane in 0..<4 { clamped[lane] = clamped[lane] < -700 ? -700 : clamped[lane] }  // maxpd
        // Round to nearest by the 1.5·2⁵² shifter: the integer k sits in the low bits.
        let shifter = SIMD4<Double>(repeating: 6755399441055744.0)
        let shifted = clamped * 1.4426950408889634 + shifter
        let k = shifted - shifter
        // ln 2 = hi + lo with hi's low 32 bits zero, so k·hi is exact (fdlibm's split).
        let r = (clamped - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
        // eʳ − 1 by its Taylor series to r¹³/13! (the next term is < 5e-18 |r| for |r| ≤ 0.35).
        var p = SIMD4<Double>(repeating: 1.6059043836821613e-10)
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1
        p = p * r
        let kBits = unsafeBitCast(shifted, to: SIMD4<Int64>.self) &- unsafeBitCast(shifter, to: SIMD4<Int64>.self)
        let scale = unsafeBitCast((kBits &+ 1023) &<< 52, to: SIMD4<Double>.self)
        return (scale, p)
    }

    /// tanh z = −sign(z) · expm1(−2|z|) / (2 + expm1(−2|z|)).
    @inline(__always)
    static func tanh(_ z: SIMD4<Double>) -> SIMD4<Double> {
        let bits = unsafeBitCast(z, to: SIMD4<UInt64>.self)
        let sign = bits & 0x8000_0000_0000_0000
        let magnitude = unsafeBitCast(bits & 0x7FFF_FFFF_FFFF_FFFF, to: SIMD4<Double>.self)
        let (scale, p) = reduce(-2 * magnitude)
        let em = scale * p + (scale - 1)
        let t = -em / (2 + em)  // ≥ 0 (and +0, not −0, at z = 0 once the sign bit is cleared)
        return unsafeBitCast((unsafeBitCast(t, to: SIMD4<UInt64>.self) & 0x7FFF_FFFF_FFFF_FFFF) | sign, to: SIMD4<Double>.self)
    }

    /// |z| and e^{−|z|}.
    @inline(__always)
    static func magnitudeAndDecay(_ z: SIMD4<Double>) -> (SIMD4<Double>, SIMD4<Double>) {
        let magnitude = unsafeBitCast(unsafeBitCast(z, to: SIMD4<UInt64>.self) & 0x7FFF_FFFF_FFFF_FFFF, to: SIMD4<Double>.self)
        let (scale, p) = reduce(-magnitude)
        return (magnitude, scale * p + scale)
    }

    /// σ(z) = 1/(1 + e^{−z}) as 1/(1 + e) for z ≥ 0 and e/(1 + e) for z < 0, e = e^{−|z|}.
    @inline(__always)
    static func logistic(_ z: SIMD4<Double>) -> SIMD4<Double> {
        logistic(z, decay: magnitudeAndDecay(z).1)
    }

    @inline(__always)
    static func logistic(_ z: SIMD4<Double>, decay e: SIMD4<Double>) -> SIMD4<Double> {
        var numerator = e
        for lane in 0..<4 { numerator[lane] = z[lane] < 0 ? e[lane] : 1 }  // a blend, not a branch
        return numerator / (1 + e)
    }
}
