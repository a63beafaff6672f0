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

    static let keys = ["type", "window", "strides", "padding"]

    static func decode(_ layer: [String: JSONValue], index: String) throws(ModelError) -> PoolLayer {
        guard let window = try JSONFields.integers(layer["window"], "window", index) else {
            throw ModelError("layer \(index): avg_pool needs \"window\", a list of 1 or 2 positive integers")
        }
        let strides = try JSONFields.integers(layer["strides"], "strides", index)
        let result = PoolLayer(window: window, strides: strides, padding: try JSONFields.padding(layer["padding"], index) ?? .valid)
        try result.validate(index: index)
        return result
    }

    func validate(index: String) throws(ModelError) {
        try WindowFields.check(window, name: "window", index: index)
        if let strides {
            try WindowFields.check(strides, name: "strides", index: index)
            if strides.count != window.count {
                throw ModelError("layer \(index): avg_pool \"strides\" has \(strides.count) entries but \"window\" has \(window.count)")
            }
        }
    }

    func encode() -> [String: Any] {
        var o: [String: Any] = ["type": "avg_pool", "window": window, "padding": padding.rawValue]
        if let strides { o["strides"] = strides }
        return o
    }
}
