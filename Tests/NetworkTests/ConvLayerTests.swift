import Foundation
import Testing
@testable import Network

/// The convolutional layers' JSON, shapes, windows, factor forms and work counts.
@Suite struct ConvLayerTests {
    static let cnn = #"""
    {"input_shape": [8, 8, 1], "layers": [
      {"type": "conv", "channels": 64, "kernel": [3, 3], "padding": "SAME", "W_std": 1.4142135623730951},
      {"type": "relu"},
      {"type": "conv", "channels": 64, "kernel": [3, 3], "padding": "SAME", "W_std": 1.4142135623730951},
      {"type": "relu"},
      {"type": "avg_pool", "window": [2, 2]},
      {"type": "conv", "channels": 64, "kernel": [3, 3], "padding": "SAME", "W_std": 1.4142135623730951},
      {"type": "relu"},
      {"type": "global_avg_pool"},
      {"type": "dense", "width": 10}]}
    """#

    @Test("conv, avg_pool, global_avg_pool, flatten and input_shape decode, encode and decode again to the same model")
    func roundTrip() throws {
        let json = #"{"input_shape": [6, 2], "parameterization": "standard", "layers": [{"type": "conv", "channels": 3, "kernel": [3], "strides": [2], "padding": "circular", "W_std": 1.5, "b_std": 0.1}, {"type": "erf"}, {"type": "avg_pool", "window": [2], "padding": "SAME"}, {"type": "flatten"}, {"type": "dense", "width": 2}]}"#
        let spec = try ModelSpec.decode(json: Data(json.utf8))
        #expect(spec.inputShape == [6, 2])
        #expect(spec.layers[0] == .conv(ConvLayer(channels: 3, kernel: [3], strides: [2], padding: .circular, weightStd: 1.5, biasStd: 0.1)))
        #expect(spec.layers[2] == .averagePool(PoolLayer(window: [2], strides: nil, padding: .same)))
        #expect(spec.layers[3] == .flatten)
        #expect(try ModelSpec.decode(json: spec.encodeJSON()) == spec)
    }

    @Test("global_sum_pool decodes, encodes, refuses flat input and keys it does not have, and is the global mean times the positions")
    func globalSumPool() throws {
        let json = #"{"input_shape": [3, 4, 2], "layers": [{"type": "conv", "channels": 3, "kernel": [2, 2]}, {"type": "relu"}, {"type": "global_sum_pool"}, {"type": "dense", "width": 2}]}"#
        let spec = try ModelSpec.decode(json: Data(json.utf8))
        #expect(spec.layers[2] == Layer(GlobalSumPool()))
        #expect(try ModelSpec.decode(json: spec.encodeJSON()) == spec)
        #expect(spec.layers[2].base.flattens && spec.layers[2].base.isChannelwise)
        let plan = try NetworkPlan(spec: spec, dataShape: [24])
        #expect(plan.outputShape == [2])
        #expect(plan.geometry[1].fanIn == 3)
        // f(x) with the sum is f(x) with the mean after the readout's W is scaled by the positions (2 x 3).
        var mean = spec
        mean.layers[2] = .globalAveragePool
        let sumNetwork = Network.initialized(spec: spec, inputShape: [24], seed: 7)
        var scaled = sumNetwork.parameters
        scaled[1] = DenseParameters(weights: scaled[1].weights.map { $0 * 6 }, bias: scaled[1].bias)
        let meanNetwork = try Network(spec: mean, inputShape: [24], parameters: scaled)
        let x = (0..<48).map { sin(Double($0)) }
        let a = sumNetwork.outputs(x, count: 2), b = meanNetwork.outputs(x, count: 2)
        for (u, v) in zip(a, b) { #expect(abs(u - v) <= 1e-13 * max(1, abs(v))) }
        #expect(throws: ModelError.self) {
            try ModelSpec.decode(json: Data(#"{"layers": [{"type": "global_sum_pool"}, {"type": "dense", "width": 1}]}"#.utf8)).validate(inputWidth: 4)
        }
        #expect(throws: ModelError("layer 0: unknown key \"window\" for a global_sum_pool layer")) {
            try ModelSpec.decode(json: Data(#"{"layers": [{"type": "global_sum_pool", "window": 2}, {"type": "dense", "width": 1}]}"#.utf8))
        }
    }

    @Test("shapes flow through the layers: SAME keeps ⌈n/s⌉, VALID ⌊(n − w)/s⌋ + 1, pooling strides default to the window")
    func shapes() throws {
        let spec = try ModelSpec.decode(json: Data(Self.cnn.utf8))
        let plan = try NetworkPlan(spec: spec, dataShape: [64])
        #expect(plan.inputShape == [8, 8, 1] && plan.outputShape == [10])
        #expect(plan.geometry.map(\.positions) == [64, 64, 16, 1])
        #expect(plan.geometry.map(\.fanIn) == [9, 576, 576, 64])
        #expect(plan.geometry.map(\.weightShape) == [[3, 3, 1, 64], [3, 3, 64, 64], [3, 3, 64, 64], [64, 10]])
        #expect(plan.parameterCount == 74_944)
        let valid = try WindowMap(inputSpatial: [7, 5], window: [3, 2], strides: [2, 2], padding: .valid)
        #expect(valid.outputSpatial == [3, 2])
        let same = try WindowMap(inputSpatial: [7, 5], window: [3, 2], strides: [2, 2], padding: .same)
        #expect(same.outputSpatial == [4, 3])
        #expect(throws: ModelError.self) { try WindowMap(inputSpatial: [2], window: [3], strides: [1], padding: .valid) }
    }

    /// lax pads SAME with total max((out − 1)s + w − n, 0), the smaller half first, and
    /// CIRCULAR takes the same amounts from the other side of the input.
    @Test("SAME pads zeros and CIRCULAR wraps by lax's amounts, the smaller half first")
    func padding() throws {
        // n = 6, w = 3, s = 2: out 3, total 1: pads (0, 1).
        let same = try WindowMap(inputSpatial: [6], window: [3], strides: [2], padding: .same)
        #expect(same.index == [0, 1, 2, 2, 3, 4, 4, 5, -1])
        // n = 7, w = 4, s = 1: out 7, total 3: pads (1, 2), wrapped.
        let circular = try WindowMap(inputSpatial: [7], window: [4], strides: [1], padding: .circular)
        #expect(Array(circular.index.prefix(4)) == [6, 0, 1, 2])
        #expect(Array(circular.index.suffix(4)) == [5, 6, 0, 1])
    }

    /// Per pair: structured P²(K + k C_out), explicit k(K C_out + C_out); the layer before a
    /// dense readout through relu and global pooling keeps one row (k = 1 in its count).
    @Test("each layer takes the form with fewer multiply-adds per pair; the layer before the readout collapses to one row")
    func formsAndWork() throws {
        let spec = try ModelSpec.decode(json: Data(Self.cnn.utf8))
        let plain = try NetworkPlan(spec: spec, dataShape: [8, 8, 1])
        #expect(plain.geometry.map(\.form) == [.explicit, .explicit, .structured, .structured])
        #expect(plain.geometry[2].pairCost(.structured, outputs: 10) == 256 * (576 + 640))
        #expect(plain.geometry[2].pairCost(.explicit, outputs: 10) == 10 * 36_864)
        let collapsed = try NetworkPlan(spec: spec, dataShape: [8, 8, 1], collapseOutputs: true)
        #expect(collapsed.geometry.map(\.collapsed) == [false, false, true, false])
        #expect(collapsed.geometry.map(\.form) == [.explicit, .explicit, .explicit, .structured])
        let work = collapsed.multiplyAdds(outputs: 10)
        let expected: Double = 5_760 + 368_640 + 36_864 + 164  // conv 1, conv 2, conv 3 (one row), the readout K + k C
        #expect(work.perPair == expected)
        // A flatten before the readout mixes positions into its rows: no collapse.
        var flattened = spec
        flattened.layers[7] = .flatten
        #expect(try NetworkPlan(spec: flattened, dataShape: [8, 8, 1], collapseOutputs: true).geometry.allSatisfy { !$0.collapsed })
    }

    /// The mean and sum kernels store an explicit layer's gradients sample-major, (K + 1,
    /// k C_out) per sample from one product; the same values, exactly, as the rows of the
    /// other kernels (to rounding), and bitwise the same whatever the grouping of the samples
    /// (ranks, blocks).
    @Test("sample-major explicit gradients are the row-wise ones reordered, and bitwise the same whatever the grouping of samples")
    func sampleMajorGradients() throws {
        let json = #"{"input_shape": [5, 4, 2], "layers": [{"type": "conv", "channels": 6, "kernel": [3, 2], "padding": "SAME", "b_std": 0.3}, {"type": "erf"}, {"type": "conv", "channels": 5, "kernel": [2, 2], "strides": [2, 1], "b_std": 0.2}, {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "width": 3, "b_std": 0.1}]}"#
        let spec = try ModelSpec.decode(json: Data(json.utf8))
        let base = Network.initialized(spec: spec, inputShape: [5, 4, 2], seed: 21)
        let rowWise = base.with(forms: .explicit)
        let sampleMajor = base.with(forms: .explicit, collapseOutputs: true)
        #expect(!rowWise.plan.outputsSummed && sampleMajor.plan.outputsSummed)
        let collapsed = sampleMajor.geometry.contains { $0.collapsed }
        #expect(!collapsed)
        let b = 7, k = 3
        var generator = SystemRandomNumberGenerator()
        let x = (0..<(b * 40)).map { _ in Double.random(in: -1...1, using: &generator) }
        let rows = rowWise.factors(x, count: b)
        let whole = sampleMajor.factors(x, count: b)
        // The same buffer filled in two groups of samples, as two ranks sharing it would.
        let count = BatchFactors.storageCount(count: b, outputCount: k, geometry: sampleMajor.geometry)
        let split = UnsafeMutableBufferPointer<Double>.allocate(capacity: count)
        defer { split.deallocate() }
        sampleMajor.factors(x, count: b, into: split, samples: 0..<3)
        sampleMajor.factors(x, count: b, into: split, samples: 3..<b)
        for (l, g) in sampleMajor.geometry.enumerated() {
            let kIn = g.fanIn, c = g.fanOut, length = g.parameterCount
            let r = rows.withGradients(l) { Array($0) }, s = whole.withGradients(l) { Array($0) }
            #expect(s == Array(split[whole.gradientRanges[l]]), "layer \(l): grouping")
            var reordered = [Double](repeating: .nan, count: s.count)
            for sample in 0..<b {
                for output in 0..<k {
                    let row = (sample * k + output) * length
                    for i in 0...kIn where i < kIn || g.hasBias {
                        for j in 0..<c {
                            reordered[sample * k * length + (i * k + output) * c + j] = r[row + i * c + j]
                        }
                    }
                }
            }
            // The same dot products over the positions, through products of other widths:
            // equal up to the order of a few additions (1e-13 of the largest entry).
            let scale = s.map(abs).max() ?? 0
            #expect(!reordered.contains { $0.isNaN } && zip(reordered, s).allSatisfy { abs($0 - $1) <= 1e-13 * scale }, "layer \(l)")
        }
    }

    @Test("converge widens the channels of every hidden conv layer and keeps the readout")
    func widened() throws {
        let spec = try ModelSpec.decode(json: Data(Self.cnn.utf8)).widened(to: 256)
        let plan = try NetworkPlan(spec: spec, dataShape: [64])
        #expect(plan.geometry.map(\.fanOut) == [256, 256, 256, 10])
    }
}
