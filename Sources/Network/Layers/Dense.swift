import Foundation

/// A dense layer of a model file: `{"type": "dense", "width": n, "W_std": s, "b_std": s|null}`,
/// neural-tangents' `stax.Dense`. On flat values it maps (n_in) → (n); on spatial values
/// it acts on the channels of every position (a 1 x 1 window), as stax.Dense does.
/// Parameters `W{i}` of shape (n_in, n) and `b{i}` of shape (n,).
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

extension DenseLayer: LayerType {
    public static let typeNames = ["dense"]
    public static func keys(for type: String) -> [String] { ["type", "width", "W_std", "b_std"] }

    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> DenseLayer {
        guard let width = try JSONFields.integer(object["width"], "width", path.index) else {
            throw ModelError("\(path): dense needs an integer \"width\"")
        }
        return DenseLayer(width: width, weightStd: try JSONFields.number(object["W_std"], "W_std", path.index) ?? 1,
                          biasStd: try JSONFields.number(object["b_std"], "b_std", path.index))
    }

    public func encode() -> [String: Any] {
        ["type": "dense", "width": width, "W_std": weightStd, "b_std": biasStd.map { $0 as Any } ?? NSNull()]
    }

    public func validate(path: LayerPath) throws(ModelError) {
        if width <= 0 { throw ModelError("\(path): dense width must be a positive integer, got \(width)") }
        if width > ModelSpec.maximumInteger {
            throw ModelError("\(path): dense width must be a positive integer of at most \(ModelSpec.maximumInteger), got \(width)")
        }
        try JSONFields.checkStandardDeviations(weightStd, biasStd, path: path)
    }

    /// h_p = s z_p W + t b at every position p, z_p the position's channels.
    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        let spatial = Array(shape.dropLast()), channels = shape.last!
        let positions = spatial.reduce(1, *)
        try builder.addParameterized(path: path, fanIn: channels, fanOut: width, positions: positions, channelsIn: channels,
                                     inputPositions: positions, windows: nil, weightShape: [channels, width],
                                     weightStd: weightStd, biasStd: biasStd)
        return spatial + [width]
    }

    /// K ← W_std² K + b_std² and the NTK's update (`DenseStep`), entry by entry.
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        builder.append(builder.denseStep(weightStd: weightStd, biasStd: biasStd, fanIn: builder.shape.last!))
        builder.shape = builder.shape.dropLast() + [width]
        builder.enterGaussian()
    }

    public var outputWidth: Int? { width }

    public func widened(to width: Int) -> DenseLayer {
        var copy = self
        copy.width = width
        return copy
    }
}
