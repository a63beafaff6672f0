import Foundation

/// How one parameterized layer's per-sample gradient is kept for the tile products
/// (docs/maths.md §6).
public enum FactorForm: String, Sendable, Equatable {
    /// The layer's inputs (patches) Z and signals δ: Θ gets s² Σ_{p,q} ⟨z_p, z'_q⟩⟨δ_p, δ'_q⟩
    /// + t² ⟨Σ_p δ_p, Σ_q δ'_q⟩ per pair, never forming the gradient.
    case structured
    /// The layer's gradient G = (s Σ_p z_p ⊗ δ_p, t Σ_p δ_p) per sample and output: Θ gets
    /// ⟨G, G'⟩ per pair.
    case explicit
}

/// Which forms a network's layers use.
public enum FactorForms: String, Sendable, CaseIterable {
    /// Per layer, the form with fewer multiply-adds per sample pair (the rule of
    /// `LayerGeometry.preferredForm`).
    case auto
    /// Every layer structured.
    case structured
    /// Every layer explicit.
    case explicit
}

/// The shape and scale factors of one parameterized layer (dense or convolution) of an
/// instantiated network. Both are one computation: at each of `positions` output positions,
/// h_p = s z_p W + t b with z_p the layer's input patch at p (K = window volume · C_in
/// values) and W of shape (K, C_out). A dense layer on flat data has one position and its
/// patch is the whole input; on spatial data it acts on the channels of every position
/// (a 1 x 1 window), as stax.Dense does.
public struct LayerGeometry: Sendable, Equatable {
    /// Fan-in K (the patch size) and fan-out C_out.
    public let fanIn: Int
    public let fanOut: Int
    /// The factor s multiplying z W: W_std / √K (ntk) or 1 (standard).
    public let weightScale: Double
    /// The factor t multiplying b: b_std (ntk), 1 (standard), 0 without a bias.
    public let biasScale: Double
    public let hasBias: Bool
    /// The model's W_std and b_std (used by initialization and the analytic kernels).
    public let weightStd: Double
    public let biasStd: Double?
    /// Output positions (1 for a dense layer on flat data).
    public let positions: Int
    /// Input channels C_in and input positions.
    public let channelsIn: Int
    public let inputPositions: Int
    /// Where each position's patch comes from; nil when the patches are the input's rows
    /// themselves (a dense layer).
    public let windows: WindowMap?
    /// The shape of W in a parameter file: (K, C_out) for dense, window + (C_in, C_out) for conv.
    public let weightShape: [Int]
    /// The layer's place in the model, for messages ("layer 3", "layer 1.2").
    public let path: String
    /// How the tile products treat this layer.
    public internal(set) var form: FactorForm
    /// Whether the layer keeps one signal row per sample instead of k (docs/maths.md §6.3):
    /// only channel-wise maps lie between it and the dense readout, so the k signals are
    /// one vector a scaled by the readout's rows, δ_c[p, o] = a[p, o] s W[o, c], and for
    /// the mean and sum kernels Σ_c ⟨δ_c, δ'_c⟩ = Σ_o a a' w_o with w_o = s² Σ_c W[o, c]².
    public internal(set) var collapsed = false

    /// Signal (or gradient) rows per sample: 1 when collapsed, else k.
    public func rows(outputs k: Int) -> Int { collapsed ? 1 : k }
    /// Doubles per sample of the explicit form's gradients.
    public func gradientCount(outputs k: Int) -> Int { rows(outputs: k) * parameterCount }

    /// Trainable parameters of this layer: K C_out (+ C_out).
    public var parameterCount: Int { fanIn * fanOut + (hasBias ? fanOut : 0) }
    /// Doubles per sample of the structured form's patches Z (positions · K) and, for k
    /// outputs, signals δ (positions · k · C_out).
    public var patchCount: Int { positions * fanIn }
    public func signalCount(outputs k: Int) -> Int { positions * rows(outputs: k) * fanOut }

    /// Multiply-adds per sample pair of each form, for k outputs summed (mean/sum kernels):
    /// structured P² (K + k C_out), explicit k (K C_out + C_out). The per-sample cost of
    /// forming G (k P K C_out) is left out: it is paid once per sample, not per pair.
    public func pairCost(_ form: FactorForm, outputs k: Int) -> Double {
        let p = Double(positions), kk = Double(rows(outputs: k))
        switch form {
        case .structured: return p * p * (Double(fanIn) + kk * Double(fanOut))
        case .explicit: return kk * Double(parameterCount)
        }
    }

    /// The form with fewer multiply-adds per pair (structured on ties, and always for one
    /// position, where it is never worse).
    public func preferredForm(outputs k: Int) -> FactorForm {
        positions == 1 || pairCost(.structured, outputs: k) <= pairCost(.explicit, outputs: k) ? .structured : .explicit
    }
}

extension NetworkPlan {
    /// Multiply-adds of the structured method for k outputs (mean and sum kernels): per
    /// sample pair (each layer's term, by its form) and per sample (the forward pass, the
    /// backward pass of k rows, and the explicit layers' gradients). The useful work of a
    /// run: what its GFLOP/s are counted against.
    public func multiplyAdds(outputs k: Int) -> (perPair: Double, perSample: Double) {
        var pair = 0.0, sample = 0.0
        for (l, g) in geometry.enumerated() {
            let p = Double(g.positions), kIn = Double(g.fanIn), cOut = Double(g.fanOut), rows = Double(g.rows(outputs: k))
            pair += g.positions == 1 && g.form == .structured ? kIn + rows * cOut : g.pairCost(g.form, outputs: k)
            sample += p * kIn * cOut
            if l > 0 { sample += Double(k) * p * kIn * cOut }
            if g.form == .explicit { sample += rows * p * kIn * cOut }
        }
        return (pair, sample)
    }
}

/// The former name of `LayerGeometry`, when every parameterized layer was dense.
public typealias DenseGeometry = LayerGeometry

/// One step of the per-sample passes over values stored flat, channels last, for
/// `walk.count` samples: a layer without parameters (activation, pooling, a residual
/// block), defined in its layer's file. Parameterized layers are `ParameterizedOperation`.
protocol SampleOperation: Sendable {
    /// The layer's output for the walk's samples; with `keep`, whatever the backward pass
    /// needs is pushed on `walk.saved`.
    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double]
    /// δ at the layer's input from δ at its output (`pass.rowsPerSample` rows per sample),
    /// consuming `delta` (release it or return it); values kept by `forward` are popped at
    /// `pass.cursor`. nil once nothing upstream needs a signal.
    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal?
    /// Whether the backward pass scales δ in place (so a parameterized layer downstream may
    /// compute δ straight into the factor slot of the one upstream).
    var scalesInPlace: Bool { get }
}

extension SampleOperation {
    var scalesInPlace: Bool { false }
}

/// A model resolved against a per-sample input shape: the shapes through the layers, the
/// geometry of every parameterized layer in depth-first order (the order of W0, b0, W1, …),
/// and the operations of the forward pass. Flatten is no operation: samples are stored
/// flat in C order already.
public struct NetworkPlan: Sendable {
    public let inputShape: [Int]
    public let outputShape: [Int]
    public let geometry: [LayerGeometry]
    let operations: [any SampleOperation]
    /// How the layers' forms were chosen.
    public let formChoice: FactorForms
    /// Whether the tiles sum the k outputs (the mean and sum kernels; `collapseOutputs`):
    /// an explicit layer's gradients may then be stored sample-major, (K, k C_out) and a bias
    /// row per sample, since only a sample's whole row enters the products (`BatchFactors`).
    public let outputsSummed: Bool
    /// P and the structured factors per sample, as doubles.
    public let parameterCount: Double
    public let factorsPerSample: Double

    /// The largest number of values per sample at any layer.
    public static let maximumValuesPerSample = 1 << 34

    /// Resolves `spec` for data samples of shape `dataShape` (see
    /// `ModelSpec.resolvedInputShape`). `shapesOnly` computes the shapes and sizes without
    /// building the window maps. Throws `ModelError` naming the layer that does not fit.
    /// With `collapseOutputs` (for the mean and sum kernels), the layer before a dense
    /// readout reached through channel-wise maps only keeps one signal row per sample
    /// (`LayerGeometry.collapsed`).
    public init(spec: ModelSpec, dataShape: [Int], forms: FactorForms = .auto, collapseOutputs: Bool = false,
                shapesOnly: Bool = false) throws(ModelError) {
        let shape = try spec.resolvedInputShape(data: dataShape)
        var builder = PlanBuilder(parameterization: spec.parameterization, shapesOnly: shapesOnly)
        let (operations, output) = try builder.plan(spec.layers, shape: shape, parent: nil)
        if output.count != 1 {
            throw ModelError("the network's output has shape \(WindowMap.format(output)); it must be flat (N, k): end with flatten or global_avg_pool and a dense layer")
        }
        let k = output[0]
        var geometry = builder.geometry
        if collapseOutputs, k > 1, let l = Self.collapsible(spec.layers, geometry: geometry) { geometry[l].collapsed = true }
        for l in geometry.indices {
            switch forms {
            case .auto: geometry[l].form = geometry[l].preferredForm(outputs: k)
            case .structured: geometry[l].form = .structured
            case .explicit: geometry[l].form = .explicit
            }
        }
        self.inputShape = shape
        self.outputShape = output
        self.geometry = geometry
        self.operations = operations
        self.formChoice = forms
        self.outputsSummed = collapseOutputs
        self.parameterCount = builder.parameterCount
        var factors = Double(k)
        for (g, sizes) in zip(geometry, builder.sizes) {
            let rows = Double(g.rows(outputs: k))
            factors += g.form == .structured ? sizes.patches + rows * sizes.signals : rows * sizes.parameters
        }
        self.factorsPerSample = factors
    }

    /// The parameterized layer whose signals collapse to one row (see
    /// `LayerGeometry.collapsed`): the one before the readout when the model ends with a
    /// dense layer on flat values preceded, back to that layer, only by activations and
    /// pooling (each output channel a function of the same input channel alone).
    static func collapsible(_ layers: [Layer], geometry: [LayerGeometry]) -> Int? {
        guard geometry.count >= 2, layers.last?.base is DenseLayer, geometry.last!.positions == 1 else { return nil }
        for layer in layers.dropLast().reversed() {
            if layer.base.isParameterized { return geometry.count - 2 }
            if !layer.base.isChannelwise { return nil }
        }
        return nil
    }
}

/// What a layer's `plan` adds to: the geometry of the parameterized layers, the
/// operations of the per-sample passes, and the sizes (see ``LayerType``).
public struct PlanBuilder {
    let parameterization: Parameterization
    let shapesOnly: Bool
    var geometry: [LayerGeometry] = []
    /// Per parameterized layer, in doubles: patches, signals per output, parameters.
    var sizes: [(patches: Double, signals: Double, parameters: Double)] = []
    var parameterCount = 0.0
    var operations: [any SampleOperation] = []

    init(parameterization: Parameterization, shapesOnly: Bool) {
        self.parameterization = parameterization
        self.shapesOnly = shapesOnly
    }

    /// Adds a layer without parameters to the per-sample passes.
    mutating func append(_ operation: some SampleOperation) { operations.append(operation) }

    /// Resolves `layers` on inputs of `shape`: their operations and output shape.
    /// `parent` names the enclosing block (nil at the top level).
    mutating func plan(_ layers: [Layer], shape input: [Int], parent: LayerPath?) throws(ModelError) -> ([any SampleOperation], [Int]) {
        var shape = input
        let outer = operations
        operations = []
        for (position, layer) in layers.enumerated() {
            let path = LayerPath.child(parent, position)
            shape = try layer.base.plan(input: shape, builder: &self, path: path)
            let values = shape.reduce(1.0) { $0 * Double($1) }
            if values > Double(NetworkPlan.maximumValuesPerSample) {
                throw ModelError("\(path): its output has \(String(format: "%.3g", values)) values per sample, more than the \(NetworkPlan.maximumValuesPerSample) the tool handles")
            }
        }
        let result = operations
        operations = outer
        return (result, shape)
    }
    /// Refuses a flat input, or one whose spatial axes are not `rank` (when given).
    func requireSpatial(_ shape: [Int], rank: Int?, what: String, path: LayerPath) throws(ModelError) {
        let spatial = Array(shape.dropLast()), index = path.index
        if spatial.isEmpty {
            throw ModelError("layer \(index): \(what) needs spatial input (channels last: give the model \"input_shape\" [H, W, C] or [L, C], or data of shape (N, H, W, C)), but its input is flat \(WindowMap.format(shape))")
        }
        if let rank, rank != spatial.count {
            throw ModelError("layer \(index): \(what) has a \(rank)-D window but its input \(WindowMap.format(shape)) has \(spatial.count) spatial axes")
        }
    }

    /// The output shape, positions and window map (nil with `shapesOnly`) of a window
    /// moved over `spatial`; refuses a window that leaves no position.
    func window(path: LayerPath, _ what: String, spatial: [Int], window: [Int], strides: [Int], padding: Padding) throws(ModelError) -> (output: [Int], positions: Int, map: WindowMap?) {
        let index = path.index
        var output: [Int] = []
        for axis in spatial.indices {
            guard let n = WindowMap.outputLength(input: spatial[axis], window: window[axis], stride: strides[axis], padding: padding) else {
                throw ModelError("layer \(index): the \(what) window \(WindowMap.format(window)) is larger than its input \(WindowMap.format(spatial)) with VALID padding: no output position is left")
            }
            output.append(n)
        }
        let positions = output.reduce(1, *)
        if shapesOnly { return (output, positions, nil) }
        do {
            let map = try WindowMap(inputSpatial: spatial, window: window, strides: strides, padding: padding)
            return (output, positions, map)
        } catch {
            throw ModelError("layer \(index): \(error.message)")
        }
    }

    /// Adds a parameterized layer: at each of `positions` output positions h_p = s z_p W + t b
    /// with patches z_p of `fanIn` values (read through `windows`, or the position's
    /// channels when nil) and W of `weightShape` in parameter files.
    mutating func addParameterized(path: LayerPath, fanIn: Int, fanOut: Int, positions: Int, channelsIn: Int, inputPositions: Int,
                                   windows: WindowMap?, weightShape: [Int], weightStd: Double, biasStd: Double?) throws(ModelError) {
        let hasBias = biasStd != nil
        let s: Double, t: Double
        switch parameterization {
        case .ntk:
            s = weightStd / Double(fanIn).squareRoot()
            t = biasStd ?? 0
        case .standard:
            s = 1
            t = hasBias ? 1 : 0
        }
        let parameters = Double(fanIn) * Double(fanOut) + (hasBias ? Double(fanOut) : 0)
        parameterCount += parameters
        sizes.append((Double(positions) * Double(fanIn), Double(positions) * Double(fanOut), parameters))
        geometry.append(LayerGeometry(fanIn: fanIn, fanOut: fanOut, weightScale: s, biasScale: t, hasBias: hasBias,
                                      weightStd: weightStd, biasStd: biasStd, positions: positions, channelsIn: channelsIn,
                                      inputPositions: inputPositions, windows: windows?.isIdentity == true ? nil : windows,
                                      weightShape: weightShape, path: path.description, form: .structured))
        operations.append(ParameterizedOperation(layer: geometry.count - 1))
    }
}
