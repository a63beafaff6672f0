import Foundation

/// How a dense layer's trainable arrays map to its output (neural-tangents' `parameterization`).
public enum Parameterization: String, Sendable, CaseIterable, Codable {
    /// h = (W_std / √n_in) z W + b_std b, with W, b ~ N(0, 1).
    case ntk
    /// h = z W + b, with W ~ N(0, W_std² / n_in), b ~ N(0, b_std²).
    case standard
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
    public var denseLayers: [DenseLayer] {
        func collect(_ layers: [Layer]) -> [DenseLayer] {
            layers.flatMap { layer in (layer.as(DenseLayer.self).map { [$0] } ?? []) + collect(layer.base.sublayers) }
        }
        return collect(layers)
    }

    /// The number of outputs k: the width (channels) of the last dense or conv layer
    /// outside residual blocks (a block keeps its input's shape).
    public var outputCount: Int {
        layers.last { $0.base.isParameterized }?.base.outputWidth ?? 0
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
        let outputIndex = layers.lastIndex { $0.base.isParameterized }
        var result = self
        var seenParameters = false
        result.layers = layers.enumerated().map { index, layer in
            if layer.base.isParameterized {
                seenParameters = true
                return index == outputIndex ? layer : layer.base.widenedLayer(to: width)
            }
            return seenParameters ? layer.base.widenedLayer(to: width) : layer
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
        try LayerRegistry.validate(layers, parent: nil)
        if !layers.contains(where: { $0.base.isParameterized }) {
            throw ModelError("the model needs a dense or conv layer outside residual blocks: the last one's width is the number of outputs")
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
            throw ModelError("unknown key \"\(JSONFields.shortened(unknown))\" at the top level (allowed: parameterization, layers, input_shape, name, description)")
        }
        var parameterization = Parameterization.ntk
        if let p = root["parameterization"] {
            guard case .string(let s) = p, let value = Parameterization(rawValue: s) else {
                throw ModelError("\"parameterization\" must be \"ntk\" or \"standard\"")
            }
            parameterization = value
        }
        guard case .array(let rawLayers)? = root["layers"] else { throw ModelError("\"layers\" must be a JSON array of layer objects") }
        let layers = try LayerRegistry.decode(rawLayers, parent: nil)
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

    /// The model file form of this spec (keys sorted, so equal specs give equal bytes).
    public func encodeJSON() -> Data {
        var root: [String: Any] = ["parameterization": parameterization.rawValue, "layers": LayerRegistry.encode(layers)]
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
                    case .key(let key): location += (location.isEmpty ? "" : ".") + JSONFields.shortened(key)
                    case .index(let index): location += "[\(index)]"
                    }
                }
                holder = "the object at \(location)"
            }
            return ModelError("duplicate key \"\(JSONFields.shortened(key))\" in \(holder) (\(place))")
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
    /// Key text for a message: control characters replaced by '?', cut to 40 characters.
    static func shortened(_ text: String) -> String {
        var result = String(String.UnicodeScalarView(text.unicodeScalars.prefix(40).map { $0.value < 0x20 || $0 == "\u{7F}" ? "?" : $0 }))
        if text.unicodeScalars.count > 40 { result += "…" }
        return result
    }

    /// Refuses a key of `layer` not in `keys`, naming it.
    static func allowOnly(_ keys: [String], in layer: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) {
        // Counting the allowed keys present is cheaper than testing every key of the layer.
        var present = 0
        for key in keys where layer[key] != nil { present += 1 }
        guard present < layer.count else { return }
        if let unknown = layer.keys.sorted().first(where: { !keys.contains($0) }) {
            throw ModelError("\(path): unknown key \"\(JSONFields.shortened(unknown))\" for a \(type) layer")
        }
    }

    /// W_std finite and non-negative; b_std, when given, too.
    static func checkStandardDeviations(_ weightStd: Double, _ biasStd: Double?, path: LayerPath) throws(ModelError) {
        if !weightStd.isFinite || weightStd < 0 { throw ModelError("\(path): W_std must be finite and non-negative, got \(weightStd)") }
        if let b = biasStd, !b.isFinite || b < 0 { throw ModelError("\(path): b_std must be finite and non-negative, got \(b)") }
    }

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
