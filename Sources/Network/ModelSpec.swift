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

/// One layer of a model: dense, or an elementwise activation.
public enum Layer: Sendable, Equatable, Hashable {
    case dense(DenseLayer)
    /// An activation; `quadratureDegree` is the Gauss–Hermite degree its infinite-width
    /// kernel uses when it has no closed form (nil: the default).
    case activation(Activation, quadratureDegree: Int?)
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

    /// The dense layers in order.
    public var denseLayers: [DenseLayer] {
        layers.compactMap { if case .dense(let d) = $0 { return d } else { return nil } }
    }

    /// The number of outputs k: the last dense layer's width.
    public var outputCount: Int { denseLayers.last?.width ?? 0 }

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
        for (index, layer) in layers.enumerated() {
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
        var layers: [Layer] = []
        layers.reserveCapacity(rawLayers.count)
        for index in rawLayers.indices {
            guard case .object(let layer) = rawLayers[index] else { throw ModelError("layer \(index) is not a JSON object") }
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
            default:
                guard Activation.names.contains(type) else {
                    throw ModelError("layer \(index): unknown layer type \"\(type)\" (known: dense, \(Activation.names.joined(separator: ", ")))")
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
        let spec = ModelSpec(parameterization: parameterization, layers: layers)
        try spec.validate()
        return spec
    }

    /// The model file form of this spec (keys sorted, so equal specs give equal bytes).
    public func encodeJSON() -> Data {
        var layerObjects: [[String: Any]] = []
        for layer in layers {
            switch layer {
            case .dense(let d):
                var o: [String: Any] = ["type": "dense", "width": d.width, "W_std": d.weightStd]
                o["b_std"] = d.biasStd.map { $0 as Any } ?? NSNull()
                layerObjects.append(o)
            case .activation(let a, let degree):
                var o: [String: Any] = ["type": a.name]
                if case .leakyRelu(let alpha) = a { o["alpha"] = alpha }
                if let degree { o["quadrature_degree"] = degree }
                layerObjects.append(o)
            }
        }
        let root: [String: Any] = ["parameterization": parameterization.rawValue, "layers": layerObjects]
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

    private static func allowOnly(_ keys: [String], in layer: [String: JSONValue], type: String, index: Int) throws(ModelError) {
        // Counting the allowed keys present is cheaper than testing every key of the layer.
        var present = 0
        for key in keys where layer[key] != nil { present += 1 }
        guard present < layer.count else { return }
        if let unknown = layer.keys.sorted().first(where: { !keys.contains($0) }) {
            throw ModelError("layer \(index): unknown key \"\(shortened(unknown))\" for a \(type) layer")
        }
    }

    private static func number(_ value: JSONValue?, _ name: String, _ index: Int) throws(ModelError) -> Double? {
        switch value {
        case nil, .null?: return nil
        case let value?:
            guard let number = value.numberValue else { throw ModelError("layer \(index): \"\(name)\" must be a number or null") }
            return number
        }
    }

    /// An integer field: an integral number (`8`, `8.0`, `8e0`) within ±``maximumInteger``.
    private static func integer(_ value: JSONValue?, _ name: String, _ index: Int) throws(ModelError) -> Int? {
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
