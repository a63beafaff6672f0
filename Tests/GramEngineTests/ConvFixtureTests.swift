import Foundation
import Testing
import GramEngine
import Network
import NumPyIO

/// Convolutional networks against neural-tangents 0.6.5 (`stax.Conv`, `AvgPool`,
/// `GlobalAvgPool`, `Flatten`, float64): the fixtures of Tests/Fixtures/conv, made by
/// scripts/reference/make_conv_fixtures.py.
@Suite struct ConvFixtureTests {
    static let empirical = Fixtures.cases("conv/empirical")

    @Test("the conv fixture set is present: 1-D and 2-D, strides, every padding, pooling, flatten, residual blocks, k > 1")
    func present() {
        #expect(Self.empirical.count >= 8)
        #expect(Self.empirical.contains { ($0.k ?? 1) > 1 })
        for padding in ["valid", "same", "circular"] {
            #expect(Self.empirical.contains { $0.name.contains(padding) }, "\(padding)")
        }
    }

    /// Tolerance 1e-10 relative (max |Δ| / max |Θ|), as for the dense networks: both sides
    /// are float64 sums of at most a few thousand products (rounding ~1e-14); a wrong
    /// window, padding offset or adjoint is O(1). Every layer form (the automatic choice,
    /// all structured, all explicit) and both engine methods must agree, at tile sizes that
    /// split the blocks unevenly.
    @Test("empirical kernels and outputs of conv networks agree with neural-tangents to 1e-10: every layer form and method, every output mode, odd tiles",
          arguments: empirical)
    func empiricalAgrees(fixture: Fixtures.Case) throws {
        let kind = "conv/empirical"
        let dir = Fixtures.directory(kind, fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        let x1 = try Inputs.dataSet(dir + "/x1.npy")
        let x2 = try Inputs.dataSet(dir + "/x2.npy")
        let loaded = try Inputs.network(spec: spec, inputShape: x1.sampleShape, parametersPath: dir + "/params.npz")
        let k = loaded.outputCount
        #expect(k == (fixture.k ?? 1))
        let outputs = try #require(try Fixtures.array(kind, fixture.name, "outputs_1.npy"))
        #expect(relativeError(loaded.outputs(x1.values, count: x1.count), outputs.doubles()) <= 1e-12)
        let mean11 = try #require(try Fixtures.array(kind, fixture.name, "ntk_mean_11.npy")).doubles()
        let mean12 = try #require(try Fixtures.array(kind, fixture.name, "ntk_mean_12.npy")).doubles()
        let full11 = k > 1 ? try #require(try Fixtures.array(kind, fixture.name, "ntk_full_11.npy")).doubles() : []
        let full12 = k > 1 ? try #require(try Fixtures.array(kind, fixture.name, "ntk_full_12.npy")).doubles() : []
        for forms in FactorForms.allCases {
            let network = loaded.with(forms: forms)
            for method in GradientMethod.allCases {
                for tile in [2, 3, 64] {
                    let label = "\(forms) \(method) tile \(tile)"
                    #expect(relativeError(EmpiricalKernel.compute(network: network, x: x1, method: method, tileSize: tile), mean11) <= 1e-10,
                            "\(label) mean 11")
                    #expect(relativeError(EmpiricalKernel.compute(network: network, x: x1, x2: x2, method: method, tileSize: tile), mean12) <= 1e-10,
                            "\(label) mean 12")
                    let sum12 = EmpiricalKernel.compute(network: network, x: x1, x2: x2, outputKernel: .sum, method: method, tileSize: tile)
                    #expect(relativeError(sum12, mean12.map { $0 * Double(k) }) <= 1e-10, "\(label) sum 12")
                    if k > 1 {
                        let ours11 = EmpiricalKernel.compute(network: network, x: x1, outputKernel: .full, method: method, tileSize: tile)
                        let ours12 = EmpiricalKernel.compute(network: network, x: x1, x2: x2, outputKernel: .full, method: method, tileSize: tile)
                        #expect(relativeError(fourAxes(ours11, n: x1.count, m: x1.count, k: k), full11) <= 1e-10, "\(label) full 11")
                        #expect(relativeError(fourAxes(ours12, n: x1.count, m: x2.count, k: k), full12) <= 1e-10, "\(label) full 12")
                    }
                }
            }
        }
    }

    /// float32 products: the rounding of the factors (2⁻²⁴ relative) bounds the error by
    /// about 1e-6 of the kernel's scale for these few-thousand-term sums; 1e-5 leaves room
    /// for cancellation without admitting a wrong term (O(1)).
    @Test("float32 tile products of conv networks stay within 1e-5 of neural-tangents in every layer form", arguments: empirical)
    func singlePrecision(fixture: Fixtures.Case) throws {
        let kind = "conv/empirical"
        let dir = Fixtures.directory(kind, fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        let x1 = try Inputs.dataSet(dir + "/x1.npy")
        let x2 = try Inputs.dataSet(dir + "/x2.npy")
        let loaded = try Inputs.network(spec: spec, inputShape: x1.sampleShape, parametersPath: dir + "/params.npz")
        let mean12 = try #require(try Fixtures.array(kind, fixture.name, "ntk_mean_12.npy")).doubles()
        for forms in FactorForms.allCases {
            let ours = EmpiricalKernel.compute(network: loaded.with(forms: forms), x: x1, x2: x2, precision: .f32, tileSize: 3)
            #expect(relativeError(ours, mean12) <= 1e-5, "\(forms)")
        }
    }

    struct AnalyticCase: Decodable, Sendable, CustomStringConvertible {
        let name: String
        let refused: Bool?
        var description: String { name }
    }

    static let analytic: [AnalyticCase] = {
        let url = Fixtures.root.appendingPathComponent("conv/analytic/cases.json")
        guard let data = try? Data(contentsOf: url), let list = try? JSONDecoder().decode([AnalyticCase].self, from: data) else { return [] }
        return list
    }()

    /// Off the sample diagonal 1e-12 relative (the maps follow neural-tangents' in the same
    /// order up to the grouping of window sums: a few ulps; 1e-10 with quadrature); on it
    /// 1e-7 for relu networks,
    /// where √(q₁₁q₂₂ − q₁₂²) of a cancellation magnifies an ulp of the reference (the
    /// fixture script measured 7.6e-10 there between neural-tangents and exact arithmetic).
    @Test("the CNTK and NNGP of conv networks agree with neural-tangents' kernel_fn; sums neural-tangents refuses are refused",
          arguments: analytic)
    func analyticAgrees(fixture: AnalyticCase) throws {
        let dir = Fixtures.directory("conv/analytic", fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        if fixture.refused == true {
            #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: spec, inputShape: [4, 4, 2]) }
            do { _ = try InfiniteWidthKernel(spec: spec, inputShape: [4, 4, 2]) } catch {
                #expect(error.message.contains("residual") && error.message.contains("Gaussian"), "\(error.message)")
            }
            return
        }
        let x1 = try Inputs.dataSet(dir + "/x1.npy")
        let x2 = try Inputs.dataSet(dir + "/x2.npy")
        let kernel = try InfiniteWidthKernel(spec: spec, inputShape: x1.sampleShape)
        let n1 = x1.count, d = x1.width
        for (tag, y) in [("11", x1), ("12", x2)] {
            let n = y.count
            let result = x1.values.withUnsafeBufferPointer { xp in y.values.withUnsafeBufferPointer { yp in kernel.evaluate(x: xp, m: n1, y: yp, n: n) } }
            // Pieces of 2 x 3 pairs give the whole block's values bit for bit.
            for i0 in stride(from: 0, to: n1, by: 2) {
                for j0 in stride(from: 0, to: n, by: 3) {
                    let mb = min(2, n1 - i0), nb = min(3, n - j0)
                    let piece = x1.values.withUnsafeBufferPointer { xp in
                        y.values.withUnsafeBufferPointer { yp in
                            kernel.evaluate(x: UnsafeBufferPointer(rebasing: xp[(i0 * d)..<((i0 + mb) * d)]), m: mb,
                                            y: UnsafeBufferPointer(rebasing: yp[(j0 * d)..<((j0 + nb) * d)]), n: nb)
                        }
                    }
                    for i in 0..<mb {
                        for j in 0..<nb {
                            #expect(piece.ntk[i * nb + j] == result.ntk[(i0 + i) * n + j0 + j], "\(fixture.name) piece")
                            #expect(piece.nngp[i * nb + j] == result.nngp[(i0 + i) * n + j0 + j], "\(fixture.name) piece")
                        }
                    }
                }
            }
            // Quadrature (tanh): 1e-10, its 256-term sums run in another order, and the upper
            // triangle of the 11 block only (neural-tangents' rule is not symmetric in x, x').
            let quadrature = fixture.name.contains("tanh")
            let tolerance = quadrature ? 1e-10 : 1e-12
            for (name, ours) in [("nngp", result.nngp), ("ntk", result.ntk)] {
                let expected = try #require(try Fixtures.array("conv/analytic", fixture.name, "\(name)_\(tag).npy")).doubles()
                let scale = expected.map(abs).max() ?? 1
                var off = 0.0, on = 0.0
                for i in 0..<n1 {
                    for j in 0..<n where tag == "12" || !quadrature || j >= i {
                        let error = abs(ours[i * n + j] - expected[i * n + j]) / scale
                        if tag == "11" && i == j { on = max(on, error) } else { off = max(off, error) }
                    }
                }
                #expect(off <= tolerance, "\(fixture.name) \(name)_\(tag) off the diagonal: \(off)")
                #expect(on <= 1e-7, "\(fixture.name) \(name)_\(tag) on the diagonal: \(on)")
            }
        }
    }
}
