/// A convolution of a model file: `{"type": "conv", "channels": C, "kernel": [kh, kw] or
/// [k], "strides": [...], "padding": "VALID" | "SAME" | "CIRCULAR", "W_std": s, "b_std": s}`,
/// neural-tangents' `stax.Conv` (channels last, weights HWIO, fan-in kh·kw·C_in).
public struct ConvLayer: Sendable, Equatable, Hashable {
    /// Output channels C_out.
    public var channels: Int
    /// The kernel's spatial shape (1 or 2 axes).
    public var kernel: [Int]
    /// Strides per spatial axis; nil means 1 on every axis.
    public var strides: [Int]?
    public var padding: Padding
    public var weightStd: Double
    /// b_std; nil means no bias.
    public var biasStd: Double?

    public init(channels: Int, kernel: [Int], strides: [Int]? = nil, padding: Padding = .valid,
                weightStd: Double = 1, biasStd: Double? = nil) {
        self.channels = channels
        self.kernel = kernel
        self.strides = strides
        self.padding = padding
        self.weightStd = weightStd
        self.biasStd = biasStd
    }

    /// The strides in effect.
    public var effectiveStrides: [Int] { strides ?? kernel.map { _ in 1 } }

}

extension ConvLayer: LayerType {
    public static let typeNames = ["conv"]
    public static func keys(for type: String) -> [String] { ["type", "channels", "kernel", "strides", "padding", "W_std", "b_std"] }

    /// Checks the fields (the shapes are checked against the input by `plan`).
    public func validate(path: LayerPath) throws(ModelError) {
        let index = path.index
        if channels <= 0 || channels > ModelSpec.maximumInteger {
            throw ModelError("layer \(index): conv channels must be a positive integer of at most \(ModelSpec.maximumInteger), got \(channels)")
        }
        try WindowFields.check(kernel, name: "kernel", index: index)
        if let strides {
            try WindowFields.check(strides, name: "strides", index: index)
            if strides.count != kernel.count {
                throw ModelError("layer \(index): conv \"strides\" has \(strides.count) entries but \"kernel\" has \(kernel.count)")
            }
        }
        try JSONFields.checkStandardDeviations(weightStd, biasStd, path: path)
    }

    public static func decode(_ layer: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> ConvLayer {
        let index = path.index
        guard let channels = try JSONFields.integer(layer["channels"], "channels", index) else {
            throw ModelError("layer \(index): conv needs an integer \"channels\"")
        }
        guard let kernel = try JSONFields.integers(layer["kernel"], "kernel", index) else {
            throw ModelError("layer \(index): conv needs \"kernel\", a list of 1 or 2 positive integers")
        }
        let strides = try JSONFields.integers(layer["strides"], "strides", index)
        let padding = try JSONFields.padding(layer["padding"], index) ?? .valid
        let result = ConvLayer(channels: channels, kernel: kernel, strides: strides, padding: padding,
                               weightStd: try JSONFields.number(layer["W_std"], "W_std", index) ?? 1,
                               biasStd: try JSONFields.number(layer["b_std"], "b_std", index))
        try result.validate(path: path)
        return result
    }

    public func encode() -> [String: Any] {
        var o: [String: Any] = ["type": "conv", "channels": channels, "kernel": kernel, "padding": padding.rawValue, "W_std": weightStd]
        if let strides { o["strides"] = strides }
        o["b_std"] = biasStd.map { $0 as Any } ?? NSNull()
        return o
    }

    /// h_p = s z_p W + t b at every output position p, z_p the window's patch (kh·kw·C_in
    /// values, zeros where it reads padding).
    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        let spatial = Array(shape.dropLast()), channels = shape.last!
        try builder.requireSpatial(shape, rank: kernel.count, what: "conv", path: path)
        let windows = try builder.window(path: path, "conv", spatial: spatial, window: kernel, strides: effectiveStrides, padding: padding)
        try builder.addParameterized(path: path, fanIn: kernel.reduce(1, *) * channels, fanOut: self.channels,
                                     positions: windows.positions, channelsIn: channels, inputPositions: spatial.reduce(1, *),
                                     windows: windows.map, weightShape: kernel + [channels, self.channels],
                                     weightStd: weightStd, biasStd: biasStd)
        return windows.output + [self.channels]
    }

    /// The window average over the offsets two positions share, then the dense map entry by
    /// entry with fan-in kh·kw·C_in (docs/maths.md §7).
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        guard builder.isSpatial else { throw ModelError("\(path): a spatial layer on a flat value") }
        let spatial = Array(builder.shape.dropLast()), channelsIn = builder.shape.last!
        let windows = try KernelBuilder.windowMap(path: path, spatial: spatial, window: kernel, strides: effectiveStrides, padding: padding)
        builder.append(WindowMeanMap(windows: windows))
        builder.append(builder.denseStep(weightStd: weightStd, biasStd: biasStd, fanIn: windows.windowVolume * channelsIn))
        builder.shape = windows.outputSpatial + [channels]
        builder.enterGaussian()
    }

    public var outputWidth: Int? { channels }

    public func widened(to width: Int) -> ConvLayer {
        var copy = self
        copy.channels = width
        return copy
    }
}

/// K'[p, p'] = (1/V) Σ_v K[p + v, p' + v] over the window offsets (padding reads zeros,
/// CIRCULAR wraps): the first half of a convolution's map.
struct WindowMeanMap: KernelMap {
    let windows: WindowMap
    func apply(_ state: inout SpatialState, _ run: SpatialRun) { SpatialProgram.windowMean(windows, &state) }
}

/// Checks shared by window-shaped fields (kernel, window, strides).
enum WindowFields {
    static func check(_ values: [Int], name: String, index: String) throws(ModelError) {
        guard values.count == 1 || values.count == 2 else {
            throw ModelError("layer \(index): \"\(name)\" must list 1 or 2 positive integers (1-D or 2-D), got \(values.count)")
        }
        if let bad = values.first(where: { $0 <= 0 || $0 > 1 << 20 }) {
            throw ModelError("layer \(index): \"\(name)\" entries must be positive integers of at most \(1 << 20), got \(bad)")
        }
    }
}

import Foundation
