import Foundation

/// One layer type of a model file: everything the tool knows about it, in one file under
/// `Sources/Network/Layers/` (docs/architecture.md, "Where to add a layer type").
///
/// This is neural-tangents' `(init_fn, apply_fn, kernel_fn)` triple plus what a tiled,
/// distributed engine needs:
/// - the model file: JSON type names and keys, decoding with the layer's path in every
///   message, validation, encoding;
/// - `plan`: its shape rule (input shape → output shape, refusing what does not fit), and
///   what it adds to the per-sample passes: a parameterized layer (dense or conv) adds a
///   ``LayerGeometry`` (its parameter shapes, initialization scale, `.npz` naming, factor
///   sizes and its term of the structured and explicit tile products follow from that);
///   any other layer adds a ``SampleOperation`` with its forward and backward (VJP) pass;
/// - `kernelMaps`: its map on the infinite-width state (NNGP and NTK), flat or spatial, or a
///   refusal with the reason;
/// - what the model-level rules ask of it: its output width, its sublayers, its widened
///   copy for `converge`, whether it acts channel by channel, whether it needs full spatial
///   covariance blocks upstream.
///
/// Conforming types are values (`Hashable`); a model holds them as ``Layer``.
public protocol LayerType: Sendable, Hashable {
    /// The JSON `"type"` names this layer type reads (an activation layer reads several).
    static var typeNames: [String] { get }
    /// The keys an object of JSON type `type` may have, `"type"` included.
    static func keys(for type: String) -> [String]
    /// Reads one layer object whose `"type"` is `type` (its keys already checked against
    /// `keys(for:)`). `path` names the layer in messages ("layer 3", "layer 1.2").
    static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> Self
    /// The model file form (with `"type"`).
    func encode() -> [String: Any]
    /// Checks the fields (shapes are checked by `plan`).
    func validate(path: LayerPath) throws(ModelError)

    /// Resolves the layer against its input shape (channels last; `[d]` for flat values):
    /// adds its geometry or operation to `builder` and returns its output shape.
    func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int]
    /// Appends the layer's infinite-width maps to `builder` (whose `shape` is its input's),
    /// or throws `ModelError` when the limit is not defined for it there.
    func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError)

    /// The output width (dense) or channels (conv) of a parameterized layer; nil for others.
    var outputWidth: Int? { get }
    /// Layers nested in this one, in order (a residual block's).
    var sublayers: [Layer] { get }
    /// This layer as a hidden layer of `width` (converge): dense width, conv channels, a
    /// block's layers widened; unchanged for layers without a width.
    func widened(to width: Int) -> Self
    /// Whether each output channel depends on the same input channel alone (activations,
    /// pooling): the signals of a dense readout pass through such layers unmixed.
    var isChannelwise: Bool { get }
    /// Whether the infinite-width state entering this layer must keep full spatial
    /// covariance blocks, when the state after it must (`after`): true for pooling, false
    /// for flatten, `after` for layers acting position by position.
    func needsFullSpatial(after: Bool) -> Bool
    /// Whether this layer ends the spatial part of a network (flatten, global pooling).
    var flattens: Bool { get }
}

extension LayerType {
    public var outputWidth: Int? { nil }
    public var sublayers: [Layer] { [] }
    public func widened(to width: Int) -> Self { self }
    public var isChannelwise: Bool { false }
    public func needsFullSpatial(after: Bool) -> Bool { after }
    public var flattens: Bool { false }
    /// Whether the layer has trainable parameters.
    public var isParameterized: Bool { outputWidth != nil }
    /// `widened(to:)` as a ``Layer`` (callable on `any LayerType`).
    public func widenedLayer(to width: Int) -> Layer { Layer(widened(to: width)) }
}

/// A layer's place in the model for messages: "layer 3", or "layer 1.2" for the third
/// layer of layer 1's block.
public struct LayerPath: Sendable, Hashable, CustomStringConvertible {
    /// "3", "1.2".
    public let index: String
    public init(_ index: String) { self.index = index }
    /// The path of position `position` in the block at this path (nil: the top level).
    static func child(_ parent: LayerPath?, _ position: Int) -> LayerPath {
        LayerPath(parent.map { "\($0.index).\(position)" } ?? "\(position)")
    }
    public var description: String { "layer \(index)" }
}

/// One layer of a model: a value of any ``LayerType``.
public struct Layer: Sendable, Hashable {
    /// The layer itself.
    public let base: any LayerType

    public init(_ base: some LayerType) { self.base = base }

    public static func == (a: Layer, b: Layer) -> Bool { AnyHashable(a.base) == AnyHashable(b.base) }
    public func hash(into hasher: inout Hasher) { hasher.combine(AnyHashable(base)) }

    /// The layer as `type`, or nil.
    public func `as`<T: LayerType>(_ type: T.Type) -> T? { base as? T }

    // Shorthands for the built-in types.
    public static func dense(_ layer: DenseLayer) -> Layer { Layer(layer) }
    public static func activation(_ activation: Activation, quadratureDegree: Int?) -> Layer {
        Layer(ActivationLayer(activation, quadratureDegree: quadratureDegree))
    }
    public static func residual(_ layers: [Layer]) -> Layer { Layer(ResidualBlock(layers: layers)) }
    public static func conv(_ layer: ConvLayer) -> Layer { Layer(layer) }
    public static func averagePool(_ layer: PoolLayer) -> Layer { Layer(layer) }
    public static var globalAveragePool: Layer { Layer(GlobalAveragePool()) }
    public static var flatten: Layer { Layer(Flatten()) }
}

/// The layer types a model file may name, in the order `unknown layer type` messages list
/// them. A new layer type is one file in `Layers/` and one entry here.
public enum LayerRegistry {
    public static let types: [any LayerType.Type] = [
        DenseLayer.self, ConvLayer.self, PoolLayer.self, GlobalAveragePool.self, GlobalSumPool.self, Flatten.self, ResidualBlock.self,
        ActivationLayer.self,
    ]

    /// JSON type name → layer type.
    static let byName: [String: any LayerType.Type] = {
        var result: [String: any LayerType.Type] = [:]
        for type in types { for name in type.typeNames { result[name] = type } }
        return result
    }()

    /// Every type name, in registry order.
    static var names: [String] { types.flatMap { $0.typeNames } }

    /// The layers of a JSON array; `parent` names the enclosing block (nil at the top level).
    static func decode(_ rawLayers: [JSONValue], parent: LayerPath?) throws(ModelError) -> [Layer] {
        var layers: [Layer] = []
        layers.reserveCapacity(rawLayers.count)
        for position in rawLayers.indices {
            let path = LayerPath.child(parent, position)
            guard case .object(let object) = rawLayers[position] else { throw ModelError("\(path) is not a JSON object") }
            guard case .string(let name)? = object["type"] else { throw ModelError("\(path) has no string \"type\"") }
            guard let type = byName[name] else {
                throw ModelError("\(path): unknown layer type \"\(JSONFields.shortened(name))\" (known: \(names.joined(separator: ", ")))")
            }
            try JSONFields.allowOnly(type.keys(for: name), in: object, type: name, path: path)
            layers.append(Layer(try type.decode(object, type: name, path: path)))
        }
        return layers
    }

    /// The model file form of `layers`.
    static func encode(_ layers: [Layer]) -> [[String: Any]] { layers.map { $0.base.encode() } }

    /// Checks every layer's fields, depth-first.
    static func validate(_ layers: [Layer], parent: LayerPath?) throws(ModelError) {
        for (position, layer) in layers.enumerated() {
            try layer.base.validate(path: LayerPath.child(parent, position))
        }
    }
}
