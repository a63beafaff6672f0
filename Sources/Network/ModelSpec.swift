import Foundation

/// How a dense layer's trainable arrays map to its output (neural-tangents' `parameterization`).
public enum Parameterization: String, Sendable, CaseIterable, Codable {
    /// h = (W_std / √n_in) z W + b_std b, with W, b ~ N(0, 1).
    case ntk
    /// h = z W + b, with W ~ N(0, W_std² / n_in), b ~ N(0, b_std²).
    case standard
}

/// A dense layer of a model file.
public struct DenseLayer: Sendable, Equatable, Hashable {
    /// Output width n_out.
    public var width: Int
    /// W_std (default 1).
    public var weightStd: Double
    /// b_std; nil means the layer has no bias at all.
    public var biasStd: Double?

    public init(width: Int, weightStd: Double = 1, biasStd: Double? = nil) {
        self.width = width
        self.weightStd = weightStd
        self.biasStd = biasStd
    }
}

/// One layer of a model: dense, an elementwise activation, or a residual block.
public indirect enum Layer: Sendable, Equatable, Hashable {
    case dense(DenseLayer)
    /// An activation; `quadratureDegree` is the Gauss–Hermite degree its infinite-width
    /// kernel uses when it has no closed form (nil: the default).
    case activation(Activation, quadratureDegree: Int?)
    /// y = x + block(x): neural-tangents' `serial(FanOut(2), parallel(serial(*block),
    /// Identity()), FanInSum())`. The block's output shape equals its input shape.
    case residual([Layer])
    /// A 1-D or 2-D convolution over channels-last inputs (Layers/Convolution.swift).
    case conv(ConvLayer)
    /// Average pooling over the spatial axes (Layers/Pooling.swift).
    case averagePool(PoolLayer)
    /// The mean over all spatial positions: (…, C) → (C).
    case globalAveragePool
    /// All axes into one, in C order: (…, C) → (∏ …·C).
    case flatten
}

extension Layer {
    /// The dense layers of `layers` in depth-first order (a block's in place): the order of
    /// the forward pass and of the parameter arrays W0, b0, W1, ….
    static func denseLayers(of layers: [Layer]) -> [DenseLayer] {
        var result: [DenseLayer] = []
        for layer in layers {
            switch layer {
            case .dense(let d): result.append(d)
            case .residual(let block): result += denseLayers(of: block)
            default: break
            }
        }
        return result
    }

    /// Whether this layer has trainable parameters (dense and conv).
    var hasParameters: Bool {
        switch self {
        case .dense, .conv: return true
        default: return false
        }
    }
}

/// Failures reading or checking a model description.
public struct ModelError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What is wrong, in one sentence (the caller adds the file name).
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A fully connected network's architecture: the model file's content.
public struct ModelSpec: Sendable, Equatable, Hashable {
    public var parameterization: Parameterization
    public var layers: [Layer]
    /// The shape of one sample, channels last (`"input_shape"`): each flat data row is read
    /// in C order as this shape. nil: the data's own per-sample shape.
    public var inputShape: [Int]?

    public init(parameterization: Parameterization, layers: [Layer], inputShape: [Int]? = nil) {
        self.parameterization = parameterization
        self.layers = layers
        self.inputShape = inputShape
    }

    /// The per-sample shape the network reads from data whose samples have shape
    /// `dataShape` ([d] for flat rows): the model's `input_shape` when the data is flat with
    /// as many values or has that very shape, else the data's own. Throws when they differ.
    public func resolvedInputShape(data dataShape: [Int]) throws(ModelError) -> [Int] {
        guard let inputShape else { return dataShape }
        let count = inputShape.reduce(1, *)
        if dataShape == inputShape || dataShape == [count] { return inputShape }
        throw ModelError("the data's samples have shape \(WindowMap.format(dataShape)) but the model's input_shape is \(WindowMap.format(inputShape)) (\(count) values per sample)")
    }

    /// The dense layers in depth-first order (those of residual blocks in place).
    public var denseLayers: [DenseLayer] { Layer.denseLayers(of: layers) }

    /// The number of outputs k: the width (channels) of the last dense or conv layer
    /// outside residual blocks (a block keeps its input's shape).
    public var outputCount: Int {
        for layer in layers.reversed() {
            switch layer {
            case .dense(let d): return d.width
            case .conv(let c): return c.channels
            default: continue
            }
        }
        return 0
    }

    /// Checks the shapes through the network for flat inputs of width `inputWidth` (see
    /// `validate(inputShape:)`).
    public func validate(inputWidth: Int) throws(ModelError) {
        _ = try NetworkPlan(spec: self, dataShape: [inputWidth])
    }

    /// Checks the shapes through the network for data samples of shape `dataShape`: every
    /// window fits, every residual block gives back its input's shape, spatial layers see
    /// spatial inputs, and the output is flat. Throws `ModelError` naming the layer.
    public func validate(inputShape dataShape: [Int]) throws(ModelError) {
        _ = try NetworkPlan(spec: self, dataShape: dataShape)
    }

    /// This model with every hidden dense layer set to `width` and every hidden conv layer
    /// to `width` channels: all but the output layer (the last parameterized layer outside
    /// residual blocks), those inside residual blocks included, except blocks that act on
    /// the input before any parameterized layer (their shape is the data's).
    public func widened(to width: Int) -> ModelSpec {
        let outputIndex = layers.lastIndex { $0.hasParameters }
        func widen(_ layer: Layer) -> Layer {
            switch layer {
            case .dense(var d): d.width = width; return .dense(d)
            case .conv(var c): c.channels = width; return .conv(c)
            case .residual(let block): return .residual(block.map(widen))
            default: return layer
            }
        }
        var result = self
        var seenParameters = false
        result.layers = layers.enumerated().map { index, layer in
            switch layer {
            case .dense, .conv:
                seenParameters = true
                return index == outputIndex ? layer : widen(layer)
            case .residual: return seenParameters ? widen(layer) : layer
            default: return layer
            }
        }
        return result
    }

    /// Sizes of this model on inputs of width `inputWidth` (see `sizes(inputShape:)`).
    public func sizes(inputWidth: Int) -> (parameters: Double, factorsPerSample: Double) {
        sizes(inputShape: [inputWidth])
    }

    /// Sizes of this model on data samples of shape `dataShape`, as doubles (so that absurd
    /// widths give huge counts, never wrapped ones): P, the trainable parameters, and the
    /// doubles of per-sample factors the structured method keeps (docs/maths.md §2, §6).
    /// Zero for a model that does not fit the shape (refused elsewhere).
    public func sizes(inputShape dataShape: [Int]) -> (parameters: Double, factorsPerSample: Double) {
        guard let plan = try? NetworkPlan(spec: self, dataShape: dataShape, shapesOnly: true) else { return (0, 0) }
        return (plan.parameterCount, plan.factorsPerSample)
    }

    /// The common case: `depth` hidden dense layers of `width`, each followed by
    /// `activation`, then a dense readout of `outputs`.
    public static func fullyConnected(depth: Int, width: Int, activation: Activation,
                                      weightStd: Double, biasStd: Double?, outputs: Int,
                                      parameterization: Parameterization) -> ModelSpec {
        var layers: [Layer] = []
        for _ in 0..<depth {
            layers.append(.dense(DenseLayer(width: width, weightStd: weightStd, biasStd: biasStd)))
            layers.append(.activation(activation, quadratureDegree: nil))
        }
        layers.append(.dense(DenseLayer(width: outputs, weightStd: weightStd, biasStd: biasStd)))
        return ModelSpec(parameterization: parameterization, layers: layers)
    }

    /// Checks the rules a model must satisfy: at least one dense layer, positive widths of
    /// at most ``maximumInteger``, finite non-negative standard deviations. Throws `ModelError`.
    public func validate() throws(ModelError) {
        if let inputShape {
            if inputShape.isEmpty || inputShape.count > 3 {
                throw ModelError("\"input_shape\" must list 1 to 3 positive integers ([d], [L, C] or [H, W, C]), got \(inputShape.count)")
            }
            if let bad = inputShape.first(where: { $0 <= 0 || $0 > Self.maximumInteger }) {
                throw ModelError("\"input_shape\" entries must be positive integers of at most \(Self.maximumInteger), got \(bad)")
            }
        }
        try Self.validate(layers, path: "")
        if !layers.contains(where: { $0.hasParameters }) {
            throw ModelError("the model needs a dense or conv layer outside residual blocks: the last one's width is the number of outputs")
        }
    }

    private static func validate(_ layers: [Layer], path: String) throws(ModelError) {
        for (position, layer) in layers.enumerated() {
            let index = path.isEmpty ? "\(position)" : "\(path).\(position)"
            switch layer {
            case .dense(let d):
                if d.width <= 0 { throw ModelError("layer \(index): dense width must be a positive integer, got \(d.width)") }
                if d.width > Self.maximumInteger {
                    throw ModelError("layer \(index): dense width must be a positive integer of at most \(Self.maximumInteger), got \(d.width)")
                }
                if !d.weightStd.isFinite || d.weightStd < 0 { throw ModelError("layer \(index): W_std must be finite and non-negative, got \(d.weightStd)") }
                if let b = d.biasStd, !b.isFinite || b < 0 { throw ModelError("layer \(index): b_std must be finite and non-negative, got \(b)") }
            case .activation(let a, let degree):
                if case .leakyRelu(let alpha) = a, !alpha.isFinite { throw ModelError("layer \(index): leaky_relu alpha must be finite") }
                if let degree, degree < 1 || degree > 1000 { throw ModelError("layer \(index): quadrature_degree must be in 1...1000, got \(degree)") }
            case .residual(let block):
                if block.isEmpty { throw ModelError("layer \(index): a residual block needs at least one layer") }
                try validate(block, path: index)
            case .conv(let c): try c.validate(index: index)
            case .averagePool(let p): try p.validate(index: index)
            case .globalAveragePool, .flatten: break
            }
        }
    }

    // MARK: JSON

    /// The largest value an integer field (a width, a quadrature degree) may have.
    public static let maximumInteger = Int(Int32.max)

    /// Reads the model file format:
    /// `{"parameterization": "ntk"|"standard", "layers": [{"type": "dense", "width": n,
    /// "W_std": s, "b_std": s|null}, {"type": "relu"}, ...]}`.
    ///
    /// The JSON is parsed strictly (RFC 8259, no key twice in an object) in time linear in
    /// its size. Integer fields accept integral numbers (`64`, `64.0`) up to
    /// ``maximumInteger``.
    /// - Throws: `ModelError` naming the line and column of invalid JSON, a duplicate key
    ///   and the object holding it, or the layer and field that break the format's rules.
    public static func decode(json data: Data) throws(ModelError) -> ModelSpec {
        let value: JSONValue
        do {
            value = try JSONValue.parse(data)
        } catch {
            throw Self.modelError(error)
        }
        guard case .object(let root) = value else { throw ModelError("the top level must be a JSON object") }
        let allowedRoot: Set<String> = ["parameterization", "layers", "name", "description", "input_shape"]
        if let unknown = root.keys.sorted().first(where: { !allowedRoot.contains($0) }) {
            throw ModelError("unknown key \"\(shortened(unknown))\" at the top level (allowed: parameterization, layers, input_shape, name, description)")
        }
        var parameterization = Parameterization.ntk
        if let p = root["parameterization"] {
            guard case .string(let s) = p, let value = Parameterization(rawValue: s) else {
                throw ModelError("\"parameterization\" must be \"ntk\" or \"standard\"")
            }
            parameterization = value
        }
        guard case .array(let rawLayers)? = root["layers"] else { throw ModelError("\"layers\" must be a JSON array of layer objects") }
        let layers = try decodeLayers(rawLayers, path: "")
        var inputShape: [Int]? = nil
        if let raw = root["input_shape"], raw != .null {
            guard case .array(let items) = raw, !items.isEmpty, items.count <= 3 else {
                throw ModelError("\"input_shape\" must be a list of 1 to 3 positive integers ([d], [L, C] or [H, W, C])")
            }
            var shape: [Int] = []
            for item in items {
                guard let number = item.numberValue, number.rounded() == number, let value = item.integerValue,
                      value > 0, value <= maximumInteger else {
                    throw ModelError("\"input_shape\" must be a list of 1 to 3 positive integers of at most \(maximumInteger)")
                }
                shape.append(value)
            }
            inputShape = shape
        }
        let spec = ModelSpec(parameterization: parameterization, layers: layers, inputShape: inputShape)
        try spec.validate()
        return spec
    }

    /// The layers of a JSON array; `path` names the enclosing block ("" at the top level),
    /// so that messages say "layer 3" or, inside layer 1's block, "layer 1.2".
    private static func decodeLayers(_ rawLayers: [JSONValue], path: String) throws(ModelError) -> [Layer] {
        var layers: [Layer] = []
        layers.reserveCapacity(rawLayers.count)
        for position in rawLayers.indices {
            let index = path.isEmpty ? "\(position)" : "\(path).\(position)"
            guard case .object(let layer) = rawLayers[position] else { throw ModelError("layer \(index) is not a JSON object") }
            guard case .string(let type)? = layer["type"] else { throw ModelError("layer \(index) has no string \"type\"") }
            switch type {
            case "dense":
                try Self.allowOnly(Self.denseKeys, in: layer, type: type, index: index)
                guard let width = try Self.integer(layer["width"], "width", index) else {
                    throw ModelError("layer \(index): dense needs an integer \"width\"")
                }
                let wStd = try Self.number(layer["W_std"], "W_std", index) ?? 1
                let bStd = try Self.number(layer["b_std"], "b_std", index)
                layers.append(.dense(DenseLayer(width: width, weightStd: wStd, biasStd: bStd)))
            case "residual":
                try Self.allowOnly(Self.residualKeys, in: layer, type: type, index: index)
                guard case .array(let block)? = layer["layers"] else {
                    throw ModelError("layer \(index): a residual block needs \"layers\", a JSON array of layer objects")
                }
                if block.isEmpty { throw ModelError("layer \(index): a residual block needs at least one layer") }
                layers.append(.residual(try decodeLayers(block, path: index)))
            case "conv":
                try Self.allowOnly(ConvLayer.keys, in: layer, type: type, index: index)
                layers.append(.conv(try ConvLayer.decode(layer, index: index)))
            case "avg_pool":
                try Self.allowOnly(PoolLayer.keys, in: layer, type: type, index: index)
                layers.append(.averagePool(try PoolLayer.decode(layer, index: index)))
            case "global_avg_pool":
                try Self.allowOnly(["type"], in: layer, type: type, index: index)
                layers.append(.globalAveragePool)
            case "flatten":
                try Self.allowOnly(["type"], in: layer, type: type, index: index)
                layers.append(.flatten)
            default:
                guard Activation.names.contains(type) else {
                    throw ModelError("layer \(index): unknown layer type \"\(shortened(type))\" (known: dense, conv, avg_pool, global_avg_pool, flatten, residual, \(Activation.names.joined(separator: ", ")))")
                }
                try Self.allowOnly(Self.activationKeys, in: layer, type: type, index: index)
                if type != "leaky_relu", layer["alpha"] != nil {
                    throw ModelError("layer \(index): \"alpha\" applies to leaky_relu only")
                }
                let degree = try Self.integer(layer["quadrature_degree"], "quadrature_degree", index)
                let activation: Activation
                switch type {
                case "relu": activation = .relu
                case "erf": activation = .erf
                case "tanh": activation = .tanh
                case "identity": activation = .identity
                case "gelu": activation = .gelu
                case "sigmoid": activation = .sigmoid
                case "softplus": activation = .softplus
                default: activation = .leakyRelu(alpha: try Self.number(layer["alpha"], "alpha", index) ?? 0.01)
                }
                layers.append(.activation(activation, quadratureDegree: degree))
            }
        }
        return layers
    }

    /// The model file form of this spec (keys sorted, so equal specs give equal bytes).
    public func encodeJSON() -> Data {
        func objects(_ layers: [Layer]) -> [[String: Any]] {
            layers.map { layer in
                switch layer {
                case .dense(let d):
                    var o: [String: Any] = ["type": "dense", "width": d.width, "W_std": d.weightStd]
                    o["b_std"] = d.biasStd.map { $0 as Any } ?? NSNull()
                    return o
                case .activation(let a, let degree):
                    var o: [String: Any] = ["type": a.name]
                    if case .leakyRelu(let alpha) = a { o["alpha"] = alpha }
                    if let degree { o["quadrature_degree"] = degree }
                    return o
                case .residual(let block):
                    return ["type": "residual", "layers": objects(block)]
                case .conv(let c): return c.encode()
                case .averagePool(let p): return p.encode()
                case .globalAveragePool: return ["type": "global_avg_pool"]
                case .flatten: return ["type": "flatten"]
                }
            }
        }
        var root: [String: Any] = ["parameterization": parameterization.rawValue, "layers": objects(layers)]
        if let inputShape { root["input_shape"] = inputShape }
        return (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys, .prettyPrinted])) ?? Data()
    }

    /// The message for JSON that ``JSONValue/parse(_:)`` refused.
    private static func modelError(_ error: JSONError) -> ModelError {
        let place = "line \(error.line), column \(error.column)"
        switch error.reason {
        case .syntax(let detail):
            return ModelError("not valid JSON (\(detail) at \(place))")
        case .duplicateKey(let key):
            let holder: String
            if error.path.isEmpty {
                holder = "the top-level object"
            } else if error.path.count == 2, error.path[0] == .key("layers"), case .index(let index) = error.path[1] {
                holder = "layer \(index)"
            } else {
                var location = ""
                for component in error.path {
                    switch component {
                    case .key(let key): location += (location.isEmpty ? "" : ".") + shortened(key)
                    case .index(let index): location += "[\(index)]"
                    }
                }
                holder = "the object at \(location)"
            }
            return ModelError("duplicate key \"\(shortened(key))\" in \(holder) (\(place))")
        }
    }

    /// Key text for a message: control characters replaced by '?', cut to 40 characters.
    private static func shortened(_ text: String) -> String {
        var result = String(String.UnicodeScalarView(text.unicodeScalars.prefix(40).map { $0.value < 0x20 || $0 == "\u{7F}" ? "?" : $0 }))
        if text.unicodeScalars.count > 40 { result += "…" }
        return result
    }

    /// The keys a dense layer and an activation layer may have.
    private static let denseKeys = ["type", "width", "W_std", "b_std"]
    private static let activationKeys = ["type", "alpha", "quadrature_degree"]
    private static let residualKeys = ["type", "layers"]

    private static func allowOnly(_ keys: [String], in layer: [String: JSONValue], type: String, index: String) throws(ModelError) {
        // Counting the allowed keys present is cheaper than testing every key of the layer.
        var present = 0
        for key in keys where layer[key] != nil { present += 1 }
        guard present < layer.count else { return }
        if let unknown = layer.keys.sorted().first(where: { !keys.contains($0) }) {
            throw ModelError("layer \(index): unknown key \"\(shortened(unknown))\" for a \(type) layer")
        }
    }

    static func number(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Double? {
        switch value {
        case nil, .null?: return nil
        case let value?:
            guard let number = value.numberValue else { throw ModelError("layer \(index): \"\(name)\" must be a number or null") }
            return number
        }
    }

    /// An integer field: an integral number (`8`, `8.0`, `8e0`) within ±``maximumInteger``.
    static func integer(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Int? {
        switch value {
        case nil, .null?: return nil
        case let value?:
            guard let number = value.numberValue, number.rounded() == number else {
                throw ModelError("layer \(index): \"\(name)\" must be an integer\(value.numberValue.map { ", got \($0)" } ?? "")")
            }
            guard let integer = value.integerValue, abs(integer) <= maximumInteger else {
                let shown = value.integerValue.map(String.init) ?? "\(number)"
                throw ModelError("layer \(index): \(name) must be a positive integer of at most \(maximumInteger), got \(shown)")
            }
            return integer
        }
    }
}

/// Field readers shared by the layers' decoders.
enum JSONFields {
    static func number(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Double? {
        try ModelSpec.number(value, name, index)
    }

    static func integer(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Int? {
        try ModelSpec.integer(value, name, index)
    }

    /// A list of integers (`[3, 3]`; a bare integer `3` is read as `[3]`), or nil when absent.
    static func integers(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> [Int]? {
        switch value {
        case nil, .null?: return nil
        case .array(let items)?:
            var result: [Int] = []
            for item in items {
                guard let v = try integer(item, name, index) else { throw ModelError("layer \(index): \"\(name)\" must be a list of integers") }
                result.append(v)
            }
            return result
        case let value?:
            guard let v = try integer(value, name, index) else { return nil }
            return [v]
        }
    }

    static func padding(_ value: JSONValue?, _ index: String) throws(ModelError) -> Padding? {
        switch value {
        case nil, .null?: return nil
        case .string(let s)?:
            guard let padding = Padding(rawValue: s.uppercased()) else {
                throw ModelError("layer \(index): \"padding\" must be \"VALID\", \"SAME\" or \"CIRCULAR\", got \"\(s.prefix(40))\"")
            }
            return padding
        default: throw ModelError("layer \(index): \"padding\" must be \"VALID\", \"SAME\" or \"CIRCULAR\"")
        }
    }
}
