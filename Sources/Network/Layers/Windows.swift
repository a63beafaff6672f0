/// How a sliding window (a convolution's kernel, a pooling window) treats the borders:
/// lax's padding types, as neural-tangents' `stax` uses them.
public enum Padding: String, Sendable, CaseIterable, Hashable {
    /// No padding: out = ⌊(in − w) / s⌋ + 1 positions; the window must fit the input.
    case valid = "VALID"
    /// Zeros around the input: out = ⌈in / s⌉, the total padding max((out − 1) s + w − in, 0)
    /// split with the smaller half first (lax.padtype_to_pads).
    case same = "SAME"
    /// The padding of SAME taken from the opposite side of the input (periodic boundary),
    /// then a VALID window: stax's `_same_pad_for_filter_shape` with mode "wrap".
    case circular = "CIRCULAR"
}

/// Where each output position of a sliding window reads its input: for every output
/// position (row-major over the spatial axes) and every window offset (row-major over the
/// window), the input position it reads, or −1 where it reads padding (a zero).
///
/// The same map serves a convolution (its patches) and average pooling; both are then a
/// gather forward and a scatter-add backward.
public struct WindowMap: Sendable, Equatable {
    /// The input and output spatial shapes, and the window's.
    public let inputSpatial: [Int]
    public let outputSpatial: [Int]
    public let window: [Int]
    /// Output positions × window volume entries; −1 for padding.
    public let index: [Int32]

    public var inputPositions: Int { inputSpatial.reduce(1, *) }
    public var outputPositions: Int { outputSpatial.reduce(1, *) }
    public var windowVolume: Int { window.reduce(1, *) }
    /// Whether every entry reads a distinct input position in order (a 1 x … x 1 window,
    /// stride 1): the gather is then the identity.
    public var isIdentity: Bool { windowVolume == 1 && inputSpatial == outputSpatial }

    /// The output length of one spatial axis, or nil when a VALID window does not fit.
    static func outputLength(input: Int, window: Int, stride: Int, padding: Padding) -> Int? {
        switch padding {
        case .valid: return input >= window ? (input - window) / stride + 1 : nil
        case .same, .circular: return (input + stride - 1) / stride
        }
    }

    /// The map of a window of shape `window` moved by `strides` over `inputSpatial`; throws
    /// a message (without the layer's name) when the output would have no position.
    public init(inputSpatial: [Int], window: [Int], strides: [Int], padding: Padding) throws(ModelError) {
        precondition(inputSpatial.count == window.count && window.count == strides.count)
        var output: [Int] = [], low: [Int] = []
        for axis in inputSpatial.indices {
            let n = inputSpatial[axis], w = window[axis], s = strides[axis]
            guard let out = Self.outputLength(input: n, window: w, stride: s, padding: padding), out > 0 else {
                throw ModelError("the window \(Self.format(window)) is larger than the input \(Self.format(inputSpatial)) (padding VALID): no output position is left")
            }
            output.append(out)
            let total = padding == .valid ? 0 : max((out - 1) * s + w - n, 0)
            low.append(total / 2)
        }
        let volume = window.reduce(1, *)
        let positions = output.reduce(1, *)
        var index = [Int32](repeating: -1, count: positions * volume)
        let rank = inputSpatial.count
        var outCoordinate = [Int](repeating: 0, count: rank)
        var offset = [Int](repeating: 0, count: rank)
        for p in 0..<positions {
            var rest = p
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                outCoordinate[axis] = rest % output[axis]
                rest /= output[axis]
            }
            for v in 0..<volume {
                var restV = v
                for axis in stride(from: rank - 1, through: 0, by: -1) {
                    offset[axis] = restV % window[axis]
                    restV /= window[axis]
                }
                var flat = 0, inside = true
                for axis in 0..<rank {
                    var x = outCoordinate[axis] * strides[axis] + offset[axis] - low[axis]
                    let n = inputSpatial[axis]
                    if padding == .circular {
                        x = ((x % n) + n) % n
                    } else if x < 0 || x >= n {
                        inside = false
                    }
                    flat = flat * n + x
                }
                if inside { index[p * volume + v] = Int32(flat) }
            }
        }
        self.inputSpatial = inputSpatial
        self.outputSpatial = output
        self.window = window
        self.index = index
    }

    /// Gathers the windows of B samples of `channels` channels, x (B, inputPositions·C), into
    /// rows (B·outputPositions, windowVolume·C): entry (v, c) of a row is x at the v-th
    /// window offset and channel c, 0 in the padding.
    public func gather(_ x: UnsafePointer<Double>, count b: Int, channels c: Int, into z: UnsafeMutablePointer<Double>) {
        let volume = windowVolume, positionsIn = inputPositions, positionsOut = outputPositions
        index.withUnsafeBufferPointer { map in
            for sample in 0..<b {
                let source = x + sample * positionsIn * c
                var row = z + sample * positionsOut * volume * c
                for p in 0..<positionsOut {
                    for v in 0..<volume {
                        let at = Int(map[p * volume + v])
                        if at < 0 {
                            row.update(repeating: 0, count: c)
                        } else {
                            row.update(from: source + at * c, count: c)
                        }
                        row += c
                    }
                }
            }
        }
    }

    /// The adjoint of `gather`: adds rows (B·outputPositions, windowVolume·C) of `dz` back
    /// to their input positions, into dx (B, inputPositions·C), which it first zeroes.
    public func scatter(_ dz: UnsafePointer<Double>, count b: Int, channels c: Int, into dx: UnsafeMutablePointer<Double>) {
        let volume = windowVolume, positionsIn = inputPositions, positionsOut = outputPositions
        dx.update(repeating: 0, count: b * positionsIn * c)
        index.withUnsafeBufferPointer { map in
            for sample in 0..<b {
                let target = dx + sample * positionsIn * c
                var row = dz + sample * positionsOut * volume * c
                for p in 0..<positionsOut {
                    for v in 0..<volume {
                        let at = Int(map[p * volume + v])
                        if at >= 0 {
                            let t = target + at * c
                            for j in 0..<c { t[j] += row[j] }
                        }
                        row += c
                    }
                }
            }
        }
    }

    /// Window averages (normalized by the window's volume, padding counted as zeros, as
    /// stax.AvgPool with normalize_edges=False): x (B, inputPositions·C) → (B, outputPositions·C).
    public func average(_ x: UnsafePointer<Double>, count b: Int, channels c: Int, into y: UnsafeMutablePointer<Double>) {
        let volume = windowVolume, positionsIn = inputPositions, positionsOut = outputPositions
        let scale = 1 / Double(volume)
        y.update(repeating: 0, count: b * positionsOut * c)
        index.withUnsafeBufferPointer { map in
            for sample in 0..<b {
                let source = x + sample * positionsIn * c
                let target = y + sample * positionsOut * c
                for p in 0..<positionsOut {
                    let out = target + p * c
                    for v in 0..<volume {
                        let at = Int(map[p * volume + v])
                        if at >= 0 {
                            let s = source + at * c
                            for j in 0..<c { out[j] += s[j] }
                        }
                    }
                    for j in 0..<c { out[j] *= scale }
                }
            }
        }
    }

    /// The adjoint of `average`: dy (B, outputPositions·C) → dx (B, inputPositions·C).
    public func averageAdjoint(_ dy: UnsafePointer<Double>, count b: Int, channels c: Int, into dx: UnsafeMutablePointer<Double>) {
        let volume = windowVolume, positionsIn = inputPositions, positionsOut = outputPositions
        let scale = 1 / Double(volume)
        dx.update(repeating: 0, count: b * positionsIn * c)
        index.withUnsafeBufferPointer { map in
            for sample in 0..<b {
                let source = dy + sample * positionsOut * c
                let target = dx + sample * positionsIn * c
                for p in 0..<positionsOut {
                    let g = source + p * c
                    for v in 0..<volume {
                        let at = Int(map[p * volume + v])
                        if at >= 0 {
                            let t = target + at * c
                            for j in 0..<c { t[j] += scale * g[j] }
                        }
                    }
                }
            }
        }
    }

    static func format(_ shape: [Int]) -> String {
        "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
    }
}
