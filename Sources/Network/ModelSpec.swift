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
    /// Identity()), FanInSum())`. The block's output width equals its input width.
    case residual([Layer])
}

extension Layer {
    /// The dense layers of `layers` in depth-first order (a block's in place): the order of
    /// the forward pass and of the parameter arrays W0, b0, W1, ….
    static func denseLayers(of layers: [Layer]) -> [DenseLayer] {
        var result: [DenseLayer] = []
        for layer in layers {
            switch layer {
            case .dense(let d): result.append(d)
            case .activation: break
            case .residual(let block): result += denseLayers(of: block)
            }
        }
        return result
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

    public init(parameterization: Parameterization, layers: [Layer]) {
        self.parameterization = parameterization
        self.layers = layers
    }

    /// The dense layers in depth-first order (those of residual blocks in place).
    public var denseLayers: [DenseLayer] { Layer.denseLayers(of: layers) }

    /// The number of outputs k: the width of the last dense layer outside residual blocks
    /// (a block keeps its input's width).
    public var outputCount: Int {
        layers.last(where: { if case .dense = $0 { return true } else { return false } })
            .map { if case .dense(let d) = $0 { return d.width } else { return 0 } } ?? 0
    }

    /// Checks the widths through the network for inputs of width `inputWidth`: every
    /// residual block must give back its input's width. Throws `ModelError` naming the
    /// block.
    public func validate(inputWidth: Int) throws(ModelError) {
        func walk(_ layers: [Layer], width: Int, path: String) throws(ModelError) -> Int {
            var width = width
            for (index, layer) in layers.enumerated() {
                switch layer {
                case .dense(let d): width = d.width
                case .activation: break
                case .residual(let block):
                    let label = path.isEmpty ? "\(index)" : "\(path).\(index)"
                    let out = try walk(block, width: width, path: label)
                    if out != width {
                        throw ModelError("layer \(label): the residual block maps width \(width) to \(out); y = x + block(x) needs the block to keep its input's width")
                    }
                }
            }
            return width
        }
        _ = try walk(layers, width: inputWidth, path: "")
    }

    /// This model with every hidden dense layer set to `width`: all but the output layer (the
    /// last one outside residual blocks), those inside residual blocks included, except
    /// blocks that act on the input before any dense layer (their width is the data's).
    public func widened(to width: Int) -> ModelSpec {
        let outputIndex = layers.lastIndex { if case .dense = $0 { return true } else { return false } }
        func widen(_ layers: [Layer]) -> [Layer] {
            layers.map { layer in
                switch layer {
                case .dense(var d): d.width = width; return .dense(d)
                case .activation: return layer
                case .residual(let block): return .residual(widen(block))
                }
            }
        }
        var result = self
        var seenDense = false
        result.layers = layers.enumerated().map { index, layer in
            switch layer {
            case .dense(var d):
                seenDense = true
                if index != outputIndex { d.width = width }
                return .dense(d)
            case .activation: return layer
            case .residual(let block): return seenDense ? .residual(widen(block)) : layer
            }
        }
        return result
    }

    /// Sizes of this model on inputs of width `inputWidth`, as doubles (so that absurd
    /// widths give huge counts, never wrapped ones): P, the trainable parameters, and the
    /// structured method's per-sample factors Σ_l (n_in + k n_out) + k.
    public func sizes(inputWidth: Int) -> (parameters: Double, factorsPerSample: Double) {
        var fanIn = Double(inputWidth), count = 0.0, factors = 0.0
        let k = Double(outputCount)
        for layer in denseLayers {
            let fanOut = Double(layer.width)
            count += fanIn * fanOut + (layer.biasStd == nil ? 0 : fanOut)
            factors += fanIn + k * fanOut
            fanIn = fanOut
        }
        return (count, factors + k)
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
        if denseLayers.isEmpty { throw ModelError("the model has no dense layer") }
        try Self.validate(layers, path: "")
        if !layers.contains(where: { if case .dense = $0 { return true } else { return false } }) {
            throw ModelError("the model needs a dense layer outside residual blocks: the last one's width is the number of outputs")
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
        let allowedRoot: Set<String> = ["parameterization", "layers", "name", "description"]
        if let unknown = root.keys.sorted().first(where: { !allowedRoot.contains($0) }) {
            throw ModelError("unknown key \"\(shortened(unknown))\" at the top level (allowed: parameterization, layers, name, description)")
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
        let spec = ModelSpec(parameterization: parameterization, layers: layers)
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
            default:
                guard Activation.names.contains(type) else {
                    throw ModelError("layer \(index): unknown layer type \"\(shortened(type))\" (known: dense, residual, \(Activation.names.joined(separator: ", ")))")
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
                }
            }
        }
        let root: [String: Any] = ["parameterization": parameterization.rawValue, "layers": objects(layers)]
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

    private static func number(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Double? {
        switch value {
        case nil, .null?: return nil
        case let value?:
            guard let number = value.numberValue else { throw ModelError("layer \(index): \"\(name)\" must be a number or null") }
            return number
        }
    }

    /// An integer field: an integral number (`8`, `8.0`, `8e0`) within ±``maximumInteger``.
    private static func integer(_ value: JSONValue?, _ name: String, _ index: String) throws(ModelError) -> Int? {
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
