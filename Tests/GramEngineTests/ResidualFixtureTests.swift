import Foundation
import Testing
import GramEngine
import Network
import NumPyIO

/// Residual networks against neural-tangents 0.6.5 (`serial(FanOut(2), parallel(serial(
/// *block), Identity()), FanInSum())`, float64): the fixtures of
/// Tests/Fixtures/residual, made by scripts/reference/make_fixtures.py.
@Suite struct ResidualFixtureTests {
    static let empirical = Fixtures.cases("residual/empirical")

    struct AnalyticCase: Decodable, Sendable, CustomStringConvertible {
        let name: String
        let refused: Bool?
        let d: Int?
        var description: String { name }
    }

    static let analytic: [AnalyticCase] = {
        let url = Fixtures.root.appendingPathComponent("residual/analytic/cases.json")
        guard let data = try? Data(contentsOf: url), let list = try? JSONDecoder().decode([AnalyticCase].self, from: data) else { return [] }
        return list
    }()

    @Test("the residual fixture set is present: blocks, nested blocks, k > 1, post-activation sums, refused analytic cases")
    func present() {
        #expect(Self.empirical.count >= 6)
        #expect(Self.empirical.contains { ($0.k ?? 1) > 1 })
        #expect(Self.analytic.filter { $0.refused == true }.count >= 2)
        #expect(Self.analytic.filter { $0.refused != true }.count >= 4)
    }

    /// Tolerance 1e-10 relative (max |Δ| / max |Θ|), as for the plain networks: both sides
    /// are float64 sums of a few hundred products (rounding ~1e-15); a wrong skip or a
    /// missing branch in the backward pass is O(1).
    @Test("empirical kernels and outputs of residual networks agree with neural-tangents to 1e-10, both methods, every output mode, odd tiles",
          arguments: empirical)
    func empiricalAgrees(fixture: Fixtures.Case) throws {
        let kind = "residual/empirical"
        let dir = Fixtures.directory(kind, fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        let x1 = try Inputs.dataSet(dir + "/x1.npy")
        let x2 = try Inputs.dataSet(dir + "/x2.npy")
        let network = try Inputs.network(spec: spec, inputWidth: x1.width, parametersPath: dir + "/params.npz")
        let k = network.outputCount
        #expect(k == (fixture.k ?? 1))
        let outputs = try #require(try Fixtures.array(kind, fixture.name, "outputs_1.npy"))
        #expect(relativeError(network.outputs(x1.values, count: x1.count), outputs.doubles()) <= 1e-12)
        let mean11 = try #require(try Fixtures.array(kind, fixture.name, "ntk_mean_11.npy")).doubles()
        let mean12 = try #require(try Fixtures.array(kind, fixture.name, "ntk_mean_12.npy")).doubles()
        for method in GradientMethod.allCases {
            for tile in [3, 5, 64] {
                #expect(relativeError(EmpiricalKernel.compute(network: network, x: x1, method: method, tileSize: tile), mean11) <= 1e-10,
                        "\(method) tile \(tile) mean 11")
                #expect(relativeError(EmpiricalKernel.compute(network: network, x: x1, x2: x2, method: method, tileSize: tile), mean12) <= 1e-10,
                        "\(method) tile \(tile) mean 12")
                let sum12 = EmpiricalKernel.compute(network: network, x: x1, x2: x2, outputKernel: .sum, method: method, tileSize: tile)
                #expect(relativeError(sum12, mean12.map { $0 * Double(k) }) <= 1e-10, "\(method) sum 12")
                if k > 1 {
                    let full11 = try #require(try Fixtures.array(kind, fixture.name, "ntk_full_11.npy")).doubles()
                    let full12 = try #require(try Fixtures.array(kind, fixture.name, "ntk_full_12.npy")).doubles()
                    let ours11 = EmpiricalKernel.compute(network: network, x: x1, outputKernel: .full, method: method, tileSize: tile)
                    let ours12 = EmpiricalKernel.compute(network: network, x: x1, x2: x2, outputKernel: .full, method: method, tileSize: tile)
                    #expect(relativeError(fourAxes(ours11, n: x1.count, m: x1.count, k: k), full11) <= 1e-10, "\(method) full 11")
                    #expect(relativeError(fourAxes(ours12, n: x1.count, m: x2.count, k: k), full12) <= 1e-10, "\(method) full 12")
                }
            }
        }
    }

    /// Off the diagonal 1e-12 (closed forms follow neural-tangents' expressions; 1e-10 with
    /// quadrature, whose 4096-term sums run in another order), and the upper triangle only
    /// for the quadrature case (neural-tangents' rule is not symmetric); on the diagonal of
    /// relu networks 1e-7, where √(q₁₁q₂₂ − q₁₂²) magnifies an ulp of the reference.
    @Test("analytic NNGP and NTK of residual networks agree with neural-tangents; non-Gaussian sums are refused as neural-tangents refuses them",
          arguments: analytic)
    func analyticAgrees(fixture: AnalyticCase) throws {
        let dir = Fixtures.directory("residual/analytic", fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        if fixture.refused == true {
            #expect(throws: ModelError.self) { try InfiniteWidthKernel(spec: spec, inputWidth: fixture.d ?? 4) }
            do { _ = try InfiniteWidthKernel(spec: spec, inputWidth: fixture.d ?? 4) } catch {
                #expect(error.message.contains("residual") && error.message.contains("Gaussian"), "\(error.message)")
            }
            return
        }
        let x1 = try #require(try Fixtures.array("residual/analytic", fixture.name, "x1.npy"))
        let x2 = try #require(try Fixtures.array("residual/analytic", fixture.name, "x2.npy"))
        let d = x1.shape[1], n1 = x1.shape[0], n2 = x2.shape[0]
        let kernel = try InfiniteWidthKernel(spec: spec, inputWidth: d)
        let quadrature = fixture.name.contains("tanh")
        let tolerance = quadrature ? 1e-10 : 1e-12
        let a = x1.doubles(), b = x2.doubles()
        for (tag, y, n) in [("11", a, n1), ("12", b, n2)] {
            let result = a.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { yp in kernel.evaluate(x: xp, m: n1, y: yp, n: n) } }
            for (name, ours) in [("nngp", result.nngp), ("ntk", result.ntk)] {
                let expected = try #require(try Fixtures.array("residual/analytic", fixture.name, "\(name)_\(tag).npy")).doubles()
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
