/// `{"type": "global_sum_pool"}`: the sum over all spatial positions, (…, C) → (C),
/// neural-tangents' `stax.GlobalSumPool`: global average pooling times the number of
/// positions P, so its kernels are those of global average pooling times P².
public struct GlobalSumPool: Sendable, Hashable {
    public init() {}
}

extension GlobalSumPool: LayerType {
    public static let typeNames = ["global_sum_pool"]
    public static func keys(for type: String) -> [String] { ["type"] }
    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> GlobalSumPool {
        GlobalSumPool()
    }
    public func encode() -> [String: Any] { ["type": "global_sum_pool"] }
    public func validate(path: LayerPath) throws(ModelError) {}

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        try builder.requireSpatial(shape, rank: nil, what: "global_sum_pool", path: path)
        builder.append(GlobalSumPoolOperation(positions: shape.dropLast().reduce(1, *), channels: shape.last!))
        return [shape.last!]
    }

    /// Σ_{p,p'} K[p, p'] and Σ_{p,p'} Θ[p, p'] over the full spatial blocks: one value per pair.
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        guard builder.isSpatial else { throw ModelError("\(path): a spatial layer on a flat value") }
        builder.append(GlobalSumPoolMap(ordinal: builder.nextPoolOrdinal()))
        builder.shape = [builder.shape.last!]
    }

    public var isChannelwise: Bool { true }
    public func needsFullSpatial(after: Bool) -> Bool { true }
    public var flattens: Bool { true }
}

/// y[c] = Σ_p x[p, c]; backward δ_x[p, c] = δ[c].
struct GlobalSumPoolOperation: SampleOperation {
    let positions: Int
    let channels: Int

    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        var out = [Double](repeating: 0, count: walk.count * channels)
        for sample in 0..<walk.count {
            for p in 0..<positions {
                let row = (sample * positions + p) * channels
                for c in 0..<channels { out[sample * channels + c] += x[row + c] }
            }
        }
        return out
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        let rows = walk.count * pass.rowsPerSample
        let next = Network.Walk.Signal(count: rows * positions * channels, at: nil)
        for row in 0..<rows {
            let from = delta.buffer.baseAddress! + row * channels
            let to = next.buffer.baseAddress! + row * positions * channels
            for p in 0..<positions { (to + p * channels).update(from: from, count: channels) }
        }
        delta.release()
        return next
    }
}

/// Global sum pooling of the infinite-width state: the global average's map, times P².
struct GlobalSumPoolMap: KernelMap {
    let ordinal: Int
    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        let p = Double(state.positions)
        SpatialProgram.globalPool(&state)
        let scale = p * p
        for e in state.k.indices {
            state.k[e] *= scale
            state.t[e] *= scale
        }
        run.setPooledVariances(&state, ordinal: ordinal)
    }
}
