import Foundation
@testable import Network
import NumPyIO
import Testing

/// The analytic fixtures (neural-tangents 0.6.5, float64), found relative to this file.
private enum AnalyticFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("analytic")

    struct Case: Decodable {
        let name: String
        let quadrature_degree: Int?
    }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: root.appendingPathComponent("cases.json")),
              let list = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return list
    }()

    static func url(_ name: String, _ file: String) -> URL {
        root.appendingPathComponent(name).appendingPathComponent(file)
    }

    static func array(_ name: String, _ file: String) throws -> NPYArray {
        try NPYFormat.decode(Data(contentsOf: url(name, file)))
    }
}

/// A block evaluation from row-major arrays.
private func evaluate(_ kernel: InfiniteWidthKernel, _ x: [Double], _ m: Int, _ y: [Double], _ n: Int) -> (nngp: [Double], ntk: [Double]) {
    x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in kernel.evaluate(x: xb, m: m, y: yb, n: n) } }
}

/// max |a − b| over the selected entries, divided by max |b| over all entries.
private func relativeError(_ a: [Double], _ b: [Double], where include: (Int) -> Bool = { _ in true }) -> Double {
    precondition(a.count == b.count)
    var diff = 0.0, scale = 0.0
    for p in b.indices {
        scale = max(scale, abs(b[p]))
        if include(p) { diff = max(diff, abs(a[p] - b[p])) }
    }
    return scale == 0 ? diff : diff / scale
}

/// Deterministic inputs in [−1.5, 1.5).
private func inputs(_ count: Int, _ d: Int, seed: UInt64) -> [Double] {
    var g = NormalGenerator(seed: seed)
    return (0..<(count * d)).map { _ in 3 * g.uniform() - 1.5 }
}

/// Networks covering every closed form, both parameterizations, missing biases and
/// consecutive dense layers.
private let closedFormCases: [(String, ModelSpec)] = [
    ("relu ntk", .fullyConnected(depth: 3, width: 10, activation: .relu, weightStd: 1.4, biasStd: 0.1, outputs: 1, parameterization: .ntk)),
    ("relu standard no bias", .fullyConnected(depth: 2, width: 7, activation: .relu, weightStd: 1.3, biasStd: nil, outputs: 2, parameterization: .standard)),
    ("leaky_relu ntk", .fullyConnected(depth: 2, width: 5, activation: .leakyRelu(alpha: 0.2), weightStd: 1.4, biasStd: 0.3, outputs: 1, parameterization: .ntk)),
    ("erf standard", .fullyConnected(depth: 2, width: 6, activation: .erf, weightStd: 1.2, biasStd: 0.3, outputs: 1, parameterization: .standard)),
    ("gelu ntk", .fullyConnected(depth: 2, width: 4, activation: .gelu, weightStd: 1.1, biasStd: 0.5, outputs: 1, parameterization: .ntk)),
    ("identity ntk", .fullyConnected(depth: 1, width: 3, activation: .identity, weightStd: 0.9, biasStd: 1.0, outputs: 1, parameterization: .ntk)),
    ("dense-dense-gelu-dense-erf", ModelSpec(parameterization: .standard, layers: [
        .dense(DenseLayer(width: 4, weightStd: 1.5, biasStd: nil)),
        .dense(DenseLayer(width: 5, weightStd: 0.7, biasStd: 0.4)),
        .activation(.gelu, quadratureDegree: nil),
        .dense(DenseLayer(width: 2, weightStd: 1.1, biasStd: 0.05)),
        .activation(.erf, quadratureDegree: nil)])),
]

/// ElementwiseNumerical's 2-D rule written out plainly (no symmetry, no precomputation):
/// (E[g(u)g(v)], E[g'(u)g'(v)]) ≈ (1/π) Σᵢ Σⱼ wᵢwⱼ g(√(2q₁₁)xᵢ) g(αxᵢ + βxⱼ).
private func directQuadrature(_ activation: Activation, _ rule: GaussHermiteRule,
                              q11: Double, q22: Double, q12: Double) -> (Double, Double) {
    let alpha = q12 / (q11 / 2).squareRoot()
    let beta = max(2 * (q22 - q12 * q12 / q11), 0).squareRoot()
    var value = 0.0, derivative = 0.0
    for (xi, wi) in zip(rule.nodes, rule.weights) {
        for (xj, wj) in zip(rule.nodes, rule.weights) {
            let u = (2 * q11).squareRoot() * xi, v = alpha * xi + beta * xj
            value += wi * wj * activation.value(u) * activation.value(v)
            derivative += wi * wj * activation.derivative(u) * activation.derivative(v)
        }
    }
    return (value / Double.pi, derivative / Double.pi)
}

@Suite struct InfiniteWidthKernelTests {
    // MARK: Reference fixtures

    @Test("nngp and ntk equal neural-tangents' kernel_fn on every analytic fixture (11 and 12 blocks)",
          arguments: AnalyticFixtures.cases.map(\.name))
    func fixture(name: String) throws {
        let spec = try ModelSpec.decode(json: Data(contentsOf: AnalyticFixtures.url(name, "model.json")))
        let x1 = try AnalyticFixtures.array(name, "x1.npy"), x2 = try AnalyticFixtures.array(name, "x2.npy")
        let d = x1.shape[1], n1 = x1.shape[0], n2 = x2.shape[0]
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let a = x1.doubles(), b = x2.doubles()
        let usesQuadrature = spec.layers.contains {
            guard let act = $0.as(ActivationLayer.self)?.activation else { return false }
            return [.tanh, .sigmoid, .softplus].contains(act)
        }
        let usesRelu = spec.layers.contains { $0.as(ActivationLayer.self)?.activation == .relu }
        // Closed forms follow neural-tangents' expressions operation by operation, so only
        // the input dot products (XLA's summation order vs ours) and a few roundings per
        // layer differ: 1e-12 is ~1e4 ulps of room. The quadrature case sums 4096 terms per
        // pair and layer in a different order than XLA's tensordot: 1e-10. On pairs of
        // identical rows relu's √(q₁₁q₂₂ − q₁₂²) turns an ulp of difference between the
        // reference's q₁₂ and q₁₁ into ~1e-8 relative (docs/maths.md), so there 1e-7.
        let tolerance = usesQuadrature ? 1e-10 : 1e-12
        let coincidentTolerance = usesRelu ? 1e-7 : tolerance
        for (tag, y, n) in [("11", a, n1), ("12", b, n2)] {
            let result = evaluate(kernel, a, n1, y, n)
            let coincident: (Int) -> Bool = { p in
                let i = p / n, j = p % n
                return Array(a[(i * d)..<((i + 1) * d)]) == Array(y[(j * d)..<((j + 1) * d)])
            }
            for (kind, ours) in [("nngp", result.nngp), ("ntk", result.ntk)] {
                let reference = try AnalyticFixtures.array(name, "\(kind)_\(tag).npy")
                #expect(reference.shape == [n1, n])
                let expected = reference.doubles()
                let off = relativeError(ours, expected) { !coincident($0) }
                let on = relativeError(ours, expected) { coincident($0) }
                print("analytic fixture \(name) \(kind)_\(tag): max rel error \(off) (distinct rows), \(on) (identical rows)")
                #expect(off <= tolerance, "\(name) \(kind)_\(tag): \(off) off the coincident pairs")
                #expect(on <= coincidentTolerance, "\(name) \(kind)_\(tag): \(on) on the coincident pairs")
            }
        }
    }

    @Test("the worked check of docs/maths.md: relu, ntk, W_std √2, b_std 0.1, 2 hidden layers")
    func workedCheck() throws {
        let spec = ModelSpec.fullyConnected(depth: 2, width: 8, activation: .relu, weightStd: 2.0.squareRoot(),
                                            biasStd: 0.1, outputs: 1, parameterization: .ntk)
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: 2)
        let x: [Double] = [1, 0, 0.6, 0.8, -0.5, 2]
        let result = evaluate(kernel, x, 3, x, 3)
        let ntkRow: [Double] = [3.06, 1.5968012380296934, 1.0453387055054142]
        let nngpRow: [Double] = [1.03, 0.7625666268148402, 0.9112608526523525]
        // The published values are neural-tangents' float64 results: a dozen roundings per
        // layer separate two correct evaluations, so 1e-14 relative.
        for j in 0..<3 {
            #expect(abs(result.ntk[j] - ntkRow[j]) <= 1e-14 * ntkRow[j], "NTK[0, \(j)] = \(result.ntk[j])")
            #expect(abs(result.nngp[j] - nngpRow[j]) <= 1e-14 * nngpRow[j], "NNGP[0, \(j)] = \(result.nngp[j])")
        }
    }

    // MARK: Properties

    @Test("evaluate(x, x) is symmetric for every closed-form activation", arguments: closedFormCases.map(\.0))
    func symmetry(name: String) throws {
        let spec = closedFormCases.first { $0.0 == name }!.1
        let d = 5, m = 9
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let x = inputs(m, d, seed: 3)
        let result = evaluate(kernel, x, m, x, m)
        // Every closed form and dense map uses q₁₁ and q₂₂ only through commutative
        // products and sums, and the input dot product is symmetric in its rows, so
        // K[i, j] and K[j, i] are the same operations on the same numbers: 1e-15 of the
        // largest entry is far above what is actually 0. (Quadrature rules are not
        // symmetric in u and v: see the tanh fixture test below.)
        for (kind, values) in [("nngp", result.nngp), ("ntk", result.ntk)] {
            let scale = values.map(abs).max()!
            for i in 0..<m {
                for j in 0..<m {
                    #expect(abs(values[i * m + j] - values[j * m + i]) <= 1e-15 * scale, "\(kind)[\(i), \(j)]")
                }
            }
        }
    }

    @Test("quadrature kernels are asymmetric exactly as neural-tangents' (tanh, deg 64)")
    func quadratureAsymmetryMatchesReference() throws {
        let name = "tanh_ntk_quad64"
        let spec = try ModelSpec.decode(json: Data(contentsOf: AnalyticFixtures.url(name, "model.json")))
        let x1 = try AnalyticFixtures.array(name, "x1.npy")
        let n = x1.shape[0], d = x1.shape[1]
        let x = x1.doubles()
        let result = evaluate(try InfiniteWidthKernel(spec: spec, inputWidth: d), x, n, x, n)
        for (kind, ours) in [("nngp", result.nngp), ("ntk", result.ntk)] {
            let reference = try AnalyticFixtures.array(name, "\(kind)_11.npy").doubles()
            let scale = reference.map(abs).max()!
            var largest = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    let gap = ours[i * n + j] - ours[j * n + i], expected = reference[i * n + j] - reference[j * n + i]
                    largest = max(largest, abs(expected))
                    // K − Kᵀ inherits the 1e-10 agreement of each entry (see the fixture test).
                    #expect(abs(gap - expected) <= 2e-10 * scale, "\(kind)[\(i), \(j)]")
                }
            }
            // The reference itself is asymmetric far above rounding (~4e-5 nngp, ~8e-4 ntk).
            #expect(largest > 1e-6 * scale)
        }
    }

    @Test("a 2x2 block decomposition gives the whole block's values bit for bit",
          arguments: closedFormCases.map(\.0) + ["tanh deg 16", "sigmoid deg 15", "softplus deg 12", "input activation"])
    func blockConsistency(name: String) throws {
        let spec: ModelSpec
        switch name {
        case "tanh deg 16", "sigmoid deg 15", "softplus deg 12":
            let (activation, degree): (Activation, Int) = name.hasPrefix("tanh") ? (.tanh, 16) : name.hasPrefix("sigmoid") ? (.sigmoid, 15) : (.softplus, 12)
            spec = ModelSpec(parameterization: .ntk, layers: [
                .dense(DenseLayer(width: 8, weightStd: 1.5, biasStd: 0.1)), .activation(activation, quadratureDegree: degree),
                .dense(DenseLayer(width: 8, weightStd: 1.5, biasStd: 0.1)), .activation(activation, quadratureDegree: degree),
                .dense(DenseLayer(width: 1, weightStd: 1.5, biasStd: 0.1))])
        case "input activation":
            spec = ModelSpec(parameterization: .ntk, layers: [
                .activation(.tanh, quadratureDegree: nil),
                .dense(DenseLayer(width: 8, weightStd: 1.5, biasStd: 0.1)), .activation(.relu, quadratureDegree: nil),
                .dense(DenseLayer(width: 1, weightStd: 1.5, biasStd: 0.1))])
        default:
            spec = closedFormCases.first { $0.0 == name }!.1
        }
        let d = 6, m = 7, n = 9
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let x = inputs(m, d, seed: 5), y = inputs(n, d, seed: 6)
        let whole = evaluate(kernel, x, m, y, n)
        // Each entry depends only on its own two rows through the same operations, so the
        // values must be identical, not merely close.
        for (rows, cols) in [((0, 3), (0, 4)), ((0, 3), (4, 9)), ((3, 7), (0, 4)), ((3, 7), (4, 9))] {
            let bm = rows.1 - rows.0, bn = cols.1 - cols.0
            let part = evaluate(kernel, Array(x[(rows.0 * d)..<(rows.1 * d)]), bm, Array(y[(cols.0 * d)..<(cols.1 * d)]), bn)
            for i in 0..<bm {
                for j in 0..<bn {
                    let p = (rows.0 + i) * n + cols.0 + j
                    #expect(part.nngp[i * bn + j] == whole.nngp[p], "nngp[\(rows.0 + i), \(cols.0 + j)]")
                    #expect(part.ntk[i * bn + j] == whole.ntk[p], "ntk[\(rows.0 + i), \(cols.0 + j)]")
                }
            }
        }
    }

    @Test("relu on identical rows gives exactly the one-sample recursion (no noise from the sqrt of a cancellation)")
    func reluCoincidentPairs() throws {
        let spec = ModelSpec.fullyConnected(depth: 3, width: 10, activation: .relu, weightStd: 1.4, biasStd: 0.1,
                                            outputs: 1, parameterization: .ntk)
        let d = 4, m = 6
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let x = inputs(m, d, seed: 9)
        let result = evaluate(kernel, x, m, x, m)
        for i in 0..<m {
            // q ← W²q + b², T ← q + W²T; relu: q ← q/2, T ← T/2.
            let r = Array(x[(i * d)..<((i + 1) * d)])
            var q = (r[0] * r[0] + r[1] * r[1]) + (r[2] * r[2] + r[3] * r[3])  // the kernel's lane order
            q /= Double(d)
            var t = 0.0
            for layer in spec.layers {
                if let dense = layer.as(DenseLayer.self) {
                    q = q * (dense.weightStd * dense.weightStd) + dense.biasStd! * dense.biasStd!
                    t = q + dense.weightStd * dense.weightStd * t
                } else if layer.as(ActivationLayer.self) != nil {
                    q *= 0.5
                    t *= 0.5
                } else {
                    Issue.record("the model has only dense layers and activations")
                }
            }
            // The same operations in the same order: equal up to nothing; 1e-15 only guards
            // against a compiler regrouping. A √ of a cancellation would show as ~1e-8.
            #expect(abs(result.nngp[i * m + i] - q) <= 1e-15 * q)
            #expect(abs(result.ntk[i * m + i] - t) <= 1e-15 * t)
        }
    }

    @Test("closed-form gelu and erf equal the expectations by a 150-node Gauss–Hermite rule",
          arguments: [Activation.gelu, .erf])
    func closedFormsAgainstQuadrature(activation: Activation) throws {
        // One hidden layer, ntk, unit readout without bias: nngp = E[φφ] and
        // ntk = E[φφ] + K₁ E[φ'φ'], with K₁ the first layer's covariance.
        let weightStd = 1.3, biasStd = 0.4
        let spec = ModelSpec(parameterization: .ntk, layers: [
            .dense(DenseLayer(width: 5, weightStd: weightStd, biasStd: biasStd)),
            .activation(activation, quadratureDegree: nil),
            .dense(DenseLayer(width: 1, weightStd: 1, biasStd: nil))])
        let d = 3, m = 4
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let x = inputs(m, d, seed: 12)
        let result = evaluate(kernel, x, m, x, m)
        let rule = GaussHermiteRule(degree: 150)
        func covariance(_ i: Int, _ j: Int) -> Double {
            var s = 0.0
            for p in 0..<d { s += x[i * d + p] * x[j * d + p] }
            return weightStd * weightStd * s / Double(d) + biasStd * biasStd
        }
        for i in 0..<m {
            for j in 0..<m where i != j {
                let q12 = covariance(i, j)
                let (value, derivative) = directQuadrature(activation, rule, q11: covariance(i, i), q22: covariance(j, j), q12: q12)
                // Both functions are entire and the variances are O(1), so 150 nodes are
                // exact to rounding; 1e-13 allows the 22500-term sums.
                #expect(abs(result.nngp[i * m + j] - value) <= 1e-13, "E[φφ] (\(i), \(j))")
                #expect(abs((result.ntk[i * m + j] - result.nngp[i * m + j]) / q12 - derivative) <= 1e-12, "E[φ'φ'] (\(i), \(j))")
            }
        }
    }

    @Test("leaky_relu(α) = α·x + (1 − α)·relu(x): K = α q₁₂ + (1 − α)² K_relu, E[φ'φ'] likewise")
    func leakyReluFromRelu() throws {
        let alpha = 0.3
        func spec(_ activation: Activation) -> ModelSpec {
            ModelSpec(parameterization: .ntk, layers: [
                .dense(DenseLayer(width: 5, weightStd: 1.2, biasStd: 0.2)), .activation(activation, quadratureDegree: nil),
                .dense(DenseLayer(width: 1, weightStd: 1, biasStd: nil))])
        }
        let d = 3, m = 5
        let x = inputs(m, d, seed: 21)
        let leaky = evaluate(try InfiniteWidthKernel(spec: spec(.leakyRelu(alpha: alpha)), inputWidth: d), x, m, x, m)
        let relu = evaluate(try InfiniteWidthKernel(spec: spec(.relu), inputWidth: d), x, m, x, m)
        let identity = evaluate(try InfiniteWidthKernel(spec: spec(.identity), inputWidth: d), x, m, x, m)
        // identity gives nngp = q₁₂ and ntk = 2 q₁₂; the ntk is nngp + q₁₂ E[φ'φ'], and
        // E[φ'φ'] of leaky_relu is α + (1 − α)² E[relu'relu'], so the same combination holds.
        let w = (1 - alpha) * (1 - alpha)
        for p in 0..<(m * m) {
            let q12 = identity.nngp[p]
            let nngp = alpha * q12 + w * relu.nngp[p]
            let ntk = nngp + alpha * q12 + w * (relu.ntk[p] - relu.nngp[p])
            // Different but equivalent groupings of a handful of operations.
            #expect(abs(leaky.nngp[p] - nngp) <= 1e-14 * max(abs(nngp), 1))
            #expect(abs(leaky.ntk[p] - ntk) <= 1e-14 * max(abs(ntk), 1))
        }
    }

    @Test("quadrature activations equal ElementwiseNumerical's 2-D rule term by term",
          arguments: [(Activation.tanh, 20), (.tanh, 21), (.sigmoid, 20), (.sigmoid, 21), (.softplus, 20), (.softplus, 21)])
    func quadratureMatchesDirectRule(activation: Activation, degree: Int) throws {
        let weightStd = 1.5, biasStd = 0.3
        let spec = ModelSpec(parameterization: .ntk, layers: [
            .dense(DenseLayer(width: 5, weightStd: weightStd, biasStd: biasStd)),
            .activation(activation, quadratureDegree: degree),
            .dense(DenseLayer(width: 1, weightStd: 1, biasStd: nil))])
        let d = 3, m = 4
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let x = inputs(m, d, seed: 31)
        let result = evaluate(kernel, x, m, x, m)
        let rule = GaussHermiteRule(degree: degree)
        func covariance(_ i: Int, _ j: Int) -> Double {
            var s = 0.0
            for p in 0..<d { s += x[i * d + p] * x[j * d + p] }
            return weightStd * weightStd * s / Double(d) + biasStd * biasStd
        }
        for i in 0..<m {
            for j in 0..<m where i != j {
                let q12 = covariance(i, j)
                let (value, derivative) = directQuadrature(activation, rule, q11: covariance(i, i), q22: covariance(j, j), q12: q12)
                // The kernel folds mirrored nodes together (g(−z) from g(z)); that changes
                // only the rounding of a sum of deg² terms of size ≤ 1: 1e-13.
                #expect(abs(result.nngp[i * m + j] - value) <= 1e-13, "E[φφ] (\(i), \(j))")
                #expect(abs((result.ntk[i * m + j] - result.nngp[i * m + j]) / q12 - derivative) <= 1e-12, "E[φ'φ'] (\(i), \(j))")
            }
        }
        // The variance map is the 1-D rule (1/√π) Σ wᵢ φ(√(2q)xᵢ)²: read it off a net that
        // ends in the activation.
        let ending = ModelSpec(parameterization: .ntk, layers: Array(spec.layers.dropLast()))
        let diagonal = evaluate(try InfiniteWidthKernel(spec: ending, inputWidth: d), x, m, x, m)
        for i in 0..<m {
            let root = (2 * covariance(i, i)).squareRoot()
            var sum = 0.0
            for (xi, wi) in zip(rule.nodes, rule.weights) { sum += wi * pow(activation.value(root * xi), 2) }
            let expected = sum / Double.pi.squareRoot()
            // The pair rule on identical rows equals the 1-D rule up to the rule's
            // own error in β ≈ 0 (exactly 0 here) and rounding.
            #expect(abs(diagonal.nngp[i * m + i] - expected) <= 1e-13 * max(expected, 1))
        }
    }

    @Test("activations before the first dense layer act on the inputs: the kernel of φ(X)")
    func inputActivation() throws {
        let tail: [Layer] = [
            .dense(DenseLayer(width: 6, weightStd: 1.4, biasStd: 0.2)), .activation(.relu, quadratureDegree: nil),
            .dense(DenseLayer(width: 1, weightStd: 1.4, biasStd: 0.2))]
        let d = 4, m = 5
        let x = inputs(m, d, seed: 41)
        let with = evaluate(try InfiniteWidthKernel(spec: ModelSpec(parameterization: .standard, layers: [.activation(.tanh, quadratureDegree: nil)] + tail), inputWidth: d), x, m, x, m)
        let transformed = x.map { Foundation.tanh($0) }
        let without = evaluate(try InfiniteWidthKernel(spec: ModelSpec(parameterization: .standard, layers: tail), inputWidth: d), transformed, m, transformed, m)
        // The same computation on the same numbers.
        #expect(with.nngp == without.nngp)
        #expect(with.ntk == without.ntk)
    }

    @Test("models without an infinite-width definition are refused with ModelError")
    func refusals() {
        let consecutive = ModelSpec(parameterization: .ntk, layers: [
            .dense(DenseLayer(width: 4)), .activation(.relu, quadratureDegree: nil), .activation(.tanh, quadratureDegree: nil),
            .dense(DenseLayer(width: 1))])
        #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: consecutive, inputWidth: 3) }
        let good = ModelSpec.fullyConnected(depth: 1, width: 4, activation: .relu, weightStd: 1, biasStd: nil, outputs: 1, parameterization: .ntk)
        #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: good, inputWidth: 0) }
        #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: ModelSpec(parameterization: .ntk, layers: [.activation(.relu, quadratureDegree: nil)]), inputWidth: 3) }
        let badDegree = ModelSpec(parameterization: .ntk, layers: [
            .dense(DenseLayer(width: 4)), .activation(.tanh, quadratureDegree: 0), .dense(DenseLayer(width: 1))])
        #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: badDegree, inputWidth: 3) }
    }

    @Test("empty blocks give empty results")
    func emptyBlocks() throws {
        let kernel = try InfiniteWidthKernel(spec: closedFormCases[0].1, inputWidth: 2)
        let result = evaluate(kernel, [], 0, [1, 2], 1)
        #expect(result.nngp.isEmpty && result.ntk.isEmpty)
    }

    // MARK: Gauss–Hermite rule

    @Test("Gauss–Hermite nodes and weights equal numpy.polynomial.hermite.hermgauss")
    func hermiteAgainstNumpy() {
        // (degree, index, node, weight) printed by numpy 2.4 hermgauss.
        let reference: [(Int, Int, Double, Double)] = [
            (5, 0, -2.0201828704560856, 0.019953242059045917),
            (5, 1, -0.9585724646138185, 0.3936193231522411),
            (5, 2, 0.0, 0.9453087204829418),
            (64, 0, -10.526123167960547, 5.535706535856702e-49),
            (64, 21, -2.9373508230046217, 5.125929135786274e-05),
            (64, 31, -0.13830224498700971, 0.2713774249413039),
            (150, 0, -16.629509478833864, 4.994128244259801e-121),
            (150, 50, -4.4869399751921195, 3.3838207012563006e-10),
            (150, 74, -0.09053935621739301, 0.17960204009494346),
        ]
        // numpy's nodes come from an eigensolver plus one Newton step, its weights from a
        // normalised recurrence: both good to a few ulps of the node (≤ 2e-15 absolute
        // measured for every degree ≤ 256) and ~1e-13 relative for weights down to 1e-121.
        for (degree, index, node, weight) in reference {
            let rule = GaussHermiteRule(degree: degree)
            #expect(abs(rule.nodes[index] - node) <= 4e-15 * max(abs(node), 1), "x[\(index)] of \(degree)")
            #expect(abs(rule.weights[index] - weight) <= 1e-12 * weight, "w[\(index)] of \(degree)")
        }
    }

    @Test("Gauss–Hermite rules integrate x^{2k} e^{-x²} exactly for 2k < 2n and stay ordered up to degree 1000",
          arguments: [1, 2, 3, 7, 16, 64, 65, 200, 1000])
    func hermiteExactness(degree: Int) {
        let rule = GaussHermiteRule(degree: degree)
        #expect(rule.nodes.count == degree && rule.weights.count == degree)
        for i in 1..<degree { #expect(rule.nodes[i - 1] < rule.nodes[i]) }
        for i in 0..<degree {
            #expect(rule.nodes[degree - 1 - i] == -rule.nodes[i])
            #expect(rule.weights[degree - 1 - i] == rule.weights[i])
            #expect(rule.weights[i] >= 0)
        }
        // ∫ x^{2k} e^{-x²} dx = Γ(k + 1/2). The moments grow fast and the sum mixes signs
        // of rounding only, so the check stops where the relative error of a 1-ulp node
        // perturbation (2k ε) stays small: k ≤ min(n − 1, 12), tolerance 1e-13.
        for k in 0...min(degree - 1, 12) {
            var sum = 0.0
            for (x, w) in zip(rule.nodes, rule.weights) { sum += w * pow(x, Double(2 * k)) }
            let exact = tgamma(Double(k) + 0.5)
            #expect(abs(sum - exact) <= 1e-13 * exact, "moment \(2 * k) of degree \(degree)")
        }
    }

    /// The relu maps of convolutional states take the angle from `VectorMath.atan2`.
    /// Cephes' rational approximation is within 2e-16 relative of atan on its reduced range;
    /// with the reductions' roundings, 4 ulps of the angle (≤ 1e-15 relative) bound it.
    @Test("the four-lane atan2 of the convolutional relu maps agrees with the C library to 1e-15 relative, exactly at 0 and π/2")
    func vectorAtan2() {
        var pairs: [(Double, Double)] = [(0, 1), (0, 0), (1, 0), (0, -1), (1e-300, 1), (1, 1e-300), (1, -1e-300), (3, -3), (5e-17, 1)]
        var state: UInt64 = 12345
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) * 0x1.0p-53
        }
        for _ in 0..<100_000 {
            let y = uniform() * pow(10, uniform() * 8 - 4), x = (uniform() * 2 - 1) * pow(10, uniform() * 8 - 4)
            pairs.append((y, x))
        }
        // Near the reduction boundaries tan(π/8)·…: 0.66 and 2.414.
        for step in 0..<2000 { pairs.append((0.66 + Double(step - 1000) * 1e-9, 1)); pairs.append((2.41421356 + Double(step - 1000) * 1e-9, 1)) }
        while pairs.count % 4 != 0 { pairs.append((1, 1)) }
        var worst = 0.0
        for start in stride(from: 0, to: pairs.count, by: 4) {
            let y = SIMD4<Double>(pairs[start].0, pairs[start + 1].0, pairs[start + 2].0, pairs[start + 3].0)
            let x = SIMD4<Double>(pairs[start].1, pairs[start + 1].1, pairs[start + 2].1, pairs[start + 3].1)
            let ours = VectorMath.atan2(y, x)
            for lane in 0..<4 {
                let exact = y[lane] == 0 && x[lane] == 0 ? Double.pi / 2 : Foundation.atan2(y[lane], x[lane])
                worst = max(worst, abs(ours[lane] - exact) / exact)
            }
        }
        #expect(worst <= 1e-15, "max relative \(worst)")
        #expect(VectorMath.atan2(SIMD4(repeating: 0), SIMD4(repeating: 2.5))[0] == 0)
        #expect(VectorMath.atan2(SIMD4(repeating: 0), SIMD4(repeating: 0))[0] == Double.pi / 2)
        print("four-lane atan2 vs libm: max relative \(worst)")
    }

    @Test("the four-lane tanh and logistic of the quadrature loops agree with the C library")
    func vectorMath() {
        var points: [Double] = [0, -0.0, 1e-300, -1e-300, 1e-20, 1e-8, -1e-8, 19.06, 19.07, 40, -40, 700, -700, 800, -800, .infinity, -.infinity]
        for step in 0...80_000 { points.append(-40 + Double(step) * 0.001 + 1e-7 * Double(step % 7)) }
        for step in 0...1_000 { points.append(Double(step) * 1e-4) }
        while points.count % 4 != 0 { points.append(0.5) }
        var worstAbsolute = (tanh: 0.0, logistic: 0.0), worstRelative = (tanh: 0.0, logistic: 0.0)
        for start in stride(from: 0, to: points.count, by: 4) {
            let z = SIMD4<Double>(points[start], points[start + 1], points[start + 2], points[start + 3])
            let t = VectorMath.tanh(z), s = VectorMath.logistic(z)
            for lane in 0..<4 {
                let exactT = Foundation.tanh(z[lane]), exactS = Activation.logistic(z[lane])
                worstAbsolute.tanh = max(worstAbsolute.tanh, abs(t[lane] - exactT))
                worstAbsolute.logistic = max(worstAbsolute.logistic, abs(s[lane] - exactS))
                if exactT != 0 { worstRelative.tanh = max(worstRelative.tanh, abs(t[lane] - exactT) / abs(exactT)) }
                if exactS > 1e-300 { worstRelative.logistic = max(worstRelative.logistic, abs(s[lane] - exactS) / exactS) }
                #expect(t[lane].sign == exactT.sign || exactT == 0, "tanh sign at \(z[lane])")
            }
        }
        // Two roundings in the Taylor series, one in each of the scaling, the division and
        // the C library's own result: a few ulps relative, ≤ 2 ulps of 1 absolute (what
        // the weighted sums see).
        #expect(worstAbsolute.tanh <= 4.5e-16 && worstAbsolute.logistic <= 4.5e-16, "absolute \(worstAbsolute)")
        #expect(worstRelative.tanh <= 1e-15 && worstRelative.logistic <= 1e-15, "relative \(worstRelative)")
        print("four-lane tanh / logistic vs libm: max absolute \(worstAbsolute), max relative \(worstRelative)")
    }

    // MARK: Timing (run with NTK_ANALYTIC_TIMING=1 in a release build)

    @Test("time of one 256 x 256 block per activation (quadrature at the default deg 64), 3 hidden layers",
          .enabled(if: ProcessInfo.processInfo.environment["NTK_ANALYTIC_TIMING"] != nil))
    func timing() throws {
        let d = 64, b = 256
        let x = inputs(b, d, seed: 1), y = inputs(b, d, seed: 2)
        for activation in [Activation.relu, .tanh, .erf, .gelu, .sigmoid, .softplus] {
            let spec = ModelSpec.fullyConnected(depth: 3, width: 512, activation: activation, weightStd: 1.5, biasStd: 0.1,
                                                outputs: 1, parameterization: .ntk)
            let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
            _ = evaluate(kernel, x, 8, y, 8)
            let start = DispatchTime.now().uptimeNanoseconds
            let result = evaluate(kernel, x, b, y, b)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            print("analytic 256x256 block, \(activation.name), 3 hidden layers, d = \(d): \(seconds) s (checksum \(result.ntk.reduce(0, +)))")
        }
    }
}
