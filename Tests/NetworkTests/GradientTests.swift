import Testing
@testable import Network

/// Networks that exercise every layer kind, both parameterizations, missing biases,
/// several outputs and consecutive dense layers.
let gradientCases: [(String, ModelSpec)] = [
    ("relu ntk k=1", .fullyConnected(depth: 2, width: 6, activation: .relu, weightStd: 1.4, biasStd: 0.1, outputs: 1, parameterization: .ntk)),
    ("erf standard k=2", .fullyConnected(depth: 2, width: 5, activation: .erf, weightStd: 1.2, biasStd: 0.3, outputs: 2, parameterization: .standard)),
    ("tanh ntk no bias k=3", .fullyConnected(depth: 1, width: 7, activation: .tanh, weightStd: 1.1, biasStd: nil, outputs: 3, parameterization: .ntk)),
    ("gelu ntk", .fullyConnected(depth: 2, width: 4, activation: .gelu, weightStd: 1.0, biasStd: 0.5, outputs: 1, parameterization: .ntk)),
    ("sigmoid standard", .fullyConnected(depth: 1, width: 4, activation: .sigmoid, weightStd: 2.0, biasStd: 0.2, outputs: 2, parameterization: .standard)),
    ("softplus ntk", .fullyConnected(depth: 2, width: 3, activation: .softplus, weightStd: 1.3, biasStd: 0.2, outputs: 1, parameterization: .ntk)),
    ("leaky_relu ntk", .fullyConnected(depth: 2, width: 5, activation: .leakyRelu(alpha: 0.2), weightStd: 1.4, biasStd: 0.1, outputs: 2, parameterization: .ntk)),
    ("identity standard", .fullyConnected(depth: 1, width: 3, activation: .identity, weightStd: 0.9, biasStd: 1.0, outputs: 1, parameterization: .standard)),
    ("dense-dense-tanh-dense, mixed biases", ModelSpec(parameterization: .ntk, layers: [
        .dense(DenseLayer(width: 4, weightStd: 1.5, biasStd: nil)),
        .dense(DenseLayer(width: 5, weightStd: 0.7, biasStd: 0.4)),
        .activation(.tanh, quadratureDegree: nil),
        .dense(DenseLayer(width: 2, weightStd: 1.1, biasStd: 0.05)),
        .activation(.erf, quadratureDegree: nil)])),
    ("tanh first, relu then sigmoid between dense layers, k=2", ModelSpec(parameterization: .standard, layers: [
        .activation(.tanh, quadratureDegree: nil),
        .dense(DenseLayer(width: 4, weightStd: 1.3, biasStd: 0.2)),
        .activation(.leakyRelu(alpha: 0.3), quadratureDegree: nil),
        .activation(.sigmoid, quadratureDegree: nil),
        .dense(DenseLayer(width: 2, weightStd: 0.9, biasStd: 0.1))])),
]

@Suite struct GradientTests {
    @Test("per-sample gradients agree with central finite differences (step 1e-5, tolerance 1e-7 of the largest gradient)",
          arguments: gradientCases.map(\.0))
    func finiteDifferences(name: String) {
        let spec = gradientCases.first { $0.0 == name }!.1
        let d = 3, b = 2
        let network = Network.initialized(spec: spec, inputWidth: d, seed: 11)
        let x: [Double] = [0.3, -1.2, 0.8, 1.1, 0.4, -0.7]
        let factors = network.factors(x, count: b)
        // The factors' forward pass is the network's.
        #expect(factors.outputs == network.outputs(x, count: b))
        let g = network.gradients(from: factors)
        let k = network.outputCount, p = network.parameterCount
        let theta = network.flatParameters
        let h = 1e-5
        var scale = 0.0
        for v in g { scale = max(scale, abs(v)) }
        // Truncation O(h²·f''') ~ 1e-10 and rounding O(ε·|f|/h) ~ 1e-11: 1e-7 leaves room
        // for curvature while any wrong scale factor or index is off by O(1).
        let tolerance = 1e-7 * max(scale, 1)
        for q in 0..<p {
            var plus = theta, minus = theta
            plus[q] += h
            minus[q] -= h
            let fp = network.replacing(flatParameters: plus).outputs(x, count: b)
            let fm = network.replacing(flatParameters: minus).outputs(x, count: b)
            for sample in 0..<b {
                for c in 0..<k {
                    let numeric = (fp[sample * k + c] - fm[sample * k + c]) / (2 * h)
                    let analytic = g[(sample * k + c) * p + q]
                    #expect(abs(numeric - analytic) <= tolerance, "parameter \(q), sample \(sample), output \(c)")
                }
            }
        }
    }

    @Test("activation derivatives agree with central differences at 41 points in [-4, 4] to 1e-8",
          arguments: [Activation.relu, .erf, .tanh, .identity, .gelu, .sigmoid, .softplus, .leakyRelu(alpha: 0.3)])
    func activationDerivatives(activation: Activation) {
        for i in 0...40 {
            let x = -4 + 0.2 * Double(i) + 0.013  // off the kinks of relu and leaky_relu
            let h = 1e-6
            let numeric = (activation.value(x + h) - activation.value(x - h)) / (2 * h)
            #expect(abs(numeric - activation.derivative(x)) <= 1e-8, "\(activation.name) at \(x)")
        }
    }

    @Test("the forward pass matches a hand computation for a one-hidden-layer ntk network")
    func handForward() throws {
        let spec = ModelSpec(parameterization: .ntk, layers: [
            .dense(DenseLayer(width: 2, weightStd: 2, biasStd: 0.5)), .activation(.relu, quadratureDegree: nil),
            .dense(DenseLayer(width: 1, weightStd: 1, biasStd: nil))])
        let network = try Network(spec: spec, inputWidth: 2, parameters: [
            DenseParameters(weights: [1, -1, 2, 0.5], bias: [0.2, -4]),
            DenseParameters(weights: [3, 7], bias: nil)])
        // h1 = (2/√2) [1, 2] W0 + 0.5 b0 = √2 [5, 0] + [0.1, -2] → relu → [√2·5 + 0.1, 0]
        // f = (1/√2) (3 (5√2 + 0.1)) = 15 + 0.3/√2
        let f = network.outputs([1, 2], count: 1)
        #expect(abs(f[0] - (15 + 0.3 / 2.0.squareRoot())) < 1e-13)
    }

    @Test("initialization is deterministic in the seed and has the declared variance")
    func initialization() {
        let spec = ModelSpec.fullyConnected(depth: 1, width: 400, activation: .relu, weightStd: 2, biasStd: 0.5, outputs: 1, parameterization: .standard)
        let a = Network.initialized(spec: spec, inputWidth: 100, seed: 5)
        let b = Network.initialized(spec: spec, inputWidth: 100, seed: 5)
        let c = Network.initialized(spec: spec, inputWidth: 100, seed: 6)
        #expect(a.flatParameters == b.flatParameters)
        #expect(a.flatParameters != c.flatParameters)
        // W0 ~ N(0, 2²/100): 40000 draws, variance within 5 standard errors (√(2/40000) relative).
        let w = a.parameters[0].weights
        let variance = w.reduce(0) { $0 + $1 * $1 } / Double(w.count)
        #expect(abs(variance / 0.04 - 1) < 5 * (2.0 / 40000).squareRoot())
    }
}

@Suite struct WeightedGradientTests {
    @Test("the weighted gradient equals Σ w[b,c] times the explicit per-sample gradients, to 1e-13 relative", arguments: gradientCases.map(\.0))
    func matchesExplicit(name: String) {
        let spec = gradientCases.first { $0.0 == name }!.1
        let network = Network.initialized(spec: spec, inputWidth: 3, seed: 4)
        let b = 4, k = network.outputCount, p = network.parameterCount
        let x: [Double] = [0.3, -1.2, 0.8, 1.1, 0.4, -0.7, 0.05, 0.9, -0.3, -1.5, 0.2, 0.6]
        let w = (0..<(b * k)).map { Double($0 % 5) - 1.7 }
        let factors = network.factors(x, count: b)
        // The factors' forward pass is the network's.
        #expect(factors.outputs == network.outputs(x, count: b))
        let g = network.gradients(from: factors)
        var expected = [Double](repeating: 0, count: p)
        for row in 0..<(b * k) { for q in 0..<p { expected[q] += w[row] * g[row * p + q] } }
        let ours = network.weightedGradient(x, count: b, weights: w)
        let scale = expected.map(abs).max()!
        for q in 0..<p { #expect(abs(ours[q] - expected[q]) <= 1e-13 * scale, "parameter \(q)") }
    }
}
