import Testing
import GramEngine
import Network

func sampleData(_ n: Int, _ d: Int, seed: UInt64) -> DataSet {
    var rng = NormalGenerator(seed: seed)
    return DataSet(count: n, width: d, values: (0..<(n * d)).map { _ in rng.next() })
}

@Suite struct KernelPropertyTests {
    static let spec = ModelSpec.fullyConnected(depth: 2, width: 9, activation: .tanh, weightStd: 1.3, biasStd: 0.2, outputs: 3, parameterization: .ntk)

    @Test("the kernel is the same (1e-12 relative) for tile sizes 1, 7, N-1, N, N+5, and exactly symmetric")
    func tileSizes() {
        let n = 17
        let x = sampleData(n, 4, seed: 1)
        let network = Network.initialized(spec: Self.spec, inputWidth: 4, seed: 2)
        for mode in OutputKernel.allCases {
            let reference = EmpiricalKernel.compute(network: network, x: x, outputKernel: mode, tileSize: n)
            let side = mode == .full ? n * 3 : n
            for i in 0..<side { for j in 0..<side { #expect(reference[i * side + j] == reference[j * side + i]) } }
            for tile in [1, 7, n - 1, n + 5] {
                let other = EmpiricalKernel.compute(network: network, x: x, outputKernel: mode, tileSize: tile)
                #expect(relativeError(other, reference) <= 1e-12, "\(mode) tile \(tile)")
            }
        }
    }

    @Test("structured and explicit methods agree to 1e-12 relative in every output mode, symmetric and cross")
    func methods() {
        let x = sampleData(11, 5, seed: 3), x2 = sampleData(6, 5, seed: 4)
        let network = Network.initialized(spec: Self.spec, inputWidth: 5, seed: 5)
        for mode in OutputKernel.allCases {
            for second in [nil, x2] {
                let a = EmpiricalKernel.compute(network: network, x: x, x2: second, outputKernel: mode, method: .structured, tileSize: 4)
                let b = EmpiricalKernel.compute(network: network, x: x, x2: second, outputKernel: mode, method: .explicit, tileSize: 4)
                #expect(relativeError(a, b) <= 1e-12, "\(mode) cross: \(second != nil)")
            }
        }
    }

    @Test("mean is the trace of the full kernel over k, sum is the trace")
    func outputModes() {
        let n = 6, k = 3
        let x = sampleData(n, 4, seed: 6)
        let network = Network.initialized(spec: Self.spec, inputWidth: 4, seed: 7)
        let full = EmpiricalKernel.compute(network: network, x: x, outputKernel: .full, tileSize: 4)
        let mean = EmpiricalKernel.compute(network: network, x: x, outputKernel: .mean, tileSize: 4)
        let sum = EmpiricalKernel.compute(network: network, x: x, outputKernel: .sum, tileSize: 4)
        var trace = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for a in 0..<k { trace[i * n + j] += full[(i * k + a) * (n * k) + j * k + a] } } }
        #expect(relativeError(sum, trace) <= 1e-13)
        #expect(relativeError(mean, trace.map { $0 / 3 }) <= 1e-13)
    }

    @Test("the cross kernel of X with itself equals the symmetric kernel")
    func crossWithItself() {
        let x = sampleData(9, 3, seed: 8)
        let network = Network.initialized(spec: Self.spec, inputWidth: 3, seed: 9)
        let a = EmpiricalKernel.compute(network: network, x: x, tileSize: 4)
        let b = EmpiricalKernel.compute(network: network, x: x, x2: x, tileSize: 4)
        #expect(relativeError(b, a) <= 1e-14)
    }
}

@Suite struct TilePlanTests {
    @Test("every kernel entry belongs to exactly one tile, for N not a multiple of the tile, symmetric and not")
    func coverage() {
        for (n, m, tile, symmetric) in [(10, 10, 3, true), (10, 7, 3, false), (1, 1, 1, true), (5, 5, 9, true), (12, 12, 4, true)] {
            let plan = TilePlan(rows: n, columns: m, tileSize: tile, symmetric: symmetric, ranks: 3)
            var hits = [Int](repeating: 0, count: n * m)
            for t in plan.tiles {
                for i in plan.rowRange(t.row) { for j in plan.columnRange(t.column) { hits[i * m + j] += 1 } }
            }
            for i in 0..<n { for j in 0..<m {
                let expected = (!symmetric || i / tile <= j / tile) ? 1 : 0
                #expect(hits[i * m + j] == expected, "(\(i), \(j)) n \(n) tile \(tile)")
            } }
            if symmetric { for t in plan.tiles { #expect(t.row <= t.column) } }
        }
    }

    @Test("tiles are dealt to ranks contiguously, all of them, with at most one tile's area of imbalance; more ranks than tiles leaves some empty")
    func assignment() {
        for ranks in 1...9 {
            let plan = TilePlan(rows: 23, columns: 23, tileSize: 5, symmetric: true, ranks: ranks)
            var covered = 0
            var areas: [Int] = []
            for r in 0..<ranks {
                let owned = plan.tileIndices(ofRank: r)
                #expect(owned.first ?? covered == covered)
                covered = (owned.last ?? covered - 1) + 1
                areas.append(owned.reduce(0) { $0 + plan.rowRange(plan.tiles[$1].row).count * plan.columnRange(plan.tiles[$1].column).count })
                for index in owned { #expect(plan.owner(ofTile: index) == r) }
            }
            #expect(covered == plan.tiles.count)
            if ranks <= plan.tiles.count { #expect(areas.max()! - areas.min()! <= 2 * 25 + 1, "ranks \(ranks): \(areas)") }
        }
    }

    @Test("dealt by rows: every tile once, whole tile rows per rank, the work within one row's of equal, and every rank through the rows in step")
    func rowDealing() {
        for (n, m, tile, symmetric) in [(23, 23, 5, true), (64, 64, 4, true), (23, 17, 5, false), (7, 7, 9, true)] {
            for ranks in 1...5 {
                let plan = TilePlan(rows: n, columns: m, tileSize: tile, symmetric: symmetric, ranks: ranks, dealing: .rows)
                let owned = (0..<ranks).map { plan.tileIndices(ofRank: $0) }
                #expect(owned.flatMap { $0 }.sorted() == Array(plan.tiles.indices))
                func area(_ index: Int) -> Int {
                    let t = plan.tiles[index]
                    let h = plan.rowRange(t.row).count, w = plan.columnRange(t.column).count
                    return symmetric && t.row == t.column ? h * (h + 1) / 2 : h * w
                }
                var rowArea: [Int: Int] = [:]
                for (index, t) in plan.tiles.enumerated() {
                    #expect(plan.owner(ofTile: index) == plan.owner(ofRowBlock: t.row))
                    rowArea[t.row, default: 0] += area(index)
                }
                let work = owned.map { $0.reduce(0) { $0 + area($1) } }
                if ranks <= plan.rowBlocks { #expect(work.max()! - work.min()! <= rowArea.values.max()!, "\(n) \(ranks): \(work)") }
                // In step: when a rank starts row block i, every other rank has started its
                // rows before i, or has no work left before i (the greedy least-loaded rule).
                var load = [Int](repeating: 0, count: ranks)
                for block in 0..<plan.rowBlocks {
                    let r = plan.owner(ofRowBlock: block)
                    #expect(load[r] == load.min()!, "block \(block): rank \(r) at \(load[r]) of \(load)")
                    load[r] += rowArea[block]!
                }
            }
        }
    }

    @Test("gather chunks stay within a row block and under the element limit")
    func chunks() {
        let plan = TilePlan(rows: 50, columns: 50, tileSize: 7, symmetric: true, ranks: 2)
        let chunks = plan.gatherChunks(entrySize: 4, limit: 500)
        #expect(chunks.first?.lowerBound == 0 && chunks.last?.upperBound == plan.tiles.count)
        for c in chunks {
            #expect(Set(c.map { plan.tiles[$0].row }).count == 1)
            let size = c.reduce(0) { $0 + plan.rowRange(plan.tiles[$1].row).count * plan.columnRange(plan.tiles[$1].column).count * 4 }
            #expect(size <= 500 || c.count == 1)
        }
    }
}

@Suite struct SinglePrecisionTests {
    /// Rounding the factors to float32 costs ~2⁻²⁴ relative per factor and the chunked
    /// float32 sums ~√256·2⁻²⁴ on random-sign data: 2e-5 relative to max |Θ| bounds both
    /// with margin; a wrong product or a lost layer would be O(1).
    @Test("--precision f32 agrees with float64 to 2e-5 relative in every output mode, symmetric and cross")
    func agreesWithDouble() {
        let x = sampleData(40, 6, seed: 11), x2 = sampleData(9, 6, seed: 12)
        let spec = ModelSpec.fullyConnected(depth: 2, width: 300, activation: .relu, weightStd: 1.4, biasStd: 0.1, outputs: 3, parameterization: .ntk)
        let network = Network.initialized(spec: spec, inputWidth: 6, seed: 13)
        for mode in OutputKernel.allCases {
            for second in [nil, x2] {
                let a = EmpiricalKernel.compute(network: network, x: x, x2: second, outputKernel: mode, precision: .f64, tileSize: 16)
                let b = EmpiricalKernel.compute(network: network, x: x, x2: second, outputKernel: mode, precision: .f32, tileSize: 16)
                let error = relativeError(b, a)
                #expect(error <= 2e-5, "\(mode) cross \(second != nil): \(error)")
                #expect(error > 0, "float32 products must differ from float64 somewhere")
            }
        }
    }
}
