import Foundation
import Testing
import GramEngine
import Network
import NumPyIO

/// Agreement with neural-tangents' empirical_ntk_fn (STRUCTURED_DERIVATIVES, float64).
/// Tolerance 1e-10 relative (max |Δ| / max |Θ|): both sides are float64 sums of a few
/// hundred products, so rounding differences are ~1e-15; 1e-10 is the requirement, and
/// any modelling difference (a scale factor, a bias convention) is O(1).
@Suite struct EmpiricalFixtureTests {
    static let cases = Fixtures.cases("empirical")

    @Test("the fixture set is present and covers k = 1 and k > 1")
    func present() {
        #expect(Self.cases.count >= 8)
        #expect(Self.cases.contains { ($0.k ?? 1) > 1 })
    }

    @Test("kernels and outputs agree with neural-tangents to 1e-10, both methods, all output modes", arguments: cases)
    func agrees(fixture: Fixtures.Case) throws {
        let dir = Fixtures.directory("empirical", fixture.name)
        let spec = try Inputs.model(dir + "/model.json")
        let x1 = try Inputs.dataSet(dir + "/x1.npy")
        let x2 = try Inputs.dataSet(dir + "/x2.npy")
        let network = try Inputs.network(spec: spec, inputWidth: x1.width, parametersPath: dir + "/params.npz")
        let k = network.outputCount

        let outputs = try #require(try Fixtures.array("empirical", fixture.name, "outputs_1.npy"))
        #expect(relativeError(network.outputs(x1.values, count: x1.count), outputs.doubles()) <= 1e-12)

        for method in GradientMethod.allCases {
            for tile in [3, 64] {
                let mean11 = try #require(try Fixtures.array("empirical", fixture.name, "ntk_mean_11.npy")).doubles()
                let mean12 = try #require(try Fixtures.array("empirical", fixture.name, "ntk_mean_12.npy")).doubles()
                let ours11 = EmpiricalKernel.compute(network: network, x: x1, method: method, tileSize: tile)
                let ours12 = EmpiricalKernel.compute(network: network, x: x1, x2: x2, method: method, tileSize: tile)
                #expect(relativeError(ours11, mean11) <= 1e-10, "\(method) mean 11")
                #expect(relativeError(ours12, mean12) <= 1e-10, "\(method) mean 12")
                let sum11 = EmpiricalKernel.compute(network: network, x: x1, outputKernel: .sum, method: method, tileSize: tile)
                #expect(relativeError(sum11, mean11.map { $0 * Double(k) }) <= 1e-10, "\(method) sum 11")
                if k > 1 {
                    let full11 = try #require(try Fixtures.array("empirical", fixture.name, "ntk_full_11.npy"))
                    let full12 = try #require(try Fixtures.array("empirical", fixture.name, "ntk_full_12.npy"))
                    let ours = EmpiricalKernel.compute(network: network, x: x1, outputKernel: .full, method: method, tileSize: tile)
                    let oursCross = EmpiricalKernel.compute(network: network, x: x1, x2: x2, outputKernel: .full, method: method, tileSize: tile)
                    #expect(relativeError(toFourAxes(ours, n: x1.count, m: x1.count, k: k), full11.doubles()) <= 1e-10, "\(method) full 11")
                    #expect(relativeError(toFourAxes(oursCross, n: x1.count, m: x2.count, k: k), full12.doubles()) <= 1e-10, "\(method) full 12")
                }
            }
        }
    }

    /// (N·k, M·k) with row i·k + a → (N, M, k, k).
    func toFourAxes(_ matrix: [Double], n: Int, m: Int, k: Int) -> [Double] {
        var result = [Double](repeating: 0, count: matrix.count)
        for i in 0..<n { for j in 0..<m { for a in 0..<k { for b in 0..<k {
            result[((i * m + j) * k + a) * k + b] = matrix[(i * k + a) * (m * k) + j * k + b]
        } } } }
        return result
    }
}
