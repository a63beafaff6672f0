/// `{"type": "flatten"}`: all axes into one, in C order, (…, C) → (∏ …·C), neural-tangents'
/// `stax.Flatten`. Samples are stored flat in C order already, so its per-sample passes do
/// nothing; its infinite-width map is the mean of the spatial diagonal.
public struct Flatten: Sendable, Hashable {
    public init() {}
}

extension Flatten: LayerType {
    public static let typeNames = ["flatten"]
    public static func keys(for type: String) -> [String] { ["type"] }
    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> Flatten { Flatten() }
    public func encode() -> [String: Any] { ["type": "flatten"] }
    public func validate(path: LayerPath) throws(ModelError) {}

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        [shape.reduce(1, *)]
    }

    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        if builder.isSpatial { builder.append(FlattenMap()) }
        builder.shape = [builder.shape.reduce(1, *)]
    }

    public func needsFullSpatial(after: Bool) -> Bool { false }
    public var flattens: Bool { true }
}

/// Flatten of the infinite-width state: the mean of the diagonal, one value per pair.
struct FlattenMap: KernelMap {
    func apply(_ state: inout SpatialState, _ run: SpatialRun) { SpatialProgram.flatten(&state) }
}
