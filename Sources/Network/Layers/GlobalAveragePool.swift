/// `{"type": "global_avg_pool"}`: the mean over all spatial positions, (…, C) → (C),
/// neural-tangents' `stax.GlobalAvgPool`.
public struct GlobalAveragePool: Sendable, Hashable {
    public init() {}
}

extension GlobalAveragePool: LayerType {
    public static let typeNames = ["global_avg_pool"]
    public static func keys(for type: String) -> [String] { ["type"] }
    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> GlobalAveragePool {
        GlobalAveragePool()
    }
    public func encode() -> [String: Any] { ["type": "global_avg_pool"] }
    public func validate(path: LayerPath) throws(ModelError) {}

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        try builder.requireSpatial(shape, rank: nil, what: "global_avg_pool", path: path)
        builder.append(GlobalAveragePoolOperation(positions: shape.dropLast().reduce(1, *), channels: shape.last!))
        return [shape.last!]
    }

    /// Every entry of the full blocks averaged: one value per pair.
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        guard builder.isSpatial else { throw ModelError("\(path): a spatial layer on a flat value") }
        builder.append(GlobalPoolMap(ordinal: builder.nextPoolOrdinal()))
        builder.shape = [builder.shape.last!]
    }

    public var isChannelwise: Bool { true }
    public func needsFullSpatial(after: Bool) -> Bool { true }
    public var flattens: Bool { true }
}

/// y[c] = (1/P) Σ_p x[p, c]; backward δ_x[p, c] = δ[c] / P.
struct GlobalAveragePoolOperation: SampleOperation {
    let positions: Int
    let channels: Int

    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        var out = [Double](repeating: 0, count: walk.count * channels)
        let scale = 1 / Double(positions)
        for sample in 0..<walk.count {
            for p in 0..<positions {
                let row = (sample * positions + p) * channels
                for c in 0..<channels { out[sample * channels + c] += x[row + c] }
            }
            for c in 0..<channels { out[sample * channels + c] *= scale }
        }
        return out
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        let rows = walk.count * pass.rowsPerSample
        let next = Network.Walk.Signal(count: rows * positions * channels, at: nil)
        let scale = 1 / Double(positions)
        for row in 0..<rows {
            let from = delta.buffer.baseAddress! + row * channels
            let to = next.buffer.baseAddress! + row * positions * channels
            for p in 0..<positions { for c in 0..<channels { to[p * channels + c] = scale * from[c] } }
        }
        delta.release()
        return next
    }
}

/// Global average pooling of the infinite-width state: full blocks → one value per pair.
struct GlobalPoolMap: KernelMap {
    let ordinal: Int
    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        SpatialProgram.globalPool(&state)
        run.setPooledVariances(&state, ordinal: ordinal)
    }
}
