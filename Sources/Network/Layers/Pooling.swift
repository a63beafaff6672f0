import Foundation

/// Average pooling of a model file: `{"type": "avg_pool", "window": [...], "strides":
/// [...], "padding": "VALID" | "SAME" | "CIRCULAR"}`, neural-tangents' `stax.AvgPool` with
/// normalize_edges=False (a window's sum divided by its volume, padding counted as zeros).
/// Unlike stax, whose default stride is 1, the strides default to the window (the common
/// convention; `ntk.convert` writes stax's strides explicitly).
public struct PoolLayer: Sendable, Equatable, Hashable {
    public var window: [Int]
    /// nil means the window.
    public var strides: [Int]?
    public var padding: Padding

    public init(window: [Int], strides: [Int]? = nil, padding: Padding = .valid) {
        self.window = window
        self.strides = strides
        self.padding = padding
    }

    public var effectiveStrides: [Int] { strides ?? window }

}

extension PoolLayer: LayerType {
    public static let typeNames = ["avg_pool"]
    public static func keys(for type: String) -> [String] { ["type", "window", "strides", "padding"] }

    public static func decode(_ layer: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> PoolLayer {
        let index = path.index
        guard let window = try JSONFields.integers(layer["window"], "window", index) else {
            throw ModelError("layer \(index): avg_pool needs \"window\", a list of 1 or 2 positive integers")
        }
        let strides = try JSONFields.integers(layer["strides"], "strides", index)
        let result = PoolLayer(window: window, strides: strides, padding: try JSONFields.padding(layer["padding"], index) ?? .valid)
        try result.validate(path: path)
        return result
    }

    public func validate(path: LayerPath) throws(ModelError) {
        let index = path.index
        try WindowFields.check(window, name: "window", index: index)
        if let strides {
            try WindowFields.check(strides, name: "strides", index: index)
            if strides.count != window.count {
                throw ModelError("layer \(index): avg_pool \"strides\" has \(strides.count) entries but \"window\" has \(window.count)")
            }
        }
    }

    public func encode() -> [String: Any] {
        var o: [String: Any] = ["type": "avg_pool", "window": window, "padding": padding.rawValue]
        if let strides { o["strides"] = strides }
        return o
    }

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        let spatial = Array(shape.dropLast()), channels = shape.last!
        try builder.requireSpatial(shape, rank: window.count, what: "avg_pool", path: path)
        let windows = try builder.window(path: path, "avg_pool", spatial: spatial, window: window, strides: effectiveStrides, padding: padding)
        if let map = windows.map { builder.append(AveragePoolOperation(windows: map, channels: channels)) }
        return windows.output + [channels]
    }

    /// K'[p, p'] = (1/V²) Σ_{v,v'} K[p + v, p' + v'] on full spatial blocks; the samples'
    /// own variances come from their own runs (docs/maths.md §7).
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        guard builder.isSpatial else { throw ModelError("\(path): a spatial layer on a flat value") }
        let spatial = Array(builder.shape.dropLast()), channels = builder.shape.last!
        let windows = try KernelBuilder.windowMap(path: path, spatial: spatial, window: window, strides: effectiveStrides, padding: padding)
        builder.append(PoolMap(windows: windows, ordinal: builder.nextPoolOrdinal()))
        builder.shape = windows.outputSpatial + [channels]
    }

    public var isChannelwise: Bool { true }
    public func needsFullSpatial(after: Bool) -> Bool { true }
}

/// Window means forward, their adjoint backward.
struct AveragePoolOperation: SampleOperation {
    let windows: WindowMap
    let channels: Int

    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        let count = walk.count
        let out = count * windows.outputPositions * channels
        return x.withUnsafeBufferPointer { x in
            [Double](unsafeUninitializedCapacity: out) { buffer, initialized in
                windows.average(x.baseAddress!, count: count, channels: channels, into: buffer.baseAddress!)
                initialized = out
            }
        }
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        let rows = walk.count * pass.rowsPerSample
        let next = Network.Walk.Signal(count: rows * windows.inputPositions * channels, at: nil)
        windows.averageAdjoint(delta.buffer.baseAddress!, count: rows, channels: channels, into: next.buffer.baseAddress!)
        delta.release()
        return next
    }
}

/// Average pooling of the infinite-width state (full blocks in and out).
struct PoolMap: KernelMap {
    let windows: WindowMap
    /// Which pooling layer this is (numbered in the order of the maps).
    let ordinal: Int
    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        SpatialProgram.pool(windows, &state)
        run.setPooledVariances(&state, ordinal: ordinal)
    }
}
